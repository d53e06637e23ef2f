"""S3 storage against a real S3 server over HTTP (SeaweedFS, see ``fixtures_servers``): the local
storage's contract, multipart uploads, ranged and presigned reads, batched deletes, and an endpoint
that is down."""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from beatsync.service.config import Settings, load_settings
from beatsync.service.storage import S3Storage, Storage, StorageUnavailable, open_storage
from fixtures_servers import S3Server

MiB = 1 << 20
PART = 5 * MiB  # the smallest part S3 accepts


def _settings(s3: S3Server, data_dir: Path, **overrides: object) -> Settings:
    return load_settings(**{**s3.settings(), "data_dir": data_dir, **overrides})


@pytest.fixture
def storage(s3: S3Server, data_dir: Path) -> S3Storage:
    return S3Storage(_settings(s3, data_dir), part_size=PART)


def _file(folder: Path, data: bytes, name: str = "src") -> Path:
    path = folder / f"{name}-{len(data)}"
    path.write_bytes(data)
    return path


def _random(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _capture(storage: S3Storage, operation: str) -> list[Any]:
    """The requests ``operation`` sends from now on, as they leave for the server."""
    sent: list[Any] = []

    def keep(request: Any, **_: Any) -> None:
        sent.append(request)

    storage.client.meta.events.register(f"before-send.s3.{operation}", keep)
    return sent


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections are refused


def test_open_storage_gives_s3_and_it_implements_the_protocol(s3: S3Server, data_dir: Path) -> None:
    storage = open_storage(_settings(s3, data_dir))
    assert isinstance(storage, S3Storage)
    assert isinstance(storage, Storage)
    assert storage.bucket == s3.bucket


def test_a_large_file_goes_up_in_parts_and_reads_back_exactly(
    storage: S3Storage, tmp_path: Path
) -> None:
    data = _random(20_000_000, seed=1)
    source = _file(tmp_path, data)
    parts = _capture(storage, "UploadPart")
    assert storage.put_file("jobs/job_1/output.mp4", source) == len(data)
    assert not source.exists()
    assert len(parts) == 4  # 5 + 5 + 5 + 4.07 MiB

    head = storage.client.head_object(Bucket=storage.bucket, Key="jobs/job_1/output.mp4")
    assert head["ETag"].strip('"').endswith("-4")
    assert head["ContentType"] == "video/mp4"
    assert storage.size("jobs/job_1/output.mp4") == len(data)

    chunks = list(storage.read("jobs/job_1/output.mp4"))
    assert max(len(c) for c in chunks) <= MiB  # streamed in chunks, never whole
    assert b"".join(chunks) == data
    for start, end in [
        (0, 1),
        (5, 100),
        (PART - 10, PART + 10),  # across a part boundary
        (3 * MiB, 9 * MiB + 7),
        (len(data) - 3, None),
        (len(data) - 3, len(data) + 50),  # past the end: cut at the end
        (12 * MiB, None),
    ]:
        assert b"".join(storage.read("jobs/job_1/output.mp4", start, end)) == data[start:end]
    assert b"".join(storage.read("jobs/job_1/output.mp4", len(data) + 10)) == b""
    assert b"".join(storage.read("jobs/job_1/output.mp4", 40, 40)) == b""


def test_uploads_send_no_checksums_other_stores_refuse(storage: S3Storage, tmp_path: Path) -> None:
    small = _capture(storage, "PutObject")
    parts = _capture(storage, "UploadPart")
    storage.put_file("uploads/upl_1/data", _file(tmp_path, b"x" * 1000, "small"))
    storage.put_file("uploads/upl_2/data", _file(tmp_path, _random(PART + 1, seed=2), "big"))
    assert len(small) == 1
    assert len(parts) == 2
    for request in (*small, *parts):
        names = {k.lower() for k in request.headers}
        assert not any(n.startswith("x-amz-checksum") for n in names), names
        assert "x-amz-sdk-checksum-algorithm" not in names


def test_put_replaces_whole_and_sets_the_content_type(storage: S3Storage, tmp_path: Path) -> None:
    storage.put_file("jobs/job_1/report.json", _file(tmp_path, b'{"v": 1}'))
    storage.put_file("jobs/job_1/report.json", _file(tmp_path, b'{"version": 2}'))
    assert b"".join(storage.read("jobs/job_1/report.json")) == b'{"version": 2}'
    expected = {
        "jobs/job_1/report.json": "application/json",
        "jobs/job_1/plot.png": "image/png",
        "jobs/job_1/poster.jpg": "image/jpeg",
        "uploads/upl_1/data": "application/octet-stream",
    }
    for key in list(expected)[1:]:
        storage.put_file(key, _file(tmp_path, key.encode()))
    for key, content_type in expected.items():
        head = storage.client.head_object(Bucket=storage.bucket, Key=key)
        assert head["ContentType"] == content_type


def test_fetch_gives_a_local_copy_and_missing_keys_are_missing(
    storage: S3Storage, tmp_path: Path
) -> None:
    data = _random(PART + 777, seed=3)  # fetched in ranged parts too
    storage.put_file("uploads/upl_1/data", _file(tmp_path, data))
    copy = storage.fetch("uploads/upl_1/data", tmp_path / "work" / "dance.mp4")
    assert copy == tmp_path / "work" / "dance.mp4"
    assert copy.read_bytes() == data
    with pytest.raises(FileNotFoundError):
        storage.fetch("uploads/upl_9/data", tmp_path / "work" / "x")
    assert not (tmp_path / "work" / "x").exists()
    with pytest.raises(FileNotFoundError):
        storage.read("uploads/upl_9/data")  # at the call, not at the first chunk
    assert storage.size("uploads/upl_9/data") is None


def test_keys_and_delete_prefix_in_batches(s3: S3Server, data_dir: Path, tmp_path: Path) -> None:
    storage = S3Storage(_settings(s3, data_dir), delete_batch=3)
    mine = [f"jobs/job_1/f{i:02d}.json" for i in range(8)]
    others = ["jobs/job_10/output.mp4", "jobs/job_2/output.mp4", "uploads/upl_1/data"]
    for key in mine + others:
        storage.put_file(key, _file(tmp_path, key.encode()))
    assert list(storage.keys("jobs/job_1")) == mine  # not job_10: a prefix is a folder
    assert sorted(storage.keys()) == sorted(mine + others)

    deletes = _capture(storage, "DeleteObjects")
    assert list(storage.names("jobs")) == ["job_1", "job_10", "job_2"]
    assert storage.delete_prefix("jobs/job_1") == 8
    assert len(deletes) == 3 + 1  # 3 + 3 + 2 keys, then the folder's name
    # The folder is gone too: a store with real folders (SeaweedFS) would list it, empty.
    assert list(storage.names("jobs")) == ["job_10", "job_2"]
    assert list(storage.keys("jobs", start="job_1")) == ["jobs/job_10/output.mp4"]
    for request in deletes:
        digest = base64.b64encode(hashlib.md5(request.body, usedforsecurity=False).digest())
        assert _text(request.headers["Content-MD5"]) == digest.decode()
    assert sorted(storage.keys()) == sorted(others)
    assert storage.delete_prefix("jobs/job_1") == 0
    assert storage.size("jobs/job_10/output.mp4") == len(b"jobs/job_10/output.mp4")

    # Single keys, in batches too; a missing one is no error.
    assert storage.delete(["jobs/job_10/output.mp4", "jobs/job_2/output.mp4", "jobs/x/gone"]) == 3
    assert sorted(storage.keys()) == ["uploads/upl_1/data"]


def test_presigned_urls_serve_the_bytes_with_ranges(storage: S3Storage, tmp_path: Path) -> None:
    data = _random(3 * MiB + 5, seed=4)
    storage.put_file("jobs/job_1/output.mp4", _file(tmp_path, data))

    url = storage.presigned_url("jobs/job_1/output.mp4", expires_s=600)
    assert url is not None
    whole = httpx.get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert "content-disposition" not in whole.headers

    part = httpx.get(url, headers={"Range": "bytes=1048570-1048600"})
    assert part.status_code == 206
    assert part.content == data[1048570:1048601]
    assert part.headers["content-range"] == f"bytes 1048570-1048600/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == data[-10:]

    named = storage.presigned_url(
        "jobs/job_1/output.mp4", expires_s=600, filename="beatsync-job_1.mp4"
    )
    assert named is not None
    download = httpx.get(named)
    assert download.content == data
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"beatsync-job_1.mp4\"; filename*=UTF-8''beatsync-job_1.mp4"
    )


def test_presigned_urls_carry_their_expiry(storage: S3Storage) -> None:
    """The URL's signed lifetime is the one asked for (S3 refuses it afterwards; the test
    server does not check lifetimes, so the signed fields are what is asserted)."""
    before = datetime.now(UTC).replace(microsecond=0)
    url = storage.presigned_url("jobs/job_1/output.mp4", expires_s=90)
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC)
    # SigV4 URLs live at most seven days; a longer wish is cut rather than refused.
    longest = storage.presigned_url("jobs/job_1/output.mp4", expires_s=30 * 24 * 3600)
    assert longest is not None
    assert parse_qs(urlsplit(longest).query)["X-Amz-Expires"] == [str(7 * 24 * 3600)]


def test_presigned_urls_follow_the_addressing_style_and_public_endpoint(
    s3: S3Server, data_dir: Path, tmp_path: Path
) -> None:
    virtual = S3Storage(
        _settings(
            s3,
            data_dir,
            s3_endpoint_url="https://oss-cn-hangzhou.aliyuncs.com",
            s3_region="cn-hangzhou",
            s3_addressing_style="virtual",
        )
    )
    url = virtual.presigned_url("jobs/job_1/plot.png", expires_s=60)
    assert url is not None
    parts = urlsplit(url)
    assert parts.netloc == f"{s3.bucket}.oss-cn-hangzhou.aliyuncs.com"
    assert parts.path == "/jobs/job_1/plot.png"
    assert "%2Fcn-hangzhou%2Fs3%2Faws4_request" in parts.query

    # The service reaches the store at 127.0.0.1; clients are sent to it as "localhost".
    public = s3.endpoint_url.replace("127.0.0.1", "localhost")
    storage = S3Storage(_settings(s3, data_dir, s3_public_endpoint_url=public))
    storage.put_file("jobs/job_1/plot.png", _file(tmp_path, b"\x89PNG plot"))
    url = storage.presigned_url("jobs/job_1/plot.png", expires_s=60)
    assert url is not None
    assert url.startswith(f"{public}/{s3.bucket}/jobs/job_1/plot.png?")
    assert httpx.get(url).content == b"\x89PNG plot"


def test_bad_configuration_fails_at_construction(s3: S3Server, data_dir: Path) -> None:
    with pytest.raises(ValueError, match="Invalid endpoint"):
        S3Storage(_settings(s3, data_dir, s3_endpoint_url="minio:9000"))
    with pytest.raises(ValueError, match="at least 5 MiB"):
        S3Storage(_settings(s3, data_dir), part_size=MiB)
    with pytest.raises(ValueError, match="DeleteObjects limit"):
        S3Storage(_settings(s3, data_dir), delete_batch=1001)


def test_presigned_downloads_can_be_turned_off(s3: S3Server, data_dir: Path) -> None:
    storage = S3Storage(_settings(s3, data_dir, s3_presigned_downloads=False))
    assert storage.presigned_url("jobs/job_1/output.mp4", expires_s=60) is None


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "/abs/path", "a/../../b", "a//b", "", "a/b c", "uploads/\x00"]
)
def test_unsafe_keys_are_refused(storage: S3Storage, key: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        storage.size(key)
    with pytest.raises(ValueError, match="not a storage key"):
        storage.presigned_url(key, expires_s=60)


def test_check_passes_on_the_bucket_and_fails_without_it(
    storage: S3Storage, s3: S3Server, data_dir: Path, tmp_path: Path
) -> None:
    storage.check()
    missing = S3Storage(_settings(s3, data_dir, s3_bucket=f"{s3.bucket}-gone"))
    with pytest.raises(StorageUnavailable, match="does not exist"):
        missing.check()
    source = _file(tmp_path, b"kept")
    with pytest.raises(StorageUnavailable):
        missing.put_file("uploads/upl_1/data", source)
    assert source.read_bytes() == b"kept"  # a failed put leaves the file for another try


def test_an_unreachable_endpoint_is_unavailable_quickly(
    s3: S3Server, data_dir: Path, tmp_path: Path
) -> None:
    dead = S3Storage(_settings(s3, data_dir, s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}"))
    source = _file(tmp_path, b"payload")
    heads = _capture(dead, "HeadObject")
    operations: dict[str, Callable[[], object]] = {
        "check": dead.check,
        "size": lambda: dead.size("uploads/upl_1/data"),
        "read": lambda: dead.read("uploads/upl_1/data"),
        "fetch": lambda: dead.fetch("uploads/upl_1/data", tmp_path / "copy"),
        "put_file": lambda: dead.put_file("uploads/upl_1/data", source),
        "keys": lambda: list(dead.keys("jobs")),
        "delete_prefix": lambda: dead.delete_prefix("jobs/job_1"),
    }
    for name, operation in operations.items():
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="Could not connect"):
            operation()
        # Three attempts with botocore's jittered backoff: well under ten seconds.
        assert time.monotonic() - started < 10, name
    assert source.read_bytes() == b"payload"
    assert [_text(r.headers["amz-sdk-request"]) for r in heads] == [
        "attempt=1; max=3",
        "attempt=2; max=3",
        "attempt=3; max=3",
    ]
    # Presigning needs no connection: the URL is made, and fails only when fetched.
    assert dead.presigned_url("jobs/job_1/output.mp4", expires_s=60) is not None


def test_the_sweeper_removes_orphans_from_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    from datetime import timedelta

    from beatsync.service.cleanup import sweep
    from beatsync.service.db import Database, migrate

    (tmp_path / "data").mkdir()
    settings = load_settings(data_dir=tmp_path / "data", min_free_disk_mb=0, **s3.settings())
    storage = open_storage(settings)
    source = tmp_path / "orphan"
    source.write_bytes(b"x" * 1000)
    before = datetime.now(UTC)
    storage.put_file("jobs/job_orphan/output.mp4", source)
    written = storage.modified("jobs/job_orphan/output.mp4")
    assert written is not None
    assert written.tzinfo is not None
    assert abs((written - before).total_seconds()) < 60
    assert storage.modified("jobs/job_nothing/output.mp4") is None

    migrate(settings.database)
    db = Database(settings.database)
    try:
        young = sweep(settings, db, storage)  # the default grace: an upload may be in flight
        assert young.orphans_deleted == 0
        assert young.pending == 1
        report = sweep(settings, db, storage, grace=timedelta(0))
    finally:
        db.dispose()
    assert report.orphans_deleted == 1
    assert report.files_deleted == 1
    assert list(storage.keys("jobs")) == []
