"""The service end to end: ``beatsync serve`` as a subprocess, real uploads, real jobs.

A generated class video and its reference go up (one by resumable tus, interrupted halfway and
resumed; one by multipart), a job runs in the embedded worker pool, its progress is watched over
SSE and WebSocket, and the result is downloaded through its signed URL and measured against the
truth exactly as the engine's tests measure theirs. Then the server is killed with jobs queued and
running, restarted, and every job still finishes.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_process import FINISHED, ServiceProcess
from websockets.sync.client import connect

from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from beatsync.testkit.measure import video_packets_copied
from truth_checks import assert_report_output_matches


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-degraded"), tmp_path_factory.mktemp("media"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServiceProcess]:
    service = ServiceProcess(tmp_path / "data", workers=1).start()
    yield service
    service.stop()


def _client(service: ServiceProcess) -> httpx.Client:
    token = httpx.post(f"{service.url}/api/v1/sessions").json()["token"]
    return httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tus_upload(client: httpx.Client, path: Path, *, interrupt_at: int | None = None) -> str:
    """Upload ``path`` over tus in 64 KiB chunks; stop at ``interrupt_at`` and resume from HEAD."""
    data = path.read_bytes()
    created = client.post(
        "/api/v1/tus",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {_b64(path.name)},filetype {_b64('video/mp4')}",
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    offset, chunk = 0, 64 * 1024
    stop = len(data) if interrupt_at is None else interrupt_at
    while offset < len(data):
        if offset >= stop:
            # The client went away; a new one asks the server where to go on from.
            head = client.head(location, headers={"Tus-Resumable": "1.0.0"})
            assert head.status_code == 200
            assert int(head.headers["upload-offset"]) == offset
            stop = len(data)
        end = min(offset + chunk, stop)
        sent = client.patch(
            location,
            content=data[offset:end],
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.text
        offset = int(sent.headers["upload-offset"])
        assert offset == end
    return upload_id


def multipart_upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_ready(client: httpx.Client, upload_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        upload: dict[str, Any] = client.get(f"/api/v1/uploads/{upload_id}").json()
        if upload["status"] != "receiving":
            return upload
        time.sleep(0.1)
    raise AssertionError(f"upload {upload_id} did not complete")


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s")


def ticket_for(service: ServiceProcess, token: str, job_id: str) -> dict[str, Any]:
    """A stream ticket of ``job_id``: the way a browser opens the streams without its token."""
    answer = httpx.post(
        f"{service.url}/api/v1/jobs/{job_id}/ticket",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    ticket: dict[str, Any] = answer.json()
    return ticket


def read_sse(service: ServiceProcess, token: str, job_id: str, into: list[dict[str, Any]]) -> None:
    url = service.url + ticket_for(service, token, job_id)["events"]
    with httpx.stream("GET", url, timeout=180) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                into.append(json.loads(line[5:]))


def read_ws(service: ServiceProcess, token: str, job_id: str, into: list[dict[str, Any]]) -> None:
    url = f"ws://127.0.0.1:{service.port}" + ticket_for(service, token, job_id)["ws"]
    with connect(url, open_timeout=10) as socket:
        for message in socket:
            into.append(json.loads(message))


def assert_monotonic(events: list[dict[str, Any]]) -> None:
    assert events, "no progress events"
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress
    assert events[-1]["status"] == "succeeded"
    assert sum(e["status"] in FINISHED for e in events) == 1


def test_a_job_from_upload_to_verified_download(
    server: ServiceProcess, case: BuiltCase, tmp_path: Path
) -> None:
    client = _client(server)
    token = client.headers["Authorization"].split()[1]
    dance = tus_upload(client, case.dance, interrupt_at=case.dance.stat().st_size // 2)
    bgm = multipart_upload(client, case.bgm)
    dance_upload = wait_ready(client, dance)
    assert dance_upload["status"] == "ready"
    assert dance_upload["size"] == case.dance.stat().st_size
    assert dance_upload["media"]["has_video"] is True

    created = client.post(
        "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm, "options": {}}
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.headers["location"].endswith(f"/api/v1/jobs/{job_id}")

    sse: list[dict[str, Any]] = []
    ws: list[dict[str, Any]] = []
    readers = [
        threading.Thread(target=read_sse, args=(server, token, job_id, sse)),
        threading.Thread(target=read_ws, args=(server, token, job_id, ws)),
    ]
    for reader in readers:
        reader.start()
    job = wait_finished(client, job_id)
    for reader in readers:
        reader.join(timeout=30)
        assert not reader.is_alive()
    assert job["status"] == "succeeded", job
    assert_monotonic(sse)
    assert_monotonic(ws)
    assert sse[-1]["result"]["confidence"] == job["result"]["confidence"]
    assert ws[-1]["result"]["mapping"] == job["result"]["mapping"]

    truth = case.truth
    assert abs(job["result"]["mapping"]["offset_s"] - truth.offset) < 0.005
    files = job["result"]["files"]
    video = httpx.get(server.url + files["video"], timeout=60)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    out = tmp_path / "out.mp4"
    out.write_bytes(video.content)
    partial = httpx.get(server.url + files["video"], headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.content == video.content[100:200]

    report = httpx.get(server.url + files["report"]).json()
    assert_report_output_matches(out, case, report)
    assert video_packets_copied(case.dance, out)
    plot = httpx.get(server.url + files["plot"])
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"

    # A second request for the same inputs and options is answered from the result cache.
    again = client.post(
        "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm, "options": {}}
    )
    assert again.status_code == 200
    assert again.json()["id"] == job_id
    client.close()


def test_a_killed_server_loses_no_job(case: BuiltCase, tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data", workers=1).start()
    client = _client(service)
    try:
        dance = multipart_upload(client, case.dance)
        bgm = multipart_upload(client, case.bgm)
        ids = []
        for nudge in (0.0, 7.0):
            created = client.post(
                "/api/v1/jobs",
                json={
                    "dance_upload_id": dance,
                    "bgm_upload_id": bgm,
                    "options": {"nudge_ms": nudge},
                },
            )
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        deadline = time.monotonic() + 60
        while client.get(f"/api/v1/jobs/{ids[0]}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the first job never started"
            time.sleep(0.05)
        assert client.get(f"/api/v1/jobs/{ids[1]}").json()["status"] == "queued"

        service.kill()
        service.start()
        headers = client.headers
        client.close()
        client = httpx.Client(base_url=service.url, headers=headers, timeout=60)
        jobs = [wait_finished(client, job_id) for job_id in ids]
        assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
        assert jobs[0]["attempts"] == 2  # redelivered once after the crash
        assert jobs[1]["attempts"] == 1
        listed = client.get("/api/v1/jobs").json()["items"]
        assert sorted(job["id"] for job in listed) == sorted(ids)
        offsets = [job["result"]["mapping"]["offset_s"] for job in jobs]
        assert abs(offsets[0] - case.truth.offset) < 0.005
        # The mapping used for the second job is the found one, played 7 ms later.
        assert abs((offsets[0] - offsets[1]) - 0.007) < 0.0005
    finally:
        client.close()
        service.stop()
