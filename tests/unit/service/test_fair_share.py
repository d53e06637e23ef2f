"""One client address cannot take the shared queue or mint owners without end: each address has
a share of the queued and running jobs and of new sessions, whatever owners it makes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from factories import AUDIO_MEDIA, Rows
from fastapi.testclient import TestClient

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings

if TYPE_CHECKING:
    # A name only: at run time "conftest" can be another folder's, by which tests run first.
    from conftest import LiveServer

FLOODER = ("203.0.113.7", 40000)
NEIGHBOUR = ("198.51.100.20", 40001)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        max_active_jobs_per_address=3,
        max_running_jobs_per_owner=2,
        sessions_per_address_per_minute=4,
    )


@pytest.fixture
def clients(settings: Settings, dispatcher: Any) -> Iterator[dict[str, TestClient]]:
    app = create_app(settings, dispatcher=dispatcher)
    made = {
        "flooder": TestClient(app, client=FLOODER),
        "neighbour": TestClient(app, client=NEIGHBOUR),
    }
    with made["flooder"], made["neighbour"]:
        yield made


def _refusal(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _job(client: TestClient, rows: Rows) -> Any:
    session = client.post("/api/v1/sessions")
    assert session.status_code == 201, session.text
    owner, token = session.json()["owner_id"], session.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "dance_upload_id": rows.upload(owner),
        "bgm_upload_id": rows.upload(owner, media=AUDIO_MEDIA),
    }
    return client.post("/api/v1/jobs", json=body, headers=headers)


def test_one_address_fills_its_share_of_the_queue_and_the_next_address_still_gets_in(
    clients: dict[str, TestClient], rows: Rows, dispatcher: Any
) -> None:
    flooder, neighbour = clients["flooder"], clients["neighbour"]
    # A new owner per job, as a client that mints free sessions would do.
    for _ in range(3):
        assert _job(flooder, rows).status_code == 202
    body = _refusal(_job(flooder, rows), 429, "QUOTA_EXCEEDED")
    assert "3 jobs from your address" in body["detail"]
    assert len(dispatcher.submitted) == 3
    queued = _job(neighbour, rows)
    assert queued.status_code == 202, queued.text
    assert dispatcher.submitted[-1] == queued.json()["id"]


def test_new_sessions_per_address_are_rationed(clients: dict[str, TestClient]) -> None:
    flooder, neighbour = clients["flooder"], clients["neighbour"]
    for _ in range(4):
        assert flooder.post("/api/v1/sessions").status_code == 201
    body = _refusal(flooder.post("/api/v1/sessions"), 429, "RATE_LIMITED")
    assert body["limit"] == 4
    assert neighbour.post("/api/v1/sessions").status_code == 201


def _sessions_from(live: LiveServer, claimed: list[str]) -> list[int]:
    return [
        httpx.post(
            f"{live.url}/api/v1/sessions", headers={"X-Forwarded-For": address}, timeout=10
        ).status_code
        for address in claimed
    ]


def test_forwarded_addresses_are_believed_only_from_configured_proxies(
    make_live: Callable[..., LiveServer], make_settings: Callable[..., Settings]
) -> None:
    claimed = [f"192.0.2.{n}" for n in range(1, 7)]
    # Nobody is trusted by default: the six claimed addresses are one peer, limited at four.
    direct = make_live(make_settings(sessions_per_address_per_minute=4))
    assert _sessions_from(direct, claimed) == [201] * 4 + [429] * 2
    behind = make_live(
        make_settings(sessions_per_address_per_minute=4, trusted_proxies="127.0.0.1")
    )
    assert _sessions_from(behind, claimed) == [201] * 6
