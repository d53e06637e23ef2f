"""The service on PostgreSQL and S3: the real app served over HTTP in this process, its embedded
workers running the job, every file in the bucket, results fetched through presigned URLs.

A generated class video goes up by tus and its reference by multipart; the stored objects are
compared byte for byte with the sources, the job's output is measured against the known truth
after a client followed the API's redirect to the store, and deleting the job and the uploads
empties the bucket. With the S3 endpoint down, readiness answers 503, an upload is refused with
``STORAGE_UNAVAILABLE``, and a job fails with that code after its retries.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from beatsync.engine import probe
from beatsync.service.api.app import create_app
from beatsync.service.api.context import ServiceContext
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, JobStatus, Upload
from beatsync.service.jobs.embedded import EmbeddedRunner
from beatsync.service.jobs.liveness import Liveness
from beatsync.service.jobs.run import run_job
from beatsync.service.layout import job_folder, upload_folder
from beatsync.service.signing import signed_path
from beatsync.service.storage import S3Storage
from beatsync.testkit import BuiltCase, build_case, case_named
from fixtures_servers import S3Server, free_port
from truth_checks import assert_report_output_matches

RESULTS = ["output.mp4", "plot.png", "poster.jpg", "report.json"]


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("media"))


def _settings(postgres_url: str, s3: S3Server, data_dir: Path, **overrides: object) -> Settings:
    return load_settings(
        **{
            **s3.settings(),
            "database_url": postgres_url,
            "data_dir": data_dir,
            "workers": 1,
            "min_free_disk_mb": 0,
            "log_json": False,
            **overrides,
        }
    )


@dataclass
class Served:
    url: str
    settings: Settings
    context: ServiceContext

    @property
    def storage(self) -> S3Storage:
        assert isinstance(self.context.storage, S3Storage)
        return self.context.storage

    def client(self) -> httpx.Client:
        token = httpx.post(f"{self.url}/api/v1/sessions").json()["token"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )


@pytest.fixture
def served(postgres_url: str, s3: S3Server, data_dir: Path) -> Iterator[Served]:
    """The app (embedded workers, PostgreSQL, S3) behind uvicorn on a free port."""
    settings = _settings(postgres_url, s3, data_dir)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, ws="none", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    ready = threading.Event()
    while not ready.wait(0.02):
        if server.started:
            ready.set()
        assert thread.is_alive(), "the server did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, app.state.context)
    finally:
        server.should_exit = True
        thread.join(30)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _tus_upload(client: httpx.Client, path: Path) -> str:
    data = path.read_bytes()
    created = client.post(
        "/api/v1/tus",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {_b64(path.name)}",
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    offset, chunk = 0, 256 * 1024
    while offset < len(data):
        sent = client.patch(
            location,
            content=data[offset : offset + chunk],
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.text
        offset = int(sent.headers["upload-offset"])
    return location.rstrip("/").rsplit("/", 1)[-1]


def _multipart_upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _absolute(served: Served, url: str) -> str:
    return url if url.startswith("http") else f"{served.url}{url}"


def _stored(storage: S3Storage, key: str) -> bytes:
    return b"".join(storage.read(key))


class HeldDispatcher:
    """Takes jobs and runs none: the test runs them itself."""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def submit(self, job_id: str) -> None:
        return None

    def cancel(self, job_id: str) -> None:
        return None

    def check(self) -> None:
        return None

    def workers(self) -> Liveness:
        return Liveness(1, 0.0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_job_on_postgres_and_s3_from_upload_to_deleted(
    served: Served, case: BuiltCase, tmp_path: Path
) -> None:
    storage = served.storage
    client = served.client()
    dance = _tus_upload(client, case.dance)
    bgm = _multipart_upload(client, case.bgm)
    for upload_id, source in ((dance, case.dance), (bgm, case.bgm)):
        upload = client.get(f"/api/v1/uploads/{upload_id}").json()
        assert upload["status"] == "ready", upload
        assert upload["size"] == source.stat().st_size
        assert list(storage.keys(f"{upload_folder(upload_id)}")) == [
            f"{upload_folder(upload_id)}/data"
        ]
        assert _stored(storage, f"{upload_folder(upload_id)}/data") == source.read_bytes()
    spooled = [p for p in served.settings.spool_root.rglob("*") if p.is_file()]
    assert spooled == []  # every byte went on to the store

    created = client.post(
        "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm, "options": {}}
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    runner = served.context.dispatcher
    assert isinstance(runner, EmbeddedRunner)
    runner.run_until_empty(180)

    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert abs(job["result"]["mapping"]["offset_s"] - case.truth.offset) < 0.005
    assert list(storage.keys(f"{job_folder(job_id)}")) == [
        f"{job_folder(job_id)}/{n}" for n in RESULTS
    ]
    video_bytes = _stored(storage, f"{job_folder(job_id)}/output.mp4")
    assert job["result"]["output"]["size_bytes"] == len(video_bytes)

    # The job's links (to the store, or to the API, which redirects there) give the bytes to a
    # client without credentials, as a <video src> or wx.downloadFile is.
    browser = httpx.Client(base_url=served.url, follow_redirects=True, timeout=60)
    files = {kind: _absolute(served, url) for kind, url in job["result"]["files"].items()}
    assert browser.get(files["video"]).content == video_bytes

    # The API's own signed path redirects there; a client following it gets the bytes.
    secret = served.settings.secret_key.get_secret_value()
    path = signed_path(secret, f"/api/v1/files/{job_id}/output.mp4", ttl_s=600)
    redirect = browser.get(path, follow_redirects=False)
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert location.startswith(f"{storage.settings.s3_endpoint_url}/{storage.bucket}/")
    assert "X-Amz-Signature=" in location
    whole = browser.get(path)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.content == video_bytes
    for start, end in ((0, 99), (1000, 4095), (len(video_bytes) - 64, len(video_bytes) - 1)):
        part = browser.get(path, headers={"Range": f"bytes={start}-{end}"})
        assert part.status_code == 206
        assert part.content == video_bytes[start : end + 1]
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(video_bytes)}"
    download = browser.get(f"{path}&download=1")
    assert download.content == video_bytes
    assert download.headers["content-disposition"].startswith(
        f'attachment; filename="beatsync-{job_id}.mp4"'
    )

    # With presigned downloads off, the API streams from the store itself, ranges included.
    proxied = served.settings.model_copy(update={"s3_presigned_downloads": False})
    with TestClient(create_app(proxied, dispatcher=HeldDispatcher())) as api:
        job_link = api.get(f"/api/v1/jobs/{job_id}", headers=client.headers).json()
        assert job_link["result"]["files"]["video"].startswith(f"/api/v1/files/{job_id}/")
        direct = api.get(path, follow_redirects=False)
        assert direct.status_code == 200
        assert direct.content == video_bytes
        middle = api.get(path, headers={"Range": "bytes=2000-2999"})
        assert middle.status_code == 206
        assert middle.content == video_bytes[2000:3000]

    # What came out of the store is the synced video: measured against the truth.
    out = tmp_path / "out.mp4"
    out.write_bytes(whole.content)
    info = probe(out, require_video=True)
    assert abs(info.duration - job["result"]["output"]["duration_s"]) < 0.1
    report = browser.get(files["report"]).json()
    assert_report_output_matches(out, case, report)
    plot = browser.get(files["plot"])
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"

    # Deleting the job and the uploads empties the bucket.
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    assert list(storage.keys(f"{job_folder(job_id)}")) == []
    assert httpx.get(location).status_code == 404
    for upload_id in (dance, bgm):
        assert client.delete(f"/api/v1/uploads/{upload_id}").status_code == 204
    assert list(storage.keys()) == []
    browser.close()
    client.close()


def test_readiness_and_uploads_when_the_store_is_down(
    served: Served, case: BuiltCase, postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    ready = httpx.get(f"{served.url}/api/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"] == {"ok": True}

    dead = _settings(
        postgres_url,
        s3,
        tmp_path / "dead",
        s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        migrate_on_start=False,
    )
    with TestClient(create_app(dead, dispatcher=HeldDispatcher())) as client:
        answer = client.get("/api/health/ready")
        assert answer.status_code == 503
        checks = answer.json()["checks"]
        assert checks["storage"]["ok"] is False
        assert "Could not connect" in checks["storage"]["error"]
        assert checks["database"] == {"ok": True}
        assert checks["queue"] == {"ok": True}

        token = client.post("/api/v1/sessions").json()["token"]
        with case.bgm.open("rb") as handle:
            refused = client.post(
                "/api/v1/uploads",
                files={"file": (case.bgm.name, handle)},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "STORAGE_UNAVAILABLE"
        assert refused.headers["retry-after"] == "5"
        listed = client.get("/api/v1/uploads", headers={"Authorization": f"Bearer {token}"})
        assert listed.json()["items"] == []
    assert [p for p in dead.spool_root.rglob("*") if p.is_file()] == []


def test_a_job_fails_storage_unavailable_after_its_retries(
    case: BuiltCase,
    postgres_url: str,
    s3: S3Server,
    data_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = _settings(postgres_url, s3, data_dir)
    with TestClient(create_app(live, dispatcher=HeldDispatcher())) as client:
        token = client.post("/api/v1/sessions").json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        ids = []
        for path in (case.dance, case.bgm):
            with path.open("rb") as handle:
                answer = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        dance, bgm = ids
        created = client.post(
            "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm, "options": {}}
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]

    dead = _settings(
        postgres_url, s3, tmp_path / "dead", s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}"
    )
    with caplog.at_level(logging.WARNING, logger="beatsync.service.jobs.run"):
        status = run_job(job_id, settings=dead, storage_backoff_s=(0.05, 0.05))
    assert status == "failed"
    retries = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "storage unavailable" in r.getMessage()
    ]
    assert len(retries) == 2, retries  # two pauses, three attempts, then the failure
    db = Database(postgres_url)
    try:
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert job.status == JobStatus.FAILED.value
            assert job.error_code == "STORAGE_UNAVAILABLE"
            assert job.attempts == 1
            assert session.get(Upload, dance) is not None
    finally:
        db.dispose()
