"""Refusals speak of the request, never of the validation library behind them."""

from __future__ import annotations

import json
from typing import Any

from factories import AUDIO_MEDIA, Rows, owner_id
from fastapi.testclient import TestClient

# What pydantic's own error texts and objects carry: its documentation links, the offending
# input echoed back, its error context and type names.
INTERNALS = ("errors.pydantic.dev", "input_value", "input_type", "For further information")
INTERNAL_KEYS = {"url", "ctx", "input", "type"}


def _clean(body: dict[str, Any]) -> None:
    text = json.dumps(body)
    for marker in INTERNALS:
        assert marker not in text, (marker, body)
    for error in body.get("errors", []):
        assert not INTERNAL_KEYS & set(error), error


def test_an_impossible_variant_is_refused_in_plain_words(
    client: TestClient, rows: Rows, auth: dict[str, str]
) -> None:
    owner = owner_id(client, auth)
    body = {
        "dance_upload_id": rows.upload(owner),
        "bgm_upload_id": rows.upload(owner, media=AUDIO_MEDIA),
        "options": {"end_s": 10.0},
    }
    job_id = client.post("/api/v1/jobs", json=body, headers=auth).json()["id"]
    rows.succeed(job_id)
    refused = client.post(f"/api/v1/jobs/{job_id}/render", json={"start_s": 12.0}, headers=auth)
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["code"] == "VALIDATION_ERROR"
    assert "end_s (10.0) must be after start_s (12.0)" in problem["detail"]
    _clean(problem)


def test_malformed_bodies_are_refused_without_internals(
    client: TestClient, auth: dict[str, str]
) -> None:
    for payload in (
        {"dance_upload_id": "x", "bgm_upload_id": "y", "options": {"nudge_ms": "soon"}},
        {"dance_upload_id": "x" * 500, "bgm_upload_id": 7, "extra": True},
        {"dance_upload_id": "x", "bgm_upload_id": "y", "options": {"end_s": 1, "start_s": 2}},
    ):
        refused = client.post("/api/v1/jobs", json=payload, headers=auth)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"], refused.text
        _clean(refused.json())
