"""Resumable uploads over tus 1.0: creation, offsets, resume, checksums, termination, overrides.

A finished upload is probed like a multipart one: real media from the test kit becomes
``ready`` with its sha256 and facts, other bytes ``rejected`` with the refusal's code.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from factories import asgi_request
from fastapi.testclient import TestClient
from sqlalchemy import update

from beatsync.service.config import Settings
from beatsync.service.db import Database, Upload
from beatsync.service.db.models import utcnow
from beatsync.service.layout import upload_folder
from beatsync.service.resumable import ChunkAppender, commit_offset
from beatsync.service.storage import Storage, StorageUnavailable
from beatsync.service.uploads import spool_path
from beatsync.testkit import build_case, case_named

TUS = "/api/v1/tus"
OCTET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def dance(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    case = build_case(case_named("small-clean"), tmp_path_factory.mktemp("tus-media"))
    return case.dance.read_bytes()


@pytest.fixture
def tus(auth: dict[str, str]) -> dict[str, str]:
    """Headers of an owner speaking tus 1.0.0."""
    return {**auth, "Tus-Resumable": "1.0.0"}


def _b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def _create(client: TestClient, tus: dict[str, str], length: int, **headers: str) -> Any:
    metadata = f"filename {_b64('课堂 class.mp4')},filetype {_b64('video/mp4')}"
    return client.post(
        TUS,
        headers={**tus, "Upload-Length": str(length), "Upload-Metadata": metadata, **headers},
    )


def _created(client: TestClient, tus: dict[str, str], length: int) -> str:
    response = _create(client, tus, length)
    assert response.status_code == 201, response.text
    location: str = response.headers["location"]
    return location


def _patch(
    client: TestClient, tus: dict[str, str], url: str, offset: int, data: bytes, **headers: str
) -> Any:
    return client.patch(
        url, content=data, headers={**tus, **OCTET, "Upload-Offset": str(offset), **headers}
    )


def _offset(client: TestClient, tus: dict[str, str], url: str) -> int:
    response = client.head(url, headers=tus)
    assert response.status_code == 200, response.headers
    return int(response.headers["upload-offset"])


def _upload(client: TestClient, auth: dict[str, str], url: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/uploads/{url.rsplit('/', 1)[1]}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def _refused_head(client: TestClient, url: str, headers: dict[str, str], status: int) -> None:
    """A HEAD refusal: the status, the protocol header, no offset (and no body to read)."""
    response = client.head(url, headers=headers)
    assert response.status_code == status
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "upload-offset" not in response.headers


def _part(settings: Settings, url: str) -> Path:
    return spool_path(settings, url.rsplit("/", 1)[1])


def _stored(settings: Settings, url: str) -> Path:
    return settings.storage_root / upload_folder(url.rsplit("/", 1)[1]) / "data"


# --- discovery and creation ------------------------------------------------------------------


def test_options_describes_the_server(client: TestClient, settings: Settings) -> None:
    response = client.options(TUS)
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-extension"] == (
        "creation,creation-with-upload,termination,expiration,checksum"
    )
    assert response.headers["tus-max-size"] == str(settings.max_upload_bytes)
    assert response.headers["tus-checksum-algorithm"] == "sha1,sha256,md5"


def test_creation_makes_an_empty_receiving_upload(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings
) -> None:
    before = utcnow().replace(microsecond=0)
    response = _create(client, tus, 12345)
    assert response.status_code == 201
    assert response.headers["tus-resumable"] == "1.0.0"
    url = response.headers["location"]
    assert url.startswith(f"{TUS}/upl_")
    assert response.headers["upload-offset"] == "0"
    upload = _upload(client, auth, url)
    assert upload["id"] == url.rsplit("/", 1)[1]
    assert (upload["status"], upload["size"], upload["offset"]) == ("receiving", 12345, 0)
    assert upload["filename"] == "课堂 class.mp4"
    assert upload["sha256"] is None
    assert _part(settings, url).stat().st_size == 0

    head = client.head(url, headers=tus)
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == "12345"
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == "1.0.0"
    assert head.headers["upload-metadata"] == (
        f"filename {_b64('课堂 class.mp4')},filetype {_b64('video/mp4')}"
    )
    expires = parsedate_to_datetime(head.headers["upload-expires"])
    expected = before + timedelta(hours=settings.tus_expiry_h)
    assert expected <= expires <= expected + timedelta(seconds=5)
    assert datetime.fromisoformat(upload["expires_at"]).replace(microsecond=0) == expires


@pytest.mark.parametrize(
    ("headers", "status", "code", "detail"),
    [
        ({"Upload-Length": ""}, 400, "VALIDATION_ERROR", "Upload-Length"),
        ({"Upload-Length": "-5"}, 400, "VALIDATION_ERROR", "Upload-Length"),
        ({"Upload-Length": "1e6"}, 400, "VALIDATION_ERROR", "Upload-Length"),
        ({"Upload-Length": "600000000"}, 413, "FILE_TOO_LARGE", "limit"),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, 400, "VALIDATION_ERROR", "Defer"),
        ({"Upload-Length": "10", "Upload-Metadata": "filename ***"}, 400, "VALIDATION_ERROR", ""),
        ({"Upload-Length": "10", "Upload-Metadata": "a YQ==,a YQ=="}, 400, "VALIDATION_ERROR", ""),
        ({"Upload-Length": "10", "Upload-Metadata": f"sha256 {_b64('abc')}"}, 400, "", "sha256"),
        ({"Upload-Length": "10", "Tus-Resumable": "0.2.2"}, 412, "UNSUPPORTED_VERSION", ""),
        ({"Upload-Length": "10", "Content-Type": "text/plain"}, 415, "VALIDATION_ERROR", ""),
    ],
)
def test_bad_creations_are_refused(
    client: TestClient,
    tus: dict[str, str],
    auth: dict[str, str],
    settings: Settings,
    headers: dict[str, str],
    status: int,
    code: str,
    detail: str,
) -> None:
    body = b"0123456789" if "Content-Type" in headers else None
    response = client.post(TUS, headers={**tus, **headers}, content=body)
    problem = _problem(response, status, code or "VALIDATION_ERROR")
    assert detail in problem["detail"]
    if status == 412:
        assert response.headers["tus-version"] == "1.0.0"
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []
    assert list(settings.spool_root.iterdir()) == []


def test_creation_needs_a_token(client: TestClient) -> None:
    response = client.post(TUS, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    _problem(response, 401, "UNAUTHORIZED")


def test_creation_with_upload_keeps_the_first_bytes(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    half = len(dance) // 2
    response = client.post(
        TUS,
        content=dance[:half],
        headers={**tus, **OCTET, "Upload-Length": str(len(dance))},
    )
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    assert response.headers["upload-offset"] == str(half)
    assert _offset(client, tus, url) == half
    assert _part(settings, url).read_bytes() == dance[:half]


def test_creation_with_the_whole_file_finishes_it(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    digest = hashlib.sha256(dance).hexdigest()
    response = client.post(
        TUS,
        content=dance,
        headers={
            **tus,
            **OCTET,
            "Upload-Length": str(len(dance)),
            "Upload-Metadata": f"filename {_b64('a.mp4')},sha256 {_b64(digest)}",
            "Upload-Checksum": f"sha256 {_b64(hashlib.sha256(dance).digest())}",
        },
    )
    assert response.status_code == 201, response.text
    url = response.headers["location"]
    upload = _upload(client, auth, url)
    assert (upload["status"], upload["offset"], upload["sha256"]) == ("ready", len(dance), digest)
    assert _stored(settings, url).read_bytes() == dance
    assert list(settings.spool_root.iterdir()) == []


def test_an_empty_upload_is_rejected_at_once(
    client: TestClient, tus: dict[str, str], auth: dict[str, str]
) -> None:
    url = _created(client, tus, 0)
    upload = _upload(client, auth, url)
    assert upload["status"] == "rejected"
    assert upload["error"]["code"] == "INVALID_FORMAT"


# --- appending and resuming ------------------------------------------------------------------


def test_an_upload_resumes_from_the_servers_offset_and_finishes_ready(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    third = len(dance) // 3
    first = _patch(client, tus, url, 0, dance[:third])
    assert first.status_code == 204
    assert first.headers["upload-offset"] == str(third)
    assert first.headers["tus-resumable"] == "1.0.0"
    assert parsedate_to_datetime(first.headers["upload-expires"]) > utcnow()
    assert _offset(client, tus, url) == third
    assert _upload(client, auth, url)["status"] == "receiving"

    last = _patch(client, tus, url, third, dance[third:])
    assert last.status_code == 204
    assert last.headers["upload-offset"] == str(len(dance))
    assert _offset(client, tus, url) == len(dance)
    upload = _upload(client, auth, url)
    assert upload["status"] == "ready"
    assert upload["size"] == upload["offset"] == len(dance)
    assert upload["sha256"] == hashlib.sha256(dance).hexdigest()
    assert upload["media"]["video_codec"] == "h264"
    assert upload["media"]["duration_s"] == pytest.approx(14.0, abs=0.1)
    assert (upload["media"]["width"], upload["media"]["height"]) == (320, 240)
    assert _stored(settings, url).read_bytes() == dance
    assert not _part(settings, url).exists()
    # Done is done: an empty append at the end is fine, more bytes are not.
    assert _patch(client, tus, url, len(dance), b"").status_code == 204
    _problem(_patch(client, tus, url, len(dance), b"x"), 413, "FILE_TOO_LARGE")


def test_bytes_that_arrived_before_a_disconnect_are_kept(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    headers = {**tus, **OCTET, "Upload-Offset": "0", "Content-Length": str(len(dance))}
    arrived = iter([dance[:100_000], dance[100_000:250_000]])
    asgi_request(client, "PATCH", url, headers, arrived, disconnect=True)
    assert _offset(client, tus, url) == 250_000
    assert _part(settings, url).read_bytes() == dance[:250_000]
    assert _patch(client, tus, url, 250_000, dance[250_000:]).status_code == 204
    upload = _upload(client, auth, url)
    assert upload["status"] == "ready"
    assert upload["sha256"] == hashlib.sha256(dance).hexdigest()


def test_a_chunk_with_a_checksum_is_kept_only_whole(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    checksum = f"sha1 {_b64(hashlib.sha1(dance[:250_000]).digest())}"
    headers = {**tus, **OCTET, "Upload-Offset": "0", "Upload-Checksum": checksum}
    asgi_request(client, "PATCH", url, headers, iter([dance[:100_000]]), disconnect=True)
    assert _offset(client, tus, url) == 0
    assert _part(settings, url).stat().st_size == 0


def test_a_wrong_offset_is_a_conflict(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    assert _patch(client, tus, url, 0, dance[:1000]).status_code == 204
    for claimed in (0, 999, 1001):
        response = _patch(client, tus, url, claimed, dance[claimed : claimed + 10])
        body = _problem(response, 409, "UPLOAD_CONFLICT")
        assert response.headers["upload-offset"] == "1000"
        assert body["offset"] == 1000
    assert _part(settings, url).read_bytes() == dance[:1000]
    _problem(client.patch(url, content=b"x", headers={**tus, **OCTET}), 400, "VALIDATION_ERROR")


def test_a_patch_needs_the_protocol_version_and_content_type(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    response = client.patch(url, content=b"abc", headers={**auth, **OCTET, "Upload-Offset": "0"})
    _problem(response, 412, "UNSUPPORTED_VERSION")
    assert response.headers["tus-version"] == "1.0.0"
    response = client.patch(
        url,
        content=b"abc",
        headers={**tus, "Upload-Offset": "0", "Content-Type": "application/octet-stream"},
    )
    _problem(response, 415, "VALIDATION_ERROR")
    assert _offset(client, tus, url) == 0


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksums_are_verified_per_chunk(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes, algorithm: str
) -> None:
    url = _created(client, tus, len(dance))
    chunk = dance[:5000]
    good = hashlib.new(algorithm, chunk).digest()
    bad = hashlib.new(algorithm, chunk + b"!").digest()
    mismatch = _patch(client, tus, url, 0, chunk, **{"Upload-Checksum": f"{algorithm} {_b64(bad)}"})
    _problem(mismatch, 460, "CHECKSUM_MISMATCH")
    assert _offset(client, tus, url) == 0
    assert _part(settings, url).stat().st_size == 0
    ok = _patch(client, tus, url, 0, chunk, **{"Upload-Checksum": f"{algorithm} {_b64(good)}"})
    assert ok.status_code == 204
    assert _offset(client, tus, url) == 5000


def test_unknown_checksum_algorithms_are_refused(
    client: TestClient, tus: dict[str, str], dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    digest = _b64(hashlib.sha512(b"x").digest())
    response = _patch(client, tus, url, 0, b"x", **{"Upload-Checksum": f"sha512 {digest}"})
    _problem(response, 400, "VALIDATION_ERROR")
    assert _offset(client, tus, url) == 0


def test_bytes_beyond_the_declared_length_are_refused(
    client: TestClient, tus: dict[str, str], settings: Settings
) -> None:
    url = _created(client, tus, 100)
    assert _patch(client, tus, url, 0, b"a" * 60).status_code == 204
    _problem(_patch(client, tus, url, 60, b"b" * 41), 413, "FILE_TOO_LARGE")
    assert _offset(client, tus, url) == 60
    assert _part(settings, url).read_bytes() == b"a" * 60

    def chunked() -> Iterator[bytes]:
        yield b"c" * 30
        yield b"d" * 30

    # Without a Content-Length the excess is found while reading, and the chunk dropped.
    _problem(_patch(client, tus, url, 60, chunked()), 413, "FILE_TOO_LARGE")  # type: ignore[arg-type]
    assert _offset(client, tus, url) == 60
    assert _part(settings, url).read_bytes() == b"a" * 60


def test_a_finished_non_media_file_is_rejected_with_its_reason(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings
) -> None:
    data = b"not a video, just the notes of the class\n" * 100
    url = _created(client, tus, len(data))
    assert _patch(client, tus, url, 0, data).status_code == 204
    response = client.get(
        f"/api/v1/uploads/{url.rsplit('/', 1)[1]}", headers={**auth, "Accept-Language": "en"}
    )
    upload = response.json()
    assert upload["status"] == "rejected"
    assert upload["sha256"] == hashlib.sha256(data).hexdigest()
    assert upload["media"] is None
    assert upload["error"]["code"] == "INVALID_FORMAT"
    assert upload["error"]["message"] == "The file is not a video or audio file we can read."
    assert "FFmpeg" in upload["error"]["detail"]
    assert not _part(settings, url).exists()
    assert not _stored(settings, url).exists()


def test_a_file_unlike_its_declared_sha256_is_rejected(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    metadata = f"filename {_b64('a.mp4')},sha256 {_b64('ab' * 32)}"
    response = client.post(
        TUS, headers={**tus, "Upload-Length": str(len(dance)), "Upload-Metadata": metadata}
    )
    url = response.headers["location"]
    assert _patch(client, tus, url, 0, dance).status_code == 204
    upload = _upload(client, auth, url)
    assert upload["status"] == "rejected"
    assert upload["error"]["code"] == "CHECKSUM_MISMATCH"
    assert not _stored(settings, url).exists()


# --- termination, overrides, ownership, expiry, locks ----------------------------------------


def test_termination_deletes_the_upload(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    assert _patch(client, tus, url, 0, dance[:1000]).status_code == 204
    response = client.delete(url, headers=tus)
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert not _part(settings, url).exists()
    _refused_head(client, url, tus, 404)
    assert client.get(f"/api/v1/uploads/{url.rsplit('/', 1)[1]}", headers=auth).status_code == 404


def test_method_override_lets_post_patch_head_and_delete(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    half = len(dance) // 2
    for offset, chunk in ((0, dance[:half]), (half, dance[half:])):
        response = client.post(
            url,
            content=chunk,
            headers={
                **tus,
                **OCTET,
                "Upload-Offset": str(offset),
                "X-HTTP-Method-Override": "PATCH",
            },
        )
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(offset + len(chunk))
    head = client.post(url, headers={**tus, "X-HTTP-Method-Override": "HEAD"})
    assert head.status_code == 200
    assert head.headers["upload-offset"] == head.headers["upload-length"] == str(len(dance))
    assert _upload(client, auth, url)["status"] == "ready"

    _problem(client.post(url, headers=tus), 405, "METHOD_NOT_ALLOWED")
    deleted = client.post(url, headers={**tus, "X-HTTP-Method-Override": "delete"})
    assert deleted.status_code == 204
    assert not _stored(settings, url).exists()
    assert client.get(f"/api/v1/uploads/{url.rsplit('/', 1)[1]}", headers=auth).status_code == 404


def test_another_owners_upload_is_not_found(
    client: TestClient,
    tus: dict[str, str],
    other_auth: dict[str, str],
    settings: Settings,
    dance: bytes,
) -> None:
    url = _created(client, tus, len(dance))
    other = {**other_auth, "Tus-Resumable": "1.0.0"}
    _refused_head(client, url, other, 404)
    _problem(_patch(client, other, url, 0, dance[:10]), 404, "NOT_FOUND")
    _problem(client.delete(url, headers=other), 404, "NOT_FOUND")
    _problem(
        client.post(url, headers={**other, "X-HTTP-Method-Override": "DELETE"}), 404, "NOT_FOUND"
    )
    _refused_head(client, url, {"Tus-Resumable": "1.0.0"}, 401)
    assert _offset(client, tus, url) == 0
    assert _part(settings, url).exists()


def test_an_expired_upload_is_gone(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    db = Database(settings.database)
    with db.session() as session:
        session.execute(
            update(Upload)
            .where(Upload.id == url.rsplit("/", 1)[1])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    db.dispose()
    _refused_head(client, url, tus, 410)
    _problem(_patch(client, tus, url, 0, dance[:10]), 410, "NOT_FOUND")


def test_a_second_writer_is_turned_away_while_one_appends(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    upload_id = url.rsplit("/", 1)[1]
    with ChunkAppender(spool_path(settings, upload_id), upload_id) as writer:
        writer.begin(0, len(dance))
        writer.write(dance[:500])
        _problem(_patch(client, tus, url, 0, dance[:700]), 409, "UPLOAD_CONFLICT")
        writer.seal(complete=True)
        db = Database(settings.database)
        assert writer.record(db, settings) is not None
        db.dispose()
    assert _offset(client, tus, url) == 500
    assert _patch(client, tus, url, 500, dance[500:700]).status_code == 204
    assert _part(settings, url).read_bytes() == dance[:700]


def test_the_offset_moves_only_from_where_it_stood(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    url = _created(client, tus, len(dance))
    upload_id = url.rsplit("/", 1)[1]
    db = Database(settings.database)
    with db.session() as session:
        assert commit_offset(session, settings, upload_id, old=0, new=100) is not None
    with db.session() as session:
        # A second writer that read the same old offset loses.
        assert commit_offset(session, settings, upload_id, old=0, new=200) is None
    db.dispose()
    assert _offset(client, tus, url) == 100


class _UnreachableStorage:
    """The app's storage with puts failing until ``fail`` is cleared."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.fail = True

    def put_file(self, key: str, path: Path) -> int:
        if self.fail:
            raise StorageUnavailable("the bucket cannot be reached")
        return self.inner.put_file(key, path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_finish_that_could_not_store_is_resumed_by_an_empty_append(
    client: TestClient, tus: dict[str, str], auth: dict[str, str], settings: Settings, dance: bytes
) -> None:
    context = client.app.state.context  # type: ignore[attr-defined]
    storage = _UnreachableStorage(context.storage)
    context.storage = storage
    try:
        url = _created(client, tus, len(dance))
        response = _patch(client, tus, url, 0, dance)
        _problem(response, 503, "STORAGE_UNAVAILABLE")
        assert response.headers["retry-after"] == "5"
        # Every byte is recorded and kept; only the settling is missing.
        assert _offset(client, tus, url) == len(dance)
        assert _upload(client, auth, url)["status"] == "receiving"
        assert _part(settings, url).read_bytes() == dance
        storage.fail = False
        assert _patch(client, tus, url, len(dance), b"").status_code == 204
    finally:
        context.storage = storage.inner
    upload = _upload(client, auth, url)
    assert (upload["status"], upload["sha256"]) == ("ready", hashlib.sha256(dance).hexdigest())
    assert _stored(settings, url).read_bytes() == dance
    assert not _part(settings, url).exists()


def test_a_full_disk_refuses_creation(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = make_client(settings.model_copy(update={"min_free_disk_mb": 10**12}))
    token = client.post("/api/v1/sessions").json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    response = client.post(TUS, headers={**headers, "Upload-Length": "1000"})
    _problem(response, 507, "INSUFFICIENT_STORAGE")
    assert list(settings.spool_root.iterdir()) == []
    assert client.get("/api/v1/uploads", headers=headers).json()["items"] == []


def test_a_bad_first_chunk_still_names_the_created_upload(
    client: TestClient, tus: dict[str, str], settings: Settings, dance: bytes
) -> None:
    wrong = _b64(hashlib.md5(b"something else").digest())
    response = client.post(
        TUS,
        content=dance[:4000],
        headers={
            **tus,
            **OCTET,
            "Upload-Length": str(len(dance)),
            "Upload-Checksum": f"md5 {wrong}",
        },
    )
    _problem(response, 460, "CHECKSUM_MISMATCH")
    url = response.headers["location"]
    assert _offset(client, tus, url) == 0
    assert _part(settings, url).stat().st_size == 0
    assert _patch(client, tus, url, 0, dance[:4000]).status_code == 204
