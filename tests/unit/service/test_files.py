"""Result files by signed URL: exact bytes, single ranges, validators, refusals, redirects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from factories import AUDIO_MEDIA, Rows, owner_id
from fastapi.testclient import TestClient

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings
from beatsync.service.layout import job_folder
from beatsync.service.signing import sign, signed_path
from beatsync.service.storage import LocalStorage

NAMES = {"video": "output.mp4", "report": "report.json", "plot": "plot.png", "poster": "poster.jpg"}
TYPES = {
    "output.mp4": "video/mp4",
    "report.json": "application/json",
    "plot.png": "image/png",
    "poster.jpg": "image/jpeg",
}


class RecordingStorage(LocalStorage):
    """Local storage that remembers each read and the chunk sizes it handed out."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int, int | None]] = []
        self.chunks: list[int] = []

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self.reads.append((key, start, end))
        for chunk in super().read(key, start, end):
            self.chunks.append(len(chunk))
            yield chunk


class PresigningStorage(LocalStorage):
    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str | None:
        disposition = f"&download={filename}" if filename else ""
        return f"https://bucket.example/{key}?ttl={expires_s}{disposition}"


@pytest.fixture
def storage(settings: Settings) -> RecordingStorage:
    return RecordingStorage(settings.storage_root)


@pytest.fixture
def client(settings: Settings, dispatcher: Any, storage: RecordingStorage) -> Iterator[TestClient]:
    with TestClient(create_app(settings, dispatcher=dispatcher, storage=storage)) as made:
        yield made


class Finished:
    def __init__(self, job_id: str, contents: dict[str, bytes], urls: dict[str, str]) -> None:
        self.id = job_id
        self.contents = contents
        self.urls = urls
        self.video = contents["video"]


@pytest.fixture
def finished(client: TestClient, rows: Rows, auth: dict[str, str]) -> Finished:
    owner = owner_id(client, auth)
    body = {
        "dance_upload_id": rows.upload(owner),
        "bgm_upload_id": rows.upload(owner, media=AUDIO_MEDIA),
    }
    job_id = client.post("/api/v1/jobs", json=body, headers=auth).json()["id"]
    contents = rows.succeed(job_id)
    urls = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["result"]["files"]
    return Finished(job_id, contents, urls)


def _problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_each_file_comes_whole_with_its_type(client: TestClient, finished: Finished) -> None:
    for kind, name in NAMES.items():
        response = client.get(finished.urls[kind])
        assert response.status_code == 200
        assert response.content == finished.contents[kind]
        assert response.headers["content-type"] == TYPES[name]
        assert response.headers["content-length"] == str(len(finished.contents[kind]))
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["etag"].startswith('"')
        assert "content-disposition" not in response.headers


def test_the_video_streams_in_chunks_never_whole(
    client: TestClient, finished: Finished, storage: RecordingStorage
) -> None:
    storage.reads.clear()
    storage.chunks.clear()
    with client.stream("GET", finished.urls["video"]) as response:
        received = b"".join(response.iter_bytes())
    assert received == finished.video
    assert storage.reads == [(f"{job_folder(finished.id)}/output.mp4", 0, len(finished.video))]
    assert len(storage.chunks) >= 4
    assert max(storage.chunks) <= 1 << 20


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=0-99", 0, 100),
        ("bytes=1048570-1048590", 1048570, 1048591),  # across a storage chunk edge
        ("bytes=2000000-", 2000000, None),
        ("bytes=-500", -500, None),
        ("bytes=100-99999999999", 100, None),
        ("bytes=-99999999", 0, None),
        ("BYTES = 7-7", 7, 8),
    ],
)
def test_a_single_range_is_answered_206_with_exact_bytes(
    client: TestClient,
    finished: Finished,
    storage: RecordingStorage,
    header: str,
    start: int,
    stop: int | None,
) -> None:
    size = len(finished.video)
    first = start % size if start < 0 else start
    last = (stop if stop is not None else size) - 1
    storage.reads.clear()
    response = client.get(finished.urls["video"], headers={"Range": header})
    assert response.status_code == 206
    assert response.content == finished.video[first : last + 1]
    assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
    assert response.headers["content-length"] == str(last + 1 - first)
    assert response.headers["content-type"] == "video/mp4"
    assert storage.reads == [(f"{job_folder(finished.id)}/output.mp4", first, last + 1)]


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-9", "bytes=9-3", "bytes=abc", "items=0-9", "bytes=", "bytes=--1"]
)
def test_other_range_headers_get_the_whole_file(
    client: TestClient, finished: Finished, header: str
) -> None:
    response = client.get(finished.urls["report"], headers={"Range": header})
    assert response.status_code == 200
    assert response.content == finished.contents["report"]
    assert "content-range" not in response.headers


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=-0", "bytes=3145851-3145900"])
def test_an_unsatisfiable_range_is_refused_416(
    client: TestClient, finished: Finished, header: str
) -> None:
    size = len(finished.video)
    assert size == 3145851
    response = client.get(finished.urls["video"], headers={"Range": header})
    _problem(response, 416, "RANGE_NOT_SATISFIABLE")
    assert response.headers["content-range"] == f"bytes */{size}"


def test_if_range_and_if_none_match_use_the_etag(client: TestClient, finished: Finished) -> None:
    url = finished.urls["video"]
    etag = client.head(url).headers["etag"]
    same = client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert same.status_code == 206
    assert same.content == finished.video[10:20]
    changed = client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"elsewhere"'})
    assert changed.status_code == 200
    assert changed.content == finished.video
    dated = client.get(
        url, headers={"Range": "bytes=10-19", "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    assert dated.status_code == 200
    cached = client.get(url, headers={"If-None-Match": f'"x", {etag}'})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"x"'}).status_code == 200


def test_head_tells_the_size_without_the_body(client: TestClient, finished: Finished) -> None:
    whole = client.head(finished.urls["video"])
    assert whole.status_code == 200
    assert whole.content == b""
    assert whole.headers["content-length"] == str(len(finished.video))
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.head(finished.urls["video"], headers={"Range": "bytes=-10"})
    assert part.status_code == 206
    assert part.content == b""
    assert part.headers["content-length"] == "10"
    size = len(finished.video)
    assert part.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"


def test_download_asks_to_save_under_a_safe_name(client: TestClient, finished: Finished) -> None:
    response = client.get(finished.urls["video"] + "&download=1")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        f'attachment; filename="beatsync-{finished.id}.mp4"'
    )
    report = client.get(finished.urls["report"] + "&download=1")
    assert report.headers["content-disposition"] == (
        f'attachment; filename="beatsync-{finished.id}.json"'
    )


def test_changed_or_expired_links_are_refused(
    client: TestClient, finished: Finished, settings: Settings
) -> None:
    url = urlsplit(finished.urls["video"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    secret = settings.secret_key.get_secret_value()
    sig = query["sig"]
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    report_path = f"/api/v1/files/{finished.id}/report.json"
    expired = signed_path(secret, url.path, ttl_s=60, now=time.time() - 120)
    for link in (
        f"{url.path}?exp={query['exp']}&sig={flipped}",
        f"{url.path}?exp={int(query['exp']) + 1}&sig={sig}",
        f"{report_path}?exp={query['exp']}&sig={sig}",
        f"{url.path}?exp={query['exp']}",
        url.path,
        expired,
        f"{url.path}?exp=1&sig={sign(secret, url.path, 1)}",
    ):
        _problem(client.get(link), 403, "LINK_EXPIRED")
    assert client.head(expired).status_code == 403


def test_unknown_names_and_deleted_jobs_are_not_found(
    client: TestClient, finished: Finished, settings: Settings, auth: dict[str, str]
) -> None:
    secret = settings.secret_key.get_secret_value()
    for path in (
        f"/api/v1/files/{finished.id}/secrets.txt",
        "/api/v1/files/..%2F..%2Fetc/output.mp4",
        "/api/v1/files/job_missing/output.mp4",
    ):
        _problem(client.get(signed_path(secret, path, ttl_s=60)), 404, "NOT_FOUND")
    assert client.delete(f"/api/v1/jobs/{finished.id}", headers=auth).status_code == 204
    _problem(client.get(finished.urls["video"]), 404, "NOT_FOUND")


def test_a_store_with_its_own_urls_gets_a_redirect(
    settings: Settings, dispatcher: Any, finished: Finished
) -> None:
    app = create_app(
        settings, dispatcher=dispatcher, storage=PresigningStorage(settings.storage_root)
    )
    secret = settings.secret_key.get_secret_value()
    path = f"/api/v1/files/{finished.id}/output.mp4"
    with TestClient(app, follow_redirects=False) as client:
        plain = client.get(signed_path(secret, path, ttl_s=60))
        download = client.get(signed_path(secret, path, ttl_s=60) + "&download=1")
        forged = client.get(f"{path}?exp=9999999999&sig=forged")
    ttl = settings.signed_url_ttl_s
    assert plain.status_code == 307
    assert (
        plain.headers["location"]
        == f"https://bucket.example/{job_folder(finished.id)}/output.mp4?ttl={ttl}"
    )
    assert download.status_code == 307
    assert download.headers["location"].endswith(f"&download=beatsync-{finished.id}.mp4")
    assert forged.status_code == 403


def test_a_link_valid_for_longer_than_the_link_lifetime_is_refused(
    client: TestClient, finished: Finished, settings: Settings
) -> None:
    secret = settings.secret_key.get_secret_value()
    path = f"/api/v1/files/{finished.id}/report.json"
    ttl = settings.signed_url_ttl_s
    # Minted with the key, but valid for ten lifetimes: no link the service gives looks so.
    forever = int(time.time()) + 10 * ttl
    _problem(
        client.get(f"{path}?exp={forever}&sig={sign(secret, path, forever)}"), 403, "LINK_EXPIRED"
    )
    assert client.get(signed_path(secret, path, ttl_s=ttl)).status_code == 200
