"""Progress streams: Server-Sent Events and WebSocket repeat the job row as it changes, in order,
end after a finished status, answer only the owner, and stop their work when the client leaves."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import pytest
from factories import AUDIO_MEDIA, Rows, owner_id
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from beatsync.service.api import events
from beatsync.service.config import Settings

# What a worker reports while it runs, as (stage, overall progress).
STAGES = [
    ("probe", 0.0),
    ("decode", 0.04),
    ("decode", 0.12),
    ("align", 0.2),
    ("align", 0.38),
    ("trim", 0.45),
    ("render", 0.5),
    ("render", 0.77),
    ("render", 0.95),
]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(event_poll_s=0.02, max_running_jobs_per_owner=10)


def _session(client: TestClient) -> tuple[str, dict[str, str]]:
    token: str = client.post("/api/v1/sessions").json()["token"]
    return token, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def token(client: TestClient) -> str:
    return _session(client)[0]


@pytest.fixture
def job_id(client: TestClient, rows: Rows, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    owner = owner_id(client, headers)
    body = {
        "dance_upload_id": rows.upload(owner),
        "bgm_upload_id": rows.upload(owner, media=AUDIO_MEDIA),
    }
    response = client.post("/api/v1/jobs", json=body, headers=headers)
    assert response.status_code == 202
    created: str = response.json()["id"]
    return created


def sse(response: Any) -> Iterator[dict[str, str]]:
    """The stream's events as field dicts; a comment line comes as ``{"comment": …}``."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    if fields:
        yield fields


def _worker(rows: Rows, job_id: str, ack: queue.Queue[None] | None) -> threading.Thread:
    """Plays the worker in a thread; with ``ack`` it waits until each state was seen."""

    def run() -> None:
        for stage, progress in STAGES:
            if ack is not None:
                ack.get(timeout=10)
            rows.run(job_id, stage, progress)
        if ack is not None:
            ack.get(timeout=10)
        rows.succeed(job_id)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _without_signatures(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("result"):
        files = {k: v.split("?")[0] for k, v in job["result"]["files"].items()}
        job = {**job, "result": {**job["result"], "files": files}}
    return job


def _assert_runs_in_order(jobs: list[dict[str, Any]]) -> None:
    progress = [j["progress"] for j in jobs]
    assert progress == sorted(progress)
    order = {"queued": 0, "running": 1, "succeeded": 2}
    ranks = [order[j["status"]] for j in jobs]
    assert ranks == sorted(ranks)
    assert jobs[-1]["status"] == "succeeded"
    assert jobs[-1]["progress"] == 1.0


# ---------------------------------------------------------------- Server-Sent Events


def test_events_follow_every_change_until_the_job_succeeds(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    ack: queue.Queue[None] = queue.Queue()
    worker = _worker(rows, job_id, ack)
    received: list[dict[str, str]] = []
    url = f"/api/v1/jobs/{job_id}/events"
    with client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        for event in sse(response):
            if "comment" in event:
                continue
            received.append(event)
            ack.put(None)
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert [e["event"] for e in received] == ["job"] * (len(STAGES) + 2)
    assert [e["id"] for e in received] == [str(i) for i in range(1, len(STAGES) + 3)]
    assert received[0]["retry"] == "3000"
    jobs = [json.loads(e["data"]) for e in received]
    assert [(j["status"], j["stage"], j["progress"]) for j in jobs] == [
        ("queued", None, 0.0),
        *[("running", stage, progress) for stage, progress in STAGES],
        ("succeeded", "done", 1.0),
    ]
    _assert_runs_in_order(jobs)
    polled = client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert _without_signatures(jobs[-1]) == _without_signatures(polled.json())


def test_events_keep_order_when_the_worker_outpaces_the_stream(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    url = f"/api/v1/jobs/{job_id}/events?access_token={token}"
    with client.stream("GET", url) as response:
        assert response.status_code == 200
        events_iter = sse(response)
        first = next(events_iter)
        worker = _worker(rows, job_id, None)
        rest = [e for e in events_iter if "comment" not in e]
    worker.join(timeout=10)
    received = [first, *rest]
    assert [int(e["id"]) for e in received] == list(range(1, len(received) + 1))
    _assert_runs_in_order([json.loads(e["data"]) for e in received])


def test_a_finished_job_streams_one_event(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    rows.fail(job_id, "MUSIC_MISMATCH", "no shared music")
    url = f"/api/v1/jobs/{job_id}/events?access_token={token}"
    with client.stream("GET", url, headers={"Accept-Language": "en"}) as response:
        received = list(sse(response))
    assert len(received) == 1
    job = json.loads(received[0]["data"])
    assert job["status"] == "failed"
    assert job["error"]["message"] == (
        "The two files do not share the music; check that it is the same song."
    )


def test_a_quiet_stream_sends_keep_alive_comments(
    client: TestClient, rows: Rows, token: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE_S", 0.05)
    url = f"/api/v1/jobs/{job_id}/events?access_token={token}"
    with client.stream("GET", url) as response:
        stream = sse(response)
        assert json.loads(next(stream)["data"])["status"] == "queued"
        assert next(stream) == {"comment": "keep-alive"}
        rows.succeed(job_id)
        tail = [e for e in stream if "comment" not in e]
    assert [json.loads(e["data"])["status"] for e in tail] == ["succeeded"]
    assert tail[0]["id"] == "2"


def test_a_deleted_job_ends_its_stream(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    url = f"/api/v1/jobs/{job_id}/events?access_token={token}"
    with client.stream("GET", url) as response:
        stream = sse(response)
        next(stream)
        assert (
            client.delete(
                f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 204
        )
        assert [e for e in stream if "comment" not in e] == []


def test_events_answer_only_the_owner(client: TestClient, token: str, job_id: str) -> None:
    _, other = _session(client)
    for url, headers, status, code in (
        (f"/api/v1/jobs/{job_id}/events", other, 404, "NOT_FOUND"),
        ("/api/v1/jobs/job_unknown/events", {"Authorization": f"Bearer {token}"}, 404, "NOT_FOUND"),
        (f"/api/v1/jobs/{job_id}/events", {}, 401, "UNAUTHORIZED"),
        (f"/api/v1/jobs/{job_id}/events?access_token=bst_wrong", {}, 401, "UNAUTHORIZED"),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == status
        assert response.json()["code"] == code


def _watch_closings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record when a stream's polling loop ends."""
    closed: list[str] = []
    original = events._watch

    async def watch(*args: Any) -> AsyncGenerator[Any, None]:
        try:
            async for item in original(*args):
                yield item
        finally:
            closed.append("closed")

    monkeypatch.setattr(events, "_watch", watch)
    return closed


def _until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_leaving_an_event_stream_stops_its_work(
    client: TestClient, token: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _watch_closings(monkeypatch)
    url = f"/api/v1/jobs/{job_id}/events?access_token={token}"
    with client.stream("GET", url) as response:
        stream = sse(response)
        assert json.loads(next(stream)["data"])["status"] == "queued"
        assert closed == []
    assert _until(lambda: closed == ["closed"])


# ---------------------------------------------------------------- WebSocket


def test_the_websocket_follows_every_change_and_closes_normally(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    ack: queue.Queue[None] = queue.Queue()
    worker = _worker(rows, job_id, ack)
    jobs: list[dict[str, Any]] = []
    with client.websocket_connect(f"/api/v1/jobs/{job_id}/ws?access_token={token}") as ws:
        while not jobs or jobs[-1]["status"] != "succeeded":
            jobs.append(ws.receive_json())
            ack.put(None)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1000
    worker.join(timeout=10)
    assert [(j["status"], j["stage"], j["progress"]) for j in jobs] == [
        ("queued", None, 0.0),
        *[("running", stage, progress) for stage, progress in STAGES],
        ("succeeded", "done", 1.0),
    ]
    _assert_runs_in_order(jobs)
    polled = client.get(
        f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert _without_signatures(jobs[-1]) == _without_signatures(polled)


def test_the_websocket_accepts_the_authorization_header(
    client: TestClient, rows: Rows, token: str, job_id: str
) -> None:
    rows.succeed(job_id)
    headers = {"Authorization": f"Bearer {token}"}
    with client.websocket_connect(f"/api/v1/jobs/{job_id}/ws", headers=headers) as ws:
        job = ws.receive_json()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert job["status"] == "succeeded"
    assert job["result"]["files"]["video"].startswith(f"/api/v1/files/{job_id}/output.mp4?exp=")
    assert closed.value.code == 1000


def test_the_websocket_refuses_strangers(client: TestClient, token: str, job_id: str) -> None:
    other, _ = _session(client)
    for url, code in (
        (f"/api/v1/jobs/{job_id}/ws", 4401),
        (f"/api/v1/jobs/{job_id}/ws?access_token=bst_wrong", 4401),
        (f"/api/v1/jobs/{job_id}/ws?access_token={other}", 4404),
        (f"/api/v1/jobs/job_unknown/ws?access_token={token}", 4404),
    ):
        with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == code, url


def test_a_deleted_job_closes_its_websocket(client: TestClient, token: str, job_id: str) -> None:
    with client.websocket_connect(f"/api/v1/jobs/{job_id}/ws?access_token={token}") as ws:
        assert ws.receive_json()["status"] == "queued"
        assert (
            client.delete(
                f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 204
        )
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4404


def test_leaving_a_websocket_stops_its_work(
    client: TestClient, token: str, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = _watch_closings(monkeypatch)
    with client.websocket_connect(f"/api/v1/jobs/{job_id}/ws?access_token={token}") as ws:
        assert ws.receive_json()["status"] == "queued"
        ws.close(1001)  # the client leaves; the server must notice on its own
        assert _until(lambda: closed == ["closed"])
