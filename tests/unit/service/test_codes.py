"""The error table, language negotiation and the problem documents the API answers with."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from beatsync.engine import errors as engine_errors
from beatsync.service.codes import CODES, message, negotiate_locale
from beatsync.service.errors import ServiceError, from_engine

SPEC_CODES = {
    "FILE_NOT_FOUND",
    "FILE_TOO_LARGE",
    "INVALID_FORMAT",
    "PROCESSING_FAILED",
    "RESOURCE_LIMIT",
    "TIMEOUT",
    "NO_AUDIO_TRACK",
    "NO_VIDEO_TRACK",
    "DURATION_TOO_LONG",
    "MUSIC_MISMATCH",
    "UPLOAD_INCOMPLETE",
    "QUOTA_EXCEEDED",
    "RATE_LIMITED",
    "UNAUTHORIZED",
    "NOT_FOUND",
    "JOB_NOT_CANCELLABLE",
    "STORAGE_UNAVAILABLE",
    "SERVER_BUSY",
    "WORKER_LOST",
    "VALIDATION_ERROR",
}


def test_every_specified_code_is_in_the_table() -> None:
    assert set(CODES) >= SPEC_CODES


def test_every_engine_code_maps_to_itself() -> None:
    for name in engine_errors.__all__:
        cls = getattr(engine_errors, name)
        assert cls.code in CODES, name
        assert from_engine(cls("boom")).code == cls.code


def test_messages_exist_in_both_languages_and_differ() -> None:
    for code in CODES.values():
        assert code.zh, code.code
        assert code.en, code.code
        assert code.zh != code.en, code.code
        assert 400 <= code.status < 600


def test_unknown_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        ServiceError("NOT_A_CODE")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en;q=0.5, zh-TW;q=0.8", "zh-CN"),
        ("fr-FR, en;q=0.3", "en"),
        ("fr-FR", "zh-CN"),
        ("en;q=0, zh;q=0.1", "zh-CN"),
        ("en;q=bogus", "zh-CN"),
    ],
)
def test_locale_negotiation(header: str | None, expected: str) -> None:
    assert negotiate_locale(header) == expected


def test_problem_documents_follow_rfc9457(client: TestClient) -> None:
    response = client.get("/api/v1/sessions/me", headers={"Accept-Language": "en"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "UNAUTHORIZED"
    assert body["status"] == 401
    assert body["message"] == message("UNAUTHORIZED", "en")
    assert body["type"].endswith("/unauthorized")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["instance"] == "/api/v1/sessions/me"
    chinese = client.get("/api/v1/sessions/me").json()
    assert chinese["message"] == message("UNAUTHORIZED", "zh-CN")


def test_unknown_routes_and_methods_answer_coded_problems(client: TestClient) -> None:
    missing = client.get("/api/v1/no-such-thing")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    wrong = client.put("/api/v1/sessions")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


def test_an_incoming_request_id_is_kept_and_a_bad_one_replaced(client: TestClient) -> None:
    kept = client.get("/api/health", headers={"X-Request-ID": "abcd1234-trace"})
    assert kept.headers["x-request-id"] == "abcd1234-trace"
    replaced = client.get("/api/health", headers={"X-Request-ID": "<script>"})
    assert replaced.headers["x-request-id"] != "<script>"
    assert len(replaced.headers["x-request-id"]) == 16


def test_api_answers_are_not_cached_and_carry_security_headers(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
