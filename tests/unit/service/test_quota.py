"""Each owner's storage: a quota of bytes and files checked before and while bytes arrive, and
identical files of one owner stored once, with deletions and the sweeper counting references."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from beatsync.service.cleanup import sweep
from beatsync.service.config import Settings
from beatsync.service.db import Database, Upload
from beatsync.service.db.models import utcnow
from beatsync.service.storage import LocalStorage
from beatsync.testkit import BuiltCase, build_case, case_named


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("quota-media"))


@pytest.fixture
def dance(case: BuiltCase) -> bytes:
    return case.dance.read_bytes()


@pytest.fixture
def bgm(case: BuiltCase) -> bytes:
    return case.bgm.read_bytes()


@pytest.fixture
def quota_client(
    make_client: Callable[..., TestClient],
    make_settings: Callable[..., Settings],
    dance: bytes,
) -> Callable[..., TestClient]:
    def make(**overrides: Any) -> TestClient:
        # Room for the dance file and a little more, unless a test says otherwise.
        limits = {"max_stored_bytes_per_owner": len(dance) + 4096, **overrides}
        return make_client(make_settings(**limits))

    return make


def _owner(client: TestClient) -> dict[str, str]:
    token = client.post("/api/v1/sessions").json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _upload(client: TestClient, auth: dict[str, str], data: bytes) -> Any:
    return client.post(
        "/api/v1/uploads", files={"file": ("class.mp4", data, "video/mp4")}, headers=auth
    )


def _stored(settings: Settings) -> dict[str, int]:
    """Every stored upload file: key → size."""
    root = settings.storage_root / "uploads"
    if not root.exists():
        return {}
    return {
        str(p.relative_to(settings.storage_root)): p.stat().st_size
        for p in root.rglob("data")
        if p.is_file()
    }


def _spool(settings: Settings) -> list[Path]:
    return [p for p in settings.spool_root.iterdir() if p.is_file()]


def _quota_refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == "STORAGE_QUOTA_EXCEEDED", body
    return body


def _settings(client: TestClient) -> Settings:
    settings: Settings = client.app.state.context.settings  # type: ignore[attr-defined]
    return settings


def test_the_same_bytes_of_one_owner_are_stored_once(
    quota_client: Callable[..., TestClient], dance: bytes
) -> None:
    client = quota_client()
    settings = _settings(client)
    me = _owner(client)
    # Three times the same file fits a quota of one: identical bytes cost nothing twice.
    ids = []
    for _ in range(3):
        answer = _upload(client, me, dance)
        assert answer.status_code == 201, answer.text
        assert answer.json()["sha256"] == hashlib.sha256(dance).hexdigest()
        ids.append(answer.json()["id"])
    assert len(set(ids)) == 3
    assert list(_stored(settings).values()) == [len(dance)]
    # Another owner's copy is its own: dedupe never crosses owners.
    assert _upload(client, _owner(client), dance).status_code == 201
    assert sorted(_stored(settings).values()) == [len(dance), len(dance)]


def test_an_owner_past_its_bytes_is_refused_before_the_body_is_stored(
    quota_client: Callable[..., TestClient], dance: bytes, bgm: bytes
) -> None:
    client = quota_client(max_stored_bytes_per_owner=len(dance) + len(bgm) // 2)
    settings = _settings(client)
    me = _owner(client)
    assert _upload(client, me, dance).status_code == 201
    body = _quota_refusal(_upload(client, me, bgm))
    assert body["used_bytes"] == len(dance)
    assert body["max_bytes"] == settings.max_stored_bytes_per_owner
    assert _spool(settings) == []
    assert list(_stored(settings).values()) == [len(dance)]
    # The quota is this owner's: another one still uploads.
    assert _upload(client, _owner(client), bgm).status_code == 201


def test_a_chunked_upload_is_cut_off_when_it_passes_the_quota(
    quota_client: Callable[..., TestClient], dance: bytes, bgm: bytes
) -> None:
    client = quota_client(max_stored_bytes_per_owner=len(bgm) + 4096)
    settings = _settings(client)
    me = _owner(client)
    assert _upload(client, me, bgm).status_code == 201
    boundary = "quota-boundary-1"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        yield head
        for start in range(0, len(dance), 16384):
            yield dance[start : start + 16384]
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = client.post(
        "/api/v1/uploads",
        content=body(),
        headers={**me, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    # Cut while streaming, once past the quota and the allowance a copy of bgm would have.
    assert _quota_refusal(answer)["detail"].startswith("the upload passed the quota")
    assert _spool(settings) == []
    assert list(_stored(settings).values()) == [len(bgm)]


def test_a_resumable_upload_declares_its_length_against_the_quota(
    quota_client: Callable[..., TestClient], dance: bytes, bgm: bytes
) -> None:
    client = quota_client(max_stored_bytes_per_owner=len(dance) + len(bgm) // 2)
    me = _owner(client)
    tus = {**me, "Tus-Resumable": "1.0.0"}
    assert _upload(client, me, dance).status_code == 201
    refused = client.post("/api/v1/tus", headers={**tus, "Upload-Length": str(len(bgm))})
    _quota_refusal(refused)
    assert refused.headers["tus-resumable"] == "1.0.0"
    assert len(client.get("/api/v1/uploads", headers=me).json()["items"]) == 1
    # A reserved length counts until it arrives: two halves cannot sneak in one by one.
    half = client.post("/api/v1/tus", headers={**tus, "Upload-Length": str(len(bgm) // 4)})
    assert half.status_code == 201
    _quota_refusal(
        client.post("/api/v1/tus", headers={**tus, "Upload-Length": str(len(bgm) // 4 + 64)})
    )


def test_a_resumable_copy_of_a_stored_file_is_stored_once(
    quota_client: Callable[..., TestClient], dance: bytes
) -> None:
    client = quota_client(max_stored_bytes_per_owner=2 * len(dance))
    settings = _settings(client)
    me = _owner(client)
    assert _upload(client, me, dance).status_code == 201
    created = client.post(
        "/api/v1/tus",
        headers={
            **me,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(dance)),
            "Content-Type": "application/offset+octet-stream",
        },
        content=dance,
    )
    assert created.status_code == 201, created.text
    upload_id = created.headers["location"].rsplit("/", 1)[-1]
    assert client.get(f"/api/v1/uploads/{upload_id}", headers=me).json()["status"] == "ready"
    assert list(_stored(settings).values()) == [len(dance)]


def test_the_number_of_files_is_capped_but_a_copy_is_free(
    quota_client: Callable[..., TestClient], dance: bytes, bgm: bytes
) -> None:
    client = quota_client(max_stored_bytes_per_owner=10 * len(dance), max_uploads_per_owner=1)
    settings = _settings(client)
    me = _owner(client)
    assert _upload(client, me, dance).status_code == 201
    body = _quota_refusal(_upload(client, me, bgm))
    assert (body["uploads"], body["max_uploads"]) == (1, 1)
    assert _upload(client, me, dance).status_code == 201
    assert _spool(settings) == []
    assert list(_stored(settings).values()) == [len(dance)]


def test_a_shared_file_stays_until_its_last_upload_goes(
    quota_client: Callable[..., TestClient], dance: bytes
) -> None:
    client = quota_client()
    settings = _settings(client)
    me = _owner(client)
    first, second = (_upload(client, me, dance).json()["id"] for _ in range(2))
    assert client.delete(f"/api/v1/uploads/{first}", headers=me).status_code == 204
    assert list(_stored(settings).values()) == [len(dance)]
    assert client.get(f"/api/v1/uploads/{second}", headers=me).json()["status"] == "ready"
    # The space the deleted one held is not freed twice: a new file still does not fit.
    _quota_refusal(_upload(client, me, dance[:-1000] + b"\0" * 1000))
    assert client.delete(f"/api/v1/uploads/{second}", headers=me).status_code == 204
    assert _stored(settings) == {}
    assert _upload(client, me, dance).status_code == 201


def test_the_sweeper_keeps_a_file_while_an_upload_refers_to_it(
    quota_client: Callable[..., TestClient], dance: bytes
) -> None:
    client = quota_client()
    settings = _settings(client)
    me = _owner(client)
    first, second = (_upload(client, me, dance).json()["id"] for _ in range(2))
    assert list(_stored(settings).values()) == [len(dance)]  # one object, two uploads
    db = Database(settings.database)
    storage = LocalStorage(settings.storage_root)
    try:
        with db.session() as session:
            session.execute(
                update(Upload)
                .where(Upload.id == first)
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
        report = sweep(settings, db, storage, grace=timedelta(0))
        assert report.as_dict()["uploads_expired"] == 1
        assert list(_stored(settings).values()) == [len(dance)]
        assert client.get(f"/api/v1/uploads/{second}", headers=me).json()["status"] == "ready"
        with db.session() as session:
            session.execute(
                update(Upload)
                .where(Upload.id == second)
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
        sweep(settings, db, storage, grace=timedelta(0))
        assert _stored(settings) == {}
    finally:
        db.dispose()
