"""Two API replicas that share only PostgreSQL and S3 (SeaweedFS), each with a data folder of
its own: a resumable upload started on one continues on the other, and the job runs.

In S3 mode a tus upload's bytes live in the bucket as parts of a multipart upload and a tail
object, never in a replica's spool. The class video is padded with a ``free`` box (which MP4
readers skip) so that it spans two whole 5 MiB parts and a tail.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from beatsync.service.api.app import create_app
from beatsync.service.api.context import ServiceContext
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Job, Upload
from beatsync.service.jobs.embedded import EmbeddedRunner
from beatsync.service.layout import upload_folder
from beatsync.service.storage import S3Storage
from beatsync.service.stored import data_key
from beatsync.testkit import BuiltCase, build_case, case_named
from fixtures_servers import S3Server, free_port

MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("media"))


@dataclass
class Replica:
    url: str
    settings: Settings
    context: ServiceContext


def _settings(postgres_url: str, s3: S3Server, data_dir: Path) -> Settings:
    data_dir.mkdir()
    return load_settings(
        **{
            **s3.settings(),
            "database_url": postgres_url,
            "data_dir": data_dir,
            "workers": 1,
            "min_free_disk_mb": 0,
            "log_json": False,
            "s3_part_size_mb": 5,
        }
    )


@contextmanager
def _replica(settings: Settings) -> Iterator[Replica]:
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, ws="none", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        thread.join(0.02)
    try:
        yield Replica(f"http://127.0.0.1:{port}", settings, app.state.context)
    finally:
        server.should_exit = True
        thread.join(30)


def _padded(video: Path, folder: Path, pad: int) -> Path:
    """``video`` with a top-level ``free`` box of ``pad`` bytes appended: the same media."""
    out = folder / f"padded-{video.name}"
    out.write_bytes(video.read_bytes() + struct.pack(">I4s", pad, b"free") + bytes(pad - 8))
    return out


def _spooled(settings: Settings) -> list[Path]:
    return [p for p in settings.spool_root.rglob("*") if p.is_file()]


def test_an_upload_begun_on_one_replica_finishes_on_the_other_and_the_job_runs(
    case: BuiltCase, postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    dance = _padded(case.dance, tmp_path, 11 * MiB)
    data = dance.read_bytes()
    assert 2 * 5 * MiB < len(data) < 3 * 5 * MiB  # two whole parts and a tail
    name = base64.b64encode(dance.name.encode()).decode()
    first = _settings(postgres_url, s3, tmp_path / "host-a")
    with _replica(first) as a, _replica(_settings(postgres_url, s3, tmp_path / "host-b")) as b:
        token = httpx.post(f"{a.url}/api/v1/sessions").json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        on_a = httpx.Client(base_url=a.url, headers=auth, timeout=60)
        on_b = httpx.Client(base_url=b.url, headers=auth, timeout=60)

        # Host A: creation with the first 3 MiB, then 4 MiB more (part 1 fills on the way).
        created = on_a.post(
            "/api/v1/tus",
            content=data[: 3 * MiB],
            headers={
                **CHUNK,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": f"filename {name}",
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["upload-offset"] == str(3 * MiB)
        location = created.headers["location"]
        upload_id = location.rsplit("/", 1)[-1]
        sent = on_a.patch(
            location,
            content=data[3 * MiB : 7 * MiB],
            headers={**CHUNK, "Upload-Offset": str(3 * MiB)},
        )
        assert sent.status_code == 204, sent.text
        assert sent.headers["upload-offset"] == str(7 * MiB)
        assert _spooled(a.settings) == []  # nothing of it stays on host A

        # Host B knows where it stands and takes the rest, in two chunks.
        head = on_b.head(location, headers=TUS)
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(7 * MiB)
        assert head.headers["upload-length"] == str(len(data))
        stale = on_b.patch(location, content=b"x", headers={**CHUNK, "Upload-Offset": "0"})
        assert stale.status_code == 409
        assert stale.json()["code"] == "UPLOAD_CONFLICT"
        offset = 7 * MiB
        for end in (12 * MiB, len(data)):
            sent = on_b.patch(
                location, content=data[offset:end], headers={**CHUNK, "Upload-Offset": str(offset)}
            )
            assert sent.status_code == 204, sent.text
            offset = int(sent.headers["upload-offset"])
            assert offset == end
        assert _spooled(a.settings) == []
        assert _spooled(b.settings) == []

        # Host A sees it finished; the stored object is the file, and no part or tail is left.
        upload = on_a.get(f"/api/v1/uploads/{upload_id}").json()
        assert upload["status"] == "ready", upload
        assert upload["size"] == len(data)
        storage = a.context.storage
        assert isinstance(storage, S3Storage)
        assert list(storage.keys(f"{upload_folder(upload_id)}")) == [
            f"{upload_folder(upload_id)}/data"
        ]
        assert b"".join(storage.read(f"{upload_folder(upload_id)}/data")) == data
        pending = storage.client.list_multipart_uploads(Bucket=s3.bucket)
        assert pending.get("Uploads", []) == []

        with case.bgm.open("rb") as handle:
            bgm = on_b.post("/api/v1/uploads", files={"file": (case.bgm.name, handle)})
        assert bgm.status_code == 201, bgm.text
        job = on_b.post(
            "/api/v1/jobs",
            json={"dance_upload_id": upload_id, "bgm_upload_id": bgm.json()["id"], "options": {}},
        )
        assert job.status_code == 202, job.text
        runner = b.context.dispatcher
        assert isinstance(runner, EmbeddedRunner)
        runner.run_until_empty(180)
        done = on_a.get(f"/api/v1/jobs/{job.json()['id']}").json()
        assert done["status"] == "succeeded", done
        assert abs(done["result"]["mapping"]["offset_s"] - case.truth.offset) < 0.005
        on_a.close()
        on_b.close()


def test_a_terminated_upload_leaves_no_parts(
    case: BuiltCase, postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    settings = _settings(postgres_url, s3, tmp_path / "host")
    with _replica(settings) as replica:
        token = httpx.post(f"{replica.url}/api/v1/sessions").json()["token"]
        client = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        created = client.post(
            "/api/v1/tus",
            content=bytes(6 * MiB),
            headers={**CHUNK, "Upload-Length": str(20 * MiB)},
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        upload_id = location.rsplit("/", 1)[-1]
        storage = replica.context.storage
        assert isinstance(storage, S3Storage)
        assert list(storage.keys(f"{upload_folder(upload_id)}")) == [
            f"{upload_folder(upload_id)}/tail-{6 * MiB}"
        ]
        pending = storage.client.list_multipart_uploads(Bucket=s3.bucket)["Uploads"]
        assert [u["Key"] for u in pending] == [f"{upload_folder(upload_id)}/data"]
        assert client.delete(location, headers=TUS).status_code == 204
        assert list(storage.keys()) == []
        assert storage.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
        assert client.head(location, headers=TUS).status_code == 404
        client.close()


def test_a_direct_upload_goes_to_the_store_and_the_api_only_signs_and_records(
    case: BuiltCase, postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    dance = _padded(case.dance, tmp_path, 11 * MiB)
    data = dance.read_bytes()
    with _replica(_settings(postgres_url, s3, tmp_path / "host")) as replica:
        token = httpx.post(f"{replica.url}/api/v1/sessions").json()["token"]
        client = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        started = client.post(
            "/api/v1/uploads/direct",
            json={"size": len(data), "filename": dance.name, "content_type": "video/mp4"},
        )
        assert started.status_code == 201, started.text
        body = started.json()
        upload_id = body["upload"]["id"]
        assert body["upload"]["status"] == "receiving"
        assert body["part_size"] == 5 * MiB
        parts = body["parts"]
        assert [p["number"] for p in parts] == [1, 2, 3]
        assert all(p["url"].startswith(f"{s3.endpoint_url}/{s3.bucket}/") for p in parts)

        # Completing before every part is there is refused, and the upload stays open.
        store = httpx.Client(timeout=60)  # the client's own connection to the store
        for part in reversed(parts[1:]):
            start = (part["number"] - 1) * 5 * MiB
            put = store.put(part["url"], content=data[start : start + 5 * MiB])
            assert put.status_code == 200, put.text
        early = client.post(f"/api/v1/uploads/direct/{upload_id}/complete")
        assert early.status_code == 409
        assert early.json()["code"] == "UPLOAD_INCOMPLETE"
        assert store.put(parts[0]["url"], content=data[: 5 * MiB]).status_code == 200

        storage = replica.context.storage
        assert isinstance(storage, S3Storage)
        reads = _capture_reads(storage)
        done = client.post(f"/api/v1/uploads/direct/{upload_id}/complete")
        assert done.status_code == 200, done.text
        upload = done.json()
        # Recorded, not read: the file is checked by the first run that fetches it.
        assert (upload["status"], upload["sha256"], upload["media"]) == ("ready", None, None)
        assert upload["size"] == len(data)
        again = client.post(f"/api/v1/uploads/direct/{upload_id}/complete")
        assert again.json() == upload
        assert _spooled(replica.settings) == []

        # A job runs on it: its run hashes and probes the file it fetched anyway.
        with case.bgm.open("rb") as handle:
            bgm = client.post("/api/v1/uploads", files={"file": (case.bgm.name, handle)})
        assert bgm.status_code == 201, bgm.text
        job = client.post(
            "/api/v1/jobs", json={"dance_upload_id": upload_id, "bgm_upload_id": bgm.json()["id"]}
        )
        assert job.status_code == 202, job.text
        runner = replica.context.dispatcher
        assert isinstance(runner, EmbeddedRunner)
        runner.run_until_empty(180)
        done_job = client.get(f"/api/v1/jobs/{job.json()['id']}").json()
        assert done_job["status"] == "succeeded", done_job
        checked = client.get(f"/api/v1/uploads/{upload_id}").json()
        assert checked["sha256"] == hashlib.sha256(data).hexdigest()
        assert checked["media"]["has_video"] is True
        assert reads == []  # not one GET of an upload's bytes by the API process
        assert b"".join(storage.read(f"{upload_folder(upload_id)}/data")) == data

        # Checked, it dedupes like any upload (the same bytes again are stored once), and the
        # run's probe found what the API's finds in the same file.
        again_upload = client.post(
            "/api/v1/uploads", files={"file": (dance.name, data, "video/mp4")}
        ).json()
        assert again_upload["media"] == checked["media"]
        with replica.context.db.session() as session:
            row = session.get(Upload, again_upload["id"])
            assert row is not None
            assert row.storage_key == data_key(upload_id)
        store.close()
        client.close()


def test_a_direct_upload_that_is_no_media_is_refused_by_the_run_that_checks_it(
    case: BuiltCase, postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    junk = random.Random(7).randbytes(64 * 1024)
    with _replica(_settings(postgres_url, s3, tmp_path / "host")) as replica:
        token = httpx.post(f"{replica.url}/api/v1/sessions").json()["token"]
        client = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        started = client.post("/api/v1/uploads/direct", json={"size": len(junk)}).json()
        upload_id = started["upload"]["id"]
        [part] = started["parts"]
        assert httpx.put(part["url"], content=junk, timeout=60).status_code == 200
        done = client.post(f"/api/v1/uploads/direct/{upload_id}/complete").json()
        assert done["status"] == "ready"
        with case.bgm.open("rb") as handle:
            bgm = client.post("/api/v1/uploads", files={"file": (case.bgm.name, handle)}).json()
        job = client.post(
            "/api/v1/jobs", json={"dance_upload_id": upload_id, "bgm_upload_id": bgm["id"]}
        ).json()
        runner = replica.context.dispatcher
        assert isinstance(runner, EmbeddedRunner)
        runner.run_until_empty(180)

        failed = client.get(f"/api/v1/jobs/{job['id']}").json()
        assert (failed["status"], failed["error"]["code"]) == ("failed", "INVALID_FORMAT")
        with replica.context.db.session() as session:
            row = session.get(Job, job["id"])
            assert row is not None
            assert row.attempts == 1  # bad media is not retried
        refused = client.get(f"/api/v1/uploads/{upload_id}").json()
        assert (refused["status"], refused["error"]["code"]) == ("rejected", "INVALID_FORMAT")
        assert refused["sha256"] == hashlib.sha256(junk).hexdigest()
        storage = replica.context.storage
        assert list(storage.keys(upload_folder(upload_id))) == []
        again = client.post(
            "/api/v1/jobs", json={"dance_upload_id": upload_id, "bgm_upload_id": bgm["id"]}
        )
        assert (again.status_code, again.json()["code"]) == (422, "INVALID_FORMAT")
        client.close()


def _capture_reads(storage: S3Storage) -> list[str]:
    """The keys of the uploads this process's client GETs from now on."""
    reads: list[str] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        if str(params.get("Key", "")).startswith("uploads/"):
            reads.append(str(params["Key"]))

    storage.client.meta.events.register("before-call.s3.GetObject", seen)
    return reads


def test_direct_parts_that_do_not_add_up_delete_the_upload(
    postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    with _replica(_settings(postgres_url, s3, tmp_path / "host")) as replica:
        token = httpx.post(f"{replica.url}/api/v1/sessions").json()["token"]
        client = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        started = client.post("/api/v1/uploads/direct", json={"size": 1000})
        assert started.status_code == 201, started.text
        upload_id = started.json()["upload"]["id"]
        (part,) = started.json()["parts"]
        assert httpx.put(part["url"], content=bytes(1500)).status_code == 200
        refused = client.post(f"/api/v1/uploads/direct/{upload_id}/complete")
        assert refused.status_code == 422
        assert refused.json()["code"] == "VALIDATION_ERROR"
        assert "1500 bytes, not the 1000 declared" in refused.json()["detail"]
        assert client.get(f"/api/v1/uploads/{upload_id}").status_code == 404
        storage = replica.context.storage
        assert isinstance(storage, S3Storage)
        assert list(storage.keys()) == []
        client.close()


def test_direct_parts_the_store_refuses_delete_the_upload(
    postgres_url: str, s3: S3Server, tmp_path: Path
) -> None:
    with _replica(_settings(postgres_url, s3, tmp_path / "host")) as replica:
        token = httpx.post(f"{replica.url}/api/v1/sessions").json()["token"]
        client = httpx.Client(
            base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        started = client.post("/api/v1/uploads/direct", json={"size": 6 * MiB})
        assert started.status_code == 201, started.text
        upload_id = started.json()["upload"]["id"]
        first, second = started.json()["parts"]
        # The right total, split wrongly: a first part under the 5 MiB every part but the last
        # must have.
        assert httpx.put(first["url"], content=bytes(MiB)).status_code == 200
        assert httpx.put(second["url"], content=bytes(5 * MiB)).status_code == 200
        refused = client.post(f"/api/v1/uploads/direct/{upload_id}/complete")
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "VALIDATION_ERROR"
        assert "EntityTooSmall" in refused.json()["detail"]
        assert client.get(f"/api/v1/uploads/{upload_id}").status_code == 404
        storage = replica.context.storage
        assert isinstance(storage, S3Storage)
        assert list(storage.keys()) == []
        assert storage.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
        client.close()


def test_direct_uploads_need_s3(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    settings = load_settings(data_dir=tmp_path, min_free_disk_mb=0, log_json=False)
    with TestClient(create_app(settings)) as client:
        token = client.post("/api/v1/sessions").json()["token"]
        refused = client.post(
            "/api/v1/uploads/direct",
            json={"size": 1000},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert refused.status_code == 400
    assert refused.json()["code"] == "VALIDATION_ERROR"
    assert "need S3 storage" in refused.json()["detail"]
