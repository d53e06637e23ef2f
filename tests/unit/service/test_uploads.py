"""Multipart uploads: streamed to the spool with sha256 and limits, probed, stored or refused.

Real media comes from the test kit (built once for the module); refusals use bytes that are
not media. The size-limit tests drive the ASGI app directly with a body that records how much
of it was read, because the test client reads a request body whole before the app sees it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from factories import asgi_request
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import update

from beatsync.service.config import Settings
from beatsync.service.db import Database, Upload
from beatsync.service.db.models import utcnow
from beatsync.service.layout import upload_folder
from beatsync.service.storage import Storage, StorageUnavailable
from beatsync.service.uploads import sanitize_filename
from beatsync.testkit import BuiltCase, build_case, case_named

BOUNDARY = "beatsync-test-boundary-7f3a"


@dataclass(frozen=True)
class Media:
    clean: BuiltCase
    portrait: BuiltCase
    silent: Path
    jpeg: bytes


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    folder = tmp_path_factory.mktemp("upload-media")
    clean = build_case(case_named("small-clean"), folder)
    portrait = build_case(case_named("small-hevc-portrait"), folder)
    silent = folder / "silent.mp4"
    with av.open(str(clean.dance)) as src, av.open(str(silent), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            dst.mux(packet)
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, "JPEG")
    return Media(clean, portrait, silent, picture.getvalue())


def _stored(settings: Settings, upload_id: str) -> Path:
    return settings.storage_root / upload_folder(upload_id) / "data"


def _spool(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.spool_root.iterdir())


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def _upload(client: TestClient, auth: dict[str, str], data: bytes, name: str = "class.mp4") -> Any:
    return client.post("/api/v1/uploads", files={"file": (name, data, "video/mp4")}, headers=auth)


def _form(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart body from (Content-Disposition parameters, data) pairs."""
    out = b""
    for disposition, data in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        out += b"Content-Disposition: form-data; " + disposition + b"\r\n\r\n" + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


FORM_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


# --- driving the ASGI app with a body that is read lazily ------------------------------------


def _limited_client(
    make_client: Callable[..., TestClient], settings: Settings, **overrides: Any
) -> TestClient:
    return make_client(settings.model_copy(update=overrides))


# --- success ---------------------------------------------------------------------------------


def test_an_upload_is_hashed_probed_and_stored_byte_for_byte(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    data = media.clean.dance.read_bytes()
    before = utcnow()
    response = _upload(client, auth, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/uploads/{body['id']}"
    assert body["id"].startswith("upl_")
    assert body["filename"] == "class.mp4"
    assert body["size"] == body["offset"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["status"] == "ready"
    assert body["error"] is None
    truth = media.clean.truth
    facts = body["media"]
    assert facts["duration_s"] == pytest.approx(truth.duration, abs=0.1)
    assert (facts["has_video"], facts["has_audio"]) == (True, True)
    assert (facts["width"], facts["height"]) == (truth.width, truth.height)
    assert facts["fps"] == pytest.approx(truth.fps)
    assert (facts["video_codec"], facts["audio_codec"], facts["rotation"]) == ("h264", "aac", 0)
    assert _stored(settings, body["id"]).read_bytes() == data
    assert _spool(settings) == []
    created = datetime.fromisoformat(body["created_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert before <= created <= utcnow()
    assert expires - created == timedelta(hours=settings.upload_ttl_h)
    assert client.get(f"/api/v1/uploads/{body['id']}", headers=auth).json() == body


def test_audio_only_and_portrait_files_report_their_facts(
    client: TestClient, auth: dict[str, str], media: Media
) -> None:
    reference = _upload(client, auth, media.portrait.bgm.read_bytes(), "song.m4a").json()
    assert reference["status"] == "ready"
    assert reference["media"]["has_video"] is False
    assert reference["media"]["width"] is None
    assert reference["media"]["audio_codec"] == "aac"
    assert reference["media"]["duration_s"] == pytest.approx(
        media.portrait.truth.bgm_duration, abs=0.1
    )
    portrait = _upload(client, auth, media.portrait.dance.read_bytes(), "clip.mov").json()
    assert portrait["media"]["video_codec"] == "hevc"
    assert portrait["media"]["rotation"] == 270
    assert (portrait["media"]["width"], portrait["media"]["height"]) == (320, 240)


def test_the_file_name_is_only_a_display_string(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    data = media.clean.dance.read_bytes()
    name = b"../../etc/\xe8\xaf\xbe\xe5\xa0\x82\x01\x1b[31m \xff\xfeclass.mp4"
    body = _form((b'name="file"; filename="' + name + b'"', data))
    response = client.post("/api/v1/uploads", content=body, headers={**auth, **FORM_HEADERS})
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["filename"] == "课堂[31m \ufffd\ufffdclass.mp4"
    assert sorted(p.name for p in _stored(settings, upload["id"]).parent.iterdir()) == ["data"]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("C:\\Users\\li\\Videos\\class.mp4", "class.mp4"),
        ("/tmp/../passwd", "passwd"),
        ("..", ""),
        ("a\u202ereversed\u2028line.mp4", "areversedline.mp4"),
        ("x" * 300 + ".mp4", "x" * 255),
        (b"caf\xc3\xa9 \xc0.mov", "café \ufffd.mov"),
        ("\ud800lone.mp4", "?lone.mp4"),
        (None, ""),
    ],
)
def test_file_names_are_sanitised(raw: str | bytes | None, shown: str) -> None:
    assert sanitize_filename(raw) == shown


# --- limits ----------------------------------------------------------------------------------


def _endless_form(chunk_size: int, total: int) -> Iterator[bytes]:
    yield f"--{BOUNDARY}\r\n".encode()
    yield b'Content-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n'
    sent = 0
    while sent < total:
        yield b"\0" * chunk_size
        sent += chunk_size


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = _limited_client(make_client, settings, max_upload_bytes=64 * 1024)
    token = client.post("/api/v1/sessions").json()["token"]
    total = 8 * 1024 * 1024
    exchange = asgi_request(
        client,
        "POST",
        "/api/v1/uploads",
        {"Authorization": f"Bearer {token}", **FORM_HEADERS},
        _endless_form(16 * 1024, total),
    )
    assert exchange.status == 413
    assert b'"code":"FILE_TOO_LARGE"' in exchange.body
    # Refused within one chunk of passing the limit, not after the 8 MiB.
    assert 64 * 1024 < exchange.consumed <= 64 * 1024 + 2 * 16 * 1024
    assert _spool(settings) == []


def test_a_declared_length_over_the_limit_is_refused_without_reading(
    make_client: Callable[..., TestClient], settings: Settings
) -> None:
    client = _limited_client(make_client, settings, max_upload_bytes=64 * 1024)
    token = client.post("/api/v1/sessions").json()["token"]
    headers = {"Authorization": f"Bearer {token}", **FORM_HEADERS, "Content-Length": "9000000"}
    exchange = asgi_request(
        client, "POST", "/api/v1/uploads", headers, _endless_form(16 * 1024, 9_000_000)
    )
    assert exchange.status == 413
    assert exchange.consumed == 0
    assert _spool(settings) == []


def test_a_file_over_the_limit_gets_file_too_large(
    make_client: Callable[..., TestClient], settings: Settings, media: Media
) -> None:
    data = media.clean.dance.read_bytes()
    client = _limited_client(make_client, settings, max_upload_bytes=len(data) - 1)
    token = client.post("/api/v1/sessions").json()["token"]
    body = _problem(
        _upload(client, {"Authorization": f"Bearer {token}"}, data), 413, "FILE_TOO_LARGE"
    )
    assert body["max_bytes"] == len(data) - 1
    assert _spool(settings) == []
    exact = _limited_client(make_client, settings, max_upload_bytes=len(data))
    token = exact.post("/api/v1/sessions").json()["token"]
    assert _upload(exact, {"Authorization": f"Bearer {token}"}, data).status_code == 201


def test_a_full_disk_refuses_before_writing(
    make_client: Callable[..., TestClient], settings: Settings, media: Media
) -> None:
    client = _limited_client(make_client, settings, min_free_disk_mb=10**12)
    token = client.post("/api/v1/sessions").json()["token"]
    response = _upload(client, {"Authorization": f"Bearer {token}"}, media.clean.dance.read_bytes())
    _problem(response, 507, "INSUFFICIENT_STORAGE")
    assert response.headers["retry-after"] == "60"
    assert _spool(settings) == []


def test_thousands_of_parts_are_refused(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    parts = [(f'name="f{i}"'.encode(), b"x") for i in range(5000)]
    response = client.post(
        "/api/v1/uploads", content=_form(*parts), headers={**auth, **FORM_HEADERS}
    )
    body = _problem(response, 422, "VALIDATION_ERROR")
    assert "at most 8 parts" in body["detail"]
    assert _spool(settings) == []


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail"),
    [
        (_form((b'name="note"', b"hi")), FORM_HEADERS["Content-Type"], 422, "no `file` field"),
        (
            _form((b'name="file"; filename="a"', b"1"), (b'name="file"; filename="b"', b"2")),
            FORM_HEADERS["Content-Type"],
            422,
            "more than one `file` field",
        ),
        (
            _form((b'name="file"; filename="' + b"a" * 9000 + b'"', b"1")),
            FORM_HEADERS["Content-Type"],
            422,
            "header size",
        ),
        (_form((b'name="file"', b"1"))[:-20], FORM_HEADERS["Content-Type"], 422, "ended"),
        (b"raw bytes", "application/octet-stream", 415, "multipart/form-data"),
        (b"raw bytes", "multipart/form-data", 415, "multipart/form-data"),
    ],
)
def test_malformed_forms_are_refused(
    client: TestClient,
    auth: dict[str, str],
    settings: Settings,
    body: bytes,
    content_type: str,
    status: int,
    detail: str,
) -> None:
    response = client.post(
        "/api/v1/uploads", content=body, headers={**auth, "Content-Type": content_type}
    )
    problem = _problem(response, status, "VALIDATION_ERROR")
    assert detail in problem["detail"]
    assert _spool(settings) == []
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []


def test_a_client_that_leaves_mid_body_leaves_nothing(
    client: TestClient, auth: dict[str, str], settings: Settings
) -> None:
    chunks = _endless_form(64 * 1024, 512 * 1024)
    exchange = asgi_request(
        client, "POST", "/api/v1/uploads", {**auth, **FORM_HEADERS}, chunks, disconnect=True
    )
    assert exchange.consumed > 512 * 1024
    assert _spool(settings) == []
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []


# --- unusable files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("text", "INVALID_FORMAT"),
        ("jpeg", "INVALID_FORMAT"),
        ("truncated", "INVALID_FORMAT"),
        ("empty", "INVALID_FORMAT"),
        ("silent", "NO_AUDIO_TRACK"),
    ],
)
def test_unusable_files_are_refused_with_their_code_and_kept_nowhere(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media, kind: str, code: str
) -> None:
    dance = media.clean.dance.read_bytes()
    data = {
        "text": b"these are the steps of the routine\n" * 40,
        "jpeg": media.jpeg,
        "truncated": dance[: len(dance) // 3],
        "empty": b"",
        "silent": media.silent.read_bytes(),
    }[kind]
    response = _upload(client, auth, data)
    body = _problem(response, 422, code)
    assert str(settings.spool_root) not in body["detail"]
    assert ".part" not in body["detail"]
    assert _spool(settings) == []
    assert not (settings.storage_root / "uploads").exists() or not any(
        (settings.storage_root / "uploads").iterdir()
    )
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []


def test_too_long_media_is_refused(
    make_client: Callable[..., TestClient], settings: Settings, media: Media
) -> None:
    client = _limited_client(make_client, settings, max_duration_s=5.0)
    token = client.post("/api/v1/sessions").json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    body = _problem(
        _upload(client, headers, media.clean.dance.read_bytes()), 422, "DURATION_TOO_LONG"
    )
    assert body["message"] == "The media is too long."
    assert body["max_duration_s"] == 5.0
    assert _spool(settings) == []


def test_too_large_a_picture_is_refused(
    make_client: Callable[..., TestClient], settings: Settings, media: Media
) -> None:
    client = _limited_client(make_client, settings, max_video_pixels=320 * 240 - 1)
    token = client.post("/api/v1/sessions").json()["token"]
    response = _upload(client, {"Authorization": f"Bearer {token}"}, media.clean.dance.read_bytes())
    body = _problem(response, 422, "INVALID_FORMAT")
    assert "320×240" in body["detail"]
    # Audio needs no picture: the reference of the same song is still accepted.
    assert (
        _upload(
            client, {"Authorization": f"Bearer {token}"}, media.portrait.bgm.read_bytes()
        ).json()["status"]
        == "ready"
    )


def test_a_file_with_too_many_streams_is_refused(
    make_client: Callable[..., TestClient], settings: Settings, tmp_path: Path
) -> None:
    crowded = tmp_path / "crowded.mkv"
    with av.open(str(crowded), "w") as container:
        streams = [container.add_stream("pcm_s16le", rate=8000) for _ in range(12)]
        for stream in streams:
            stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for stream in streams:
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    client = _limited_client(make_client, settings, max_streams=8)
    token = client.post("/api/v1/sessions").json()["token"]
    body = _problem(
        _upload(client, {"Authorization": f"Bearer {token}"}, crowded.read_bytes()),
        422,
        "INVALID_FORMAT",
    )
    assert "12 streams" in body["detail"]
    assert _spool(settings) == []


# --- identity --------------------------------------------------------------------------------


def test_uploads_need_a_token(client: TestClient, media: Media) -> None:
    _problem(_upload(client, {}, b"x"), 401, "UNAUTHORIZED")
    _problem(_upload(client, {"Authorization": "Bearer bst_nobody"}, b"x"), 401, "UNAUTHORIZED")
    _problem(client.get("/api/v1/uploads"), 401, "UNAUTHORIZED")


def test_another_owners_upload_is_not_found(
    client: TestClient, auth: dict[str, str], other_auth: dict[str, str], media: Media
) -> None:
    upload = _upload(client, auth, media.clean.dance.read_bytes()).json()
    path = f"/api/v1/uploads/{upload['id']}"
    _problem(client.get(path, headers=other_auth), 404, "NOT_FOUND")
    _problem(client.delete(path, headers=other_auth), 404, "NOT_FOUND")
    assert client.get("/api/v1/uploads", headers=other_auth).json()["items"] == []
    assert client.get(path, headers=auth).json()["status"] == "ready"
    _problem(client.get("/api/v1/uploads/upl_nothing", headers=auth), 404, "NOT_FOUND")
    _problem(client.get("/api/v1/uploads/upl_x;rm", headers=auth), 404, "NOT_FOUND")


# --- listing, deleting, expiry ---------------------------------------------------------------


def test_my_uploads_are_listed_newest_first_in_pages(
    client: TestClient, auth: dict[str, str], other_auth: dict[str, str], media: Media
) -> None:
    data = media.portrait.bgm.read_bytes()
    ids = [_upload(client, auth, data, f"song-{i}.m4a").json()["id"] for i in range(3)]
    _upload(client, other_auth, data)
    newest_first = ids[::-1]

    first = client.get("/api/v1/uploads?limit=2", headers=auth).json()
    assert [u["id"] for u in first["items"]] == newest_first[:2]
    assert first["items"][0]["filename"] == "song-2.m4a"
    second = client.get(
        f"/api/v1/uploads?limit=2&cursor={first['next_cursor']}", headers=auth
    ).json()
    assert [u["id"] for u in second["items"]] == newest_first[2:]
    assert second["next_cursor"] is None

    by_offset = client.get("/api/v1/uploads?limit=1&offset=1", headers=auth).json()
    assert [u["id"] for u in by_offset["items"]] == newest_first[1:2]
    everything = client.get("/api/v1/uploads", headers=auth).json()
    assert [u["id"] for u in everything["items"]] == newest_first

    _problem(
        client.get(f"/api/v1/uploads?cursor={first['next_cursor']}&offset=1", headers=auth),
        422,
        "VALIDATION_ERROR",
    )
    _problem(client.get("/api/v1/uploads?cursor=bm9wZQ", headers=auth), 422, "VALIDATION_ERROR")
    _problem(client.get("/api/v1/uploads?limit=0", headers=auth), 422, "VALIDATION_ERROR")


def test_deleting_an_upload_deletes_its_bytes(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    upload = _upload(client, auth, media.clean.dance.read_bytes()).json()
    assert _stored(settings, upload["id"]).is_file()
    response = client.delete(f"/api/v1/uploads/{upload['id']}", headers=auth)
    assert response.status_code == 204
    assert response.content == b""
    assert not _stored(settings, upload["id"]).parent.exists()
    _problem(client.get(f"/api/v1/uploads/{upload['id']}", headers=auth), 404, "NOT_FOUND")
    _problem(client.delete(f"/api/v1/uploads/{upload['id']}", headers=auth), 404, "NOT_FOUND")


def _expire(settings: Settings, upload_id: str) -> None:
    db = Database(settings.database)
    with db.session() as session:
        session.execute(
            update(Upload)
            .where(Upload.id == upload_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    db.dispose()


def test_an_expired_upload_is_gone(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    upload = _upload(client, auth, media.portrait.bgm.read_bytes()).json()
    _expire(settings, upload["id"])
    _problem(client.get(f"/api/v1/uploads/{upload['id']}", headers=auth), 404, "NOT_FOUND")
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []


# --- instant upload --------------------------------------------------------------------------


def test_instant_upload_finds_my_ready_copy_and_keeps_it_longer(
    client: TestClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    settings: Settings,
    media: Media,
) -> None:
    data = media.portrait.bgm.read_bytes()
    upload = _upload(client, auth, data, "song.m4a").json()
    digest = hashlib.sha256(data).hexdigest()
    db = Database(settings.database)
    with db.session() as session:
        session.execute(
            update(Upload)
            .where(Upload.id == upload["id"])
            .values(expires_at=utcnow() + timedelta(minutes=5))
        )
    db.dispose()

    before = utcnow()
    hit = client.post(
        "/api/v1/uploads/instant",
        json={"sha256": digest.upper(), "size": len(data), "filename": "again.m4a"},
        headers=auth,
    )
    assert hit.status_code == 200, hit.text
    found = hit.json()
    assert found["id"] == upload["id"]
    assert found["filename"] == "song.m4a"
    assert found["sha256"] == digest
    expires = datetime.fromisoformat(found["expires_at"])
    assert expires >= before + timedelta(hours=settings.upload_ttl_h)

    for body, headers in [
        ({"sha256": digest, "size": len(data) + 1, "filename": "x"}, auth),
        ({"sha256": "0" * 64, "size": len(data), "filename": "x"}, auth),
        ({"sha256": digest, "size": len(data), "filename": "x"}, other_auth),
    ]:
        _problem(
            client.post("/api/v1/uploads/instant", json=body, headers=headers), 404, "NOT_FOUND"
        )
    _problem(
        client.post("/api/v1/uploads/instant", json={"sha256": "xyz", "size": 1}, headers=auth),
        422,
        "VALIDATION_ERROR",
    )


def test_instant_upload_misses_when_the_stored_file_is_gone(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    data = media.portrait.bgm.read_bytes()
    upload = _upload(client, auth, data).json()
    _stored(settings, upload["id"]).unlink()
    response = client.post(
        "/api/v1/uploads/instant",
        json={"sha256": upload["sha256"], "size": len(data), "filename": "x"},
        headers=auth,
    )
    _problem(response, 404, "NOT_FOUND")


class _UnreachableStorage:
    """Storage whose puts fail: the bucket is down."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def put_file(self, key: str, path: Path) -> int:
        raise StorageUnavailable("the bucket cannot be reached")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_unreachable_store_keeps_nothing_and_says_retry(
    client: TestClient, auth: dict[str, str], settings: Settings, media: Media
) -> None:
    context = client.app.state.context  # type: ignore[attr-defined]
    inner = context.storage
    context.storage = _UnreachableStorage(inner)
    try:
        response = _upload(client, auth, media.portrait.bgm.read_bytes())
    finally:
        context.storage = inner
    _problem(response, 503, "STORAGE_UNAVAILABLE")
    assert response.headers["retry-after"] == "5"
    assert _spool(settings) == []
    assert client.get("/api/v1/uploads", headers=auth).json()["items"] == []
