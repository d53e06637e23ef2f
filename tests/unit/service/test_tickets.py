"""Credentials in URLs: lifetime tokens only in headers; the progress streams open with a ticket
that is valid for a minute and for one job. Tokens expire and can be revoked."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from factories import AUDIO_MEDIA, Rows, owner_id
from fastapi.testclient import TestClient
from sqlalchemy import update

from beatsync.service.auth import token_hash
from beatsync.service.config import Settings
from beatsync.service.db import Database
from beatsync.service.db.models import Token, utcnow
from beatsync.service.tickets import issue_ticket


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(max_running_jobs_per_owner=10, event_poll_s=0.02)


def _session(client: TestClient) -> tuple[str, dict[str, str]]:
    token: str = client.post("/api/v1/sessions").json()["token"]
    return token, {"Authorization": f"Bearer {token}"}


def _finished_job(
    client: TestClient, rows: Rows, headers: dict[str, str], nudge_ms: float = 0.0
) -> str:
    owner = owner_id(client, headers)
    body = {
        "dance_upload_id": rows.upload(owner),
        "bgm_upload_id": rows.upload(owner, media=AUDIO_MEDIA),
        "options": {"nudge_ms": nudge_ms},
    }
    created = client.post("/api/v1/jobs", json=body, headers=headers)
    assert created.status_code == 202, created.text
    job_id: str = created.json()["id"]
    rows.succeed(job_id)
    return job_id


def _problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def _events(client: TestClient, url: str) -> list[dict[str, Any]]:
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line.removeprefix("data: ")) for line in lines]


def test_a_token_in_a_url_opens_nothing_but_the_streams(client: TestClient, rows: Rows) -> None:
    token, headers = _session(client)
    job_id = _finished_job(client, rows, headers)
    for path in ("/api/v1/sessions/me", f"/api/v1/jobs/{job_id}", "/api/v1/jobs"):
        _problem(client.get(f"{path}?access_token={token}"), 401, "UNAUTHORIZED")
        assert client.get(path, headers=headers).status_code == 200


def test_a_ticket_opens_the_streams_of_its_job_for_a_minute(
    client: TestClient, rows: Rows, settings: Settings
) -> None:
    _, headers = _session(client)
    job_id = _finished_job(client, rows, headers)
    other_job = _finished_job(client, rows, headers, nudge_ms=5.0)
    answer = client.post(f"/api/v1/jobs/{job_id}/ticket", headers=headers)
    assert answer.status_code == 201, answer.text
    ticket = answer.json()
    assert ticket["ttl_s"] == settings.stream_ticket_ttl_s == 60
    assert ticket["events"] == f"/api/v1/jobs/{job_id}/events?ticket={ticket['ticket']}"
    assert ticket["ws"] == f"/api/v1/jobs/{job_id}/ws?ticket={ticket['ticket']}"
    assert [e["status"] for e in _events(client, ticket["events"])] == ["succeeded"]
    with client.websocket_connect(ticket["ws"]) as socket:
        assert json.loads(socket.receive_text())["id"] == job_id
    # Bound to its job, and to the key that signed it.
    wrong_job = f"/api/v1/jobs/{other_job}/events?ticket={ticket['ticket']}"
    _problem(client.get(wrong_job), 401, "UNAUTHORIZED")
    forged = ticket["ticket"][:-2] + ("AA" if not ticket["ticket"].endswith("AA") else "BB")
    _problem(client.get(f"/api/v1/jobs/{job_id}/events?ticket={forged}"), 401, "UNAUTHORIZED")
    # A minute old, it no longer works.
    owner = owner_id(client, headers)
    secret = settings.secret_key.get_secret_value()
    stale, _ = issue_ticket(secret, job_id, owner, ttl_s=60, now=time.time() - 61)
    _problem(client.get(f"/api/v1/jobs/{job_id}/events?ticket={stale}"), 401, "UNAUTHORIZED")
    fresh, _ = issue_ticket(secret, job_id, owner, ttl_s=60)
    assert len(_events(client, f"/api/v1/jobs/{job_id}/events?ticket={fresh}")) == 1
    # Only the job's owner gets one.
    _, stranger = _session(client)
    _problem(client.post(f"/api/v1/jobs/{job_id}/ticket", headers=stranger), 404, "NOT_FOUND")


def test_tokens_expire(
    make_client: Callable[..., TestClient], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(token_ttl_h=24)
    client = make_client(settings)
    token, headers = _session(client)
    _, fresh = _session(client)
    db = Database(settings.database)
    try:
        with db.session() as session:
            session.execute(
                update(Token)
                .where(Token.hash == token_hash(token))
                .values(created_at=utcnow() - timedelta(hours=25))
            )
    finally:
        db.dispose()
    _problem(client.get("/api/v1/sessions/me", headers=headers), 401, "UNAUTHORIZED")
    assert client.get("/api/v1/sessions/me", headers=fresh).status_code == 200


def test_a_token_can_be_revoked(client: TestClient) -> None:
    _, headers = _session(client)
    _, other = _session(client)
    assert client.get("/api/v1/sessions/me", headers=headers).status_code == 200  # now cached
    assert client.delete("/api/v1/sessions/current", headers=headers).status_code == 204
    _problem(client.get("/api/v1/sessions/me", headers=headers), 401, "UNAUTHORIZED")
    _problem(client.delete("/api/v1/sessions/current", headers=headers), 401, "UNAUTHORIZED")
    assert client.get("/api/v1/sessions/me", headers=other).status_code == 200
