"""The jobs API: creation with validation, quotas and the result cache; reading, listing,
canceling, deleting, retrying and rendering variants; another owner's jobs never show."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from factories import AUDIO_MEDIA, RESULT, Rows, files_under, owner_id
from fastapi.testclient import TestClient

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings
from beatsync.service.db import UploadStatus
from beatsync.service.db.models import utcnow
from beatsync.service.jobs.options import cache_key
from beatsync.service.jobs.run import sync_options
from beatsync.service.layout import job_folder, upload_folder
from beatsync.service.signing import verify
from beatsync.service.storage import LocalStorage

DEFAULT_OPTIONS = {
    "offset_s": None,
    "mapping": None,
    "nudge_ms": 0.0,
    "start_s": None,
    "end_s": None,
    "trim": True,
    "reencode": False,
    "max_height": None,
    "mix_live_db": None,
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Room for several jobs per owner; the quota tests lower it again."""
    return make_settings(max_running_jobs_per_owner=10)


class Owner:
    """One client identity with a ready dance and reference upload."""

    def __init__(self, client: TestClient, rows: Rows, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.id = owner_id(client, headers)
        self.dance = rows.upload(self.id)
        self.bgm = rows.upload(self.id, media=AUDIO_MEDIA)

    def create(self, options: dict[str, Any] | None = None, **ids: str) -> Any:
        body: dict[str, Any] = {
            "dance_upload_id": ids.get("dance", self.dance),
            "bgm_upload_id": ids.get("bgm", self.bgm),
        }
        if options is not None:
            body["options"] = options
        return self.client.post("/api/v1/jobs", json=body, headers=self.headers)

    def queued(self, options: dict[str, Any] | None = None) -> str:
        response = self.create(options)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id


@pytest.fixture
def me(client: TestClient, rows: Rows, auth: dict[str, str]) -> Owner:
    return Owner(client, rows, auth)


@pytest.fixture
def other(client: TestClient, rows: Rows, other_auth: dict[str, str]) -> Owner:
    return Owner(client, rows, other_auth)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


# ---------------------------------------------------------------- create


def test_a_job_is_queued_submitted_and_readable(me: Owner, dispatcher: Any) -> None:
    response = me.create({"nudge_ms": 25, "start_s": 2.0, "end_s": 12.5})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert (job["stage"], job["progress"], job["message"], job["error"]) == (None, 0.0, None, None)
    assert job["options"] == {**DEFAULT_OPTIONS, "nudge_ms": 25.0, "start_s": 2.0, "end_s": 12.5}
    assert (job["dance_upload_id"], job["bgm_upload_id"]) == (me.dance, me.bgm)
    assert job["parent_id"] is None
    assert job["attempts"] == 0
    assert job["result"] is None
    assert job["created_at"].endswith("Z")
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert job["links"] == {
        "self": f"/api/v1/jobs/{job['id']}",
        "events": f"/api/v1/jobs/{job['id']}/events",
        "ws": f"/api/v1/jobs/{job['id']}/ws",
    }
    assert dispatcher.submitted == [job["id"]]
    again = me.client.get(f"/api/v1/jobs/{job['id']}", headers=me.headers)
    assert again.status_code == 200
    assert again.json() == job


def test_the_stored_options_carry_every_field(me: Owner, rows: Rows) -> None:
    options = {"offset_s": -3.25, "reencode": True, "max_height": 720, "mix_live_db": -18}
    job_id = me.queued(options)
    assert rows.job(job_id).options == {**DEFAULT_OPTIONS, **options, "mix_live_db": -18.0}


@pytest.mark.parametrize(
    "options",
    [
        {"nudge_ms": 5000.5},
        {"nudge_ms": -6000},
        {"start_s": 10, "end_s": 5},
        {"start_s": 4, "end_s": 4},
        {"start_s": -1},
        {"reencode": True, "max_height": 143},
        {"reencode": True, "max_height": 4321},
        {"max_height": 720},
        {"mapping": {"offset_s": 1.0, "scale": 1.0}},
        {"speed": 2},
        {"nudge_ms": "12"},
        {"trim": "yes"},
    ],
)
def test_invalid_options_are_refused(me: Owner, dispatcher: Any, options: dict[str, Any]) -> None:
    body = _problem(me.create(options), 422, "VALIDATION_ERROR")
    assert any("options" in error["loc"] for error in body["errors"]), body
    assert dispatcher.submitted == []


def test_a_request_without_ids_or_token_is_refused(me: Owner, client: TestClient) -> None:
    _problem(
        client.post("/api/v1/jobs", json={"dance_upload_id": me.dance}, headers=me.headers),
        422,
        "VALIDATION_ERROR",
    )
    _problem(
        client.post("/api/v1/jobs", json={"dance_upload_id": me.dance, "bgm_upload_id": me.bgm}),
        401,
        "UNAUTHORIZED",
    )


def test_a_start_after_the_dance_ends_is_refused(me: Owner) -> None:
    body = _problem(me.create({"start_s": 25.0}), 422, "VALIDATION_ERROR")
    assert "start_s" in body["detail"]


def test_uploads_must_be_mine_ready_and_usable(
    me: Owner, other: Owner, rows: Rows, dispatcher: Any
) -> None:
    _problem(me.create(dance=other.dance), 404, "NOT_FOUND")
    _problem(me.create(bgm=other.bgm), 404, "NOT_FOUND")
    _problem(me.create(dance="upl_missing"), 404, "NOT_FOUND")
    receiving = rows.upload(me.id, status=UploadStatus.RECEIVING)
    _problem(me.create(bgm=receiving), 409, "UPLOAD_INCOMPLETE")
    for code in ("INVALID_FORMAT", "DURATION_TOO_LONG", "NO_AUDIO_TRACK"):
        rejected = rows.upload(me.id, status=UploadStatus.REJECTED, error_code=code)
        _problem(me.create(dance=rejected), 422, code)
    silent_picture = rows.upload(me.id, media=AUDIO_MEDIA)
    _problem(me.create(dance=silent_picture), 422, "NO_VIDEO_TRACK")
    _problem(me.create(dance=rows.upload(me.id, expired=True)), 404, "FILE_NOT_FOUND")
    _problem(me.create(bgm=rows.upload(me.id, stored=False)), 404, "FILE_NOT_FOUND")
    assert dispatcher.submitted == []
    # An audio-only file is a valid reference.
    assert me.create(bgm=silent_picture).status_code == 202


def test_messages_follow_accept_language(me: Owner, client: TestClient) -> None:
    body = {"dance_upload_id": "upl_x", "bgm_upload_id": me.bgm}
    english = client.post(
        "/api/v1/jobs", json=body, headers={**me.headers, "Accept-Language": "en"}
    ).json()
    chinese = client.post("/api/v1/jobs", json=body, headers=me.headers).json()
    assert english["message"] == "Not found."
    assert chinese["message"] == "找不到该资源。"


# ---------------------------------------------------------------- quotas


def test_running_jobs_per_owner_are_capped(
    make_client: Callable[..., TestClient], settings: Settings, rows: Rows, dispatcher: Any
) -> None:
    client = make_client(settings.model_copy(update={"max_running_jobs_per_owner": 2}))
    headers = {"Authorization": f"Bearer {client.post('/api/v1/sessions').json()['token']}"}
    owner = Owner(client, rows, headers)
    first = owner.queued({"nudge_ms": 1})
    owner.queued({"nudge_ms": 2})
    refused = _problem(owner.create({"nudge_ms": 3}), 429, "QUOTA_EXCEEDED")
    assert "2" in refused["detail"]
    assert len(dispatcher.submitted) == 2
    rows.run(first, "align", 0.3)
    _problem(owner.create({"nudge_ms": 3}), 429, "QUOTA_EXCEEDED")
    rows.fail(first)
    assert owner.create({"nudge_ms": 3}).status_code == 202


def test_daily_jobs_per_owner_are_capped(
    make_client: Callable[..., TestClient], settings: Settings, rows: Rows
) -> None:
    client = make_client(settings.model_copy(update={"max_daily_jobs_per_owner": 3}))
    tokens = [client.post("/api/v1/sessions").json()["token"] for _ in range(2)]
    owner, bystander = (Owner(client, rows, {"Authorization": f"Bearer {t}"}) for t in tokens)
    for nudge in range(3):
        rows.fail(owner.queued({"nudge_ms": nudge}))
    refused = owner.create({"nudge_ms": 9})
    _problem(refused, 429, "QUOTA_EXCEEDED")
    assert 86_000 <= int(refused.headers["retry-after"]) <= 86_401
    assert bystander.create().status_code == 202


def test_a_full_queue_answers_server_busy(
    make_client: Callable[..., TestClient], settings: Settings, rows: Rows, dispatcher: Any
) -> None:
    client = make_client(settings.model_copy(update={"max_queued_jobs": 2}))
    tokens = [client.post("/api/v1/sessions").json()["token"] for _ in range(3)]
    a, b, c = (Owner(client, rows, {"Authorization": f"Bearer {t}"}) for t in tokens)
    a.queued()
    second = b.queued()
    busy = c.create()
    body = _problem(busy, 503, "SERVER_BUSY")
    assert busy.headers["retry-after"] == "30"
    assert body["retryable"] is True
    assert len(dispatcher.submitted) == 2
    rows.run(second, "decode", 0.1)  # running jobs leave the queue
    assert c.create().status_code == 202


# ---------------------------------------------------------------- result cache


def test_an_identical_finished_job_is_answered_from_the_cache(
    me: Owner, other: Owner, rows: Rows, dispatcher: Any, settings: Settings
) -> None:
    job_id = me.queued({"nudge_ms": 10})
    rows.succeed(job_id)
    hit = me.create({"nudge_ms": 10})
    assert hit.status_code == 200
    assert hit.json()["id"] == job_id
    assert hit.json()["status"] == "succeeded"
    assert hit.headers["location"] == f"/api/v1/jobs/{job_id}"
    # Same bytes under new upload ids: the key is the content, not the id.
    dance_bytes = (settings.storage_root / f"{upload_folder(me.dance)}/data").read_bytes()
    bgm_bytes = (settings.storage_root / f"{upload_folder(me.bgm)}/data").read_bytes()
    twin = me.create(
        {"nudge_ms": 10},
        dance=rows.upload(me.id, content=dance_bytes),
        bgm=rows.upload(me.id, content=bgm_bytes, media=AUDIO_MEDIA),
    )
    assert (twin.status_code, twin.json()["id"]) == (200, job_id)
    assert dispatcher.submitted == [job_id]
    # Other options, another owner, or results swept away: a new job.
    assert me.create({"nudge_ms": 11}).status_code == 202
    their = other.create(
        {"nudge_ms": 10},
        dance=rows.upload(other.id, content=dance_bytes),
        bgm=rows.upload(other.id, content=bgm_bytes, media=AUDIO_MEDIA),
    )
    assert their.status_code == 202
    rows.storage.delete_prefix(f"{job_folder(job_id)}")
    rebuilt = me.create({"nudge_ms": 10})
    assert rebuilt.status_code == 202
    assert rebuilt.json()["id"] != job_id
    assert len(dispatcher.submitted) == 4


def test_the_cache_key_covers_inputs_options_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    options = dict(DEFAULT_OPTIONS)
    key = cache_key("a" * 64, "b" * 64, options)
    assert key == cache_key("a" * 64, "b" * 64, dict(reversed(list(options.items()))))
    assert key != cache_key("b" * 64, "a" * 64, options)
    assert key != cache_key("a" * 64, "b" * 64, {**options, "trim": False})
    monkeypatch.setattr("beatsync.__version__", "99.0.0")
    assert key != cache_key("a" * 64, "b" * 64, options)


# ---------------------------------------------------------------- read and list


def test_another_owners_job_is_not_found(me: Owner, other: Owner, rows: Rows) -> None:
    job_id = me.queued()
    rows.succeed(job_id)
    client = other.client
    for method, path in (
        ("GET", f"/api/v1/jobs/{job_id}"),
        ("POST", f"/api/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/api/v1/jobs/{job_id}"),
        ("POST", f"/api/v1/jobs/{job_id}/retry"),
        ("POST", f"/api/v1/jobs/{job_id}/render"),
        ("GET", "/api/v1/jobs/job_unknown"),
    ):
        _problem(client.request(method, path, headers=other.headers), 404, "NOT_FOUND")
    assert rows.job(job_id).status == "succeeded"
    assert files_under(rows.settings.storage_root, f"{job_folder(job_id)}") == [
        "output.mp4",
        "plot.png",
        "poster.jpg",
        "report.json",
    ]


def test_jobs_are_listed_newest_first_in_pages(client: TestClient, rows: Rows) -> None:
    tokens = [client.post("/api/v1/sessions").json()["token"] for _ in range(2)]
    owner, other = (Owner(client, rows, {"Authorization": f"Bearer {t}"}) for t in tokens)
    made = [owner.queued({"nudge_ms": n}) for n in range(5)]
    other.queued()
    expected = sorted(made, key=lambda j: (rows.job(j).created_at, j), reverse=True)
    seen: list[str] = []
    cursor = None
    pages = []
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/jobs", params=params, headers=owner.headers)
        assert page.status_code == 200
        body = page.json()
        pages.append(len(body["items"]))
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert seen == expected
    everything = client.get("/api/v1/jobs", headers=owner.headers).json()
    assert [j["id"] for j in everything["items"]] == expected
    assert everything["next_cursor"] is None
    assert everything["items"][0]["links"]["self"] == f"/api/v1/jobs/{expected[0]}"
    for bad in ({"cursor": "not-a-cursor"}, {"limit": 0}, {"limit": 101}):
        _problem(
            client.get("/api/v1/jobs", params=bad, headers=owner.headers), 422, "VALIDATION_ERROR"
        )


def test_a_failed_job_shows_its_error_in_the_clients_language(me: Owner, rows: Rows) -> None:
    job_id = me.queued()
    rows.fail(job_id, "MUSIC_MISMATCH", "no shared music between 0.0 and 20.0 s")
    url = f"/api/v1/jobs/{job_id}"
    english = me.client.get(url, headers={**me.headers, "Accept-Language": "en-US,en;q=0.9"})
    chinese = me.client.get(url, headers={**me.headers, "Accept-Language": "zh-CN"})
    assert english.json()["error"] == {
        "code": "MUSIC_MISMATCH",
        "message": "The two files do not share the music; check that it is the same song.",
        "detail": "no shared music between 0.0 and 20.0 s",
    }
    assert chinese.json()["error"]["message"] == "两个文件里的音乐对不上，请确认是同一首歌。"
    assert english.json()["status"] == "failed"


def test_a_succeeded_job_shows_its_result_with_signed_urls(
    me: Owner, rows: Rows, settings: Settings
) -> None:
    job_id = me.queued()
    contents = rows.succeed(job_id)
    job = me.client.get(f"/api/v1/jobs/{job_id}", headers=me.headers).json()
    result = job["result"]
    assert result["confidence"] == RESULT["confidence"]
    assert result["mapping"] == RESULT["mapping"]
    assert result["candidates"] == RESULT["candidates"]
    assert result["pieces"] == RESULT["pieces"]
    assert result["cut"] == RESULT["cut"]
    assert result["output"]["size_bytes"] == len(contents["video"])
    assert set(result) == {
        "confidence", "mapping", "pieces", "candidates", "cut", "output", "files"
    }  # fmt: skip
    secret = settings.secret_key.get_secret_value()
    names = {
        "video": "output.mp4",
        "report": "report.json",
        "plot": "plot.png",
        "poster": "poster.jpg",
    }
    for kind, name in names.items():
        url = urlsplit(result["files"][kind])
        query = parse_qs(url.query)
        assert url.path == f"/api/v1/files/{job_id}/{name}"
        assert verify(secret, url.path, query["exp"][0], query["sig"][0])
        fetched = me.client.get(result["files"][kind])  # no Authorization needed
        assert fetched.status_code == 200
        assert fetched.content == contents[kind]


def test_expired_results_are_no_longer_linked(me: Owner, rows: Rows) -> None:
    job_id = me.queued()
    rows.succeed(job_id)
    rows.update(job_id, expires_at=utcnow() - timedelta(seconds=1))
    result = me.client.get(f"/api/v1/jobs/{job_id}", headers=me.headers).json()["result"]
    assert result["files"] == {"video": None, "report": None, "plot": None, "poster": None}
    assert result["mapping"] == RESULT["mapping"]


class PresigningStorage(LocalStorage):
    def presigned_url(self, key: str, *, expires_s: int, filename: str | None = None) -> str | None:
        suffix = f"&filename={filename}" if filename else ""
        return f"https://bucket.example/{key}?expires={expires_s}{suffix}"


def test_a_store_with_its_own_urls_is_linked_directly(
    settings: Settings, dispatcher: Any, rows: Rows
) -> None:
    app = create_app(
        settings, dispatcher=dispatcher, storage=PresigningStorage(settings.storage_root)
    )
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {client.post('/api/v1/sessions').json()['token']}"}
        owner = Owner(client, rows, headers)
        job_id = owner.queued()
        rows.succeed(job_id)
        files = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()["result"]["files"]
    ttl = settings.signed_url_ttl_s
    assert files == {
        "video": f"https://bucket.example/{job_folder(job_id)}/output.mp4?expires={ttl}",
        "report": f"https://bucket.example/{job_folder(job_id)}/report.json?expires={ttl}",
        "plot": f"https://bucket.example/{job_folder(job_id)}/plot.png?expires={ttl}",
        "poster": f"https://bucket.example/{job_folder(job_id)}/poster.jpg?expires={ttl}",
    }


# ---------------------------------------------------------------- cancel and delete


def test_queued_and_running_jobs_can_be_canceled(me: Owner, rows: Rows, dispatcher: Any) -> None:
    queued = me.queued({"nudge_ms": 1})
    running = me.queued({"nudge_ms": 2})
    rows.run(running, "render", 0.6)
    for job_id in (queued, running):
        response = me.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=me.headers)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "canceled"
        assert body["finished_at"] is not None
        row = rows.job(job_id)
        assert (row.status, row.cancel_requested) == ("canceled", True)
    assert dispatcher.canceled == [queued, running]
    again = me.client.post(f"/api/v1/jobs/{queued}/cancel", headers=me.headers)
    _problem(again, 409, "JOB_NOT_CANCELLABLE")


def test_finished_jobs_cannot_be_canceled(me: Owner, rows: Rows, dispatcher: Any) -> None:
    done = me.queued({"nudge_ms": 1})
    rows.succeed(done)
    failed = me.queued({"nudge_ms": 2})
    rows.fail(failed)
    for job_id, status in ((done, "succeeded"), (failed, "failed")):
        _problem(
            me.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=me.headers),
            409,
            "JOB_NOT_CANCELLABLE",
        )
        assert rows.job(job_id).status == status
    assert dispatcher.canceled == []


def test_deleting_a_job_removes_its_files_and_row(
    me: Owner, rows: Rows, dispatcher: Any, settings: Settings
) -> None:
    done = me.queued({"nudge_ms": 1})
    rows.succeed(done)
    running = me.queued({"nudge_ms": 2})
    rows.run(running, "align", 0.3)
    for job_id in (done, running):
        response = me.client.delete(f"/api/v1/jobs/{job_id}", headers=me.headers)
        assert response.status_code == 204
        assert response.content == b""
        assert not rows.exists(job_id)
        assert files_under(settings.storage_root, f"{job_folder(job_id)}") == []
        _problem(me.client.get(f"/api/v1/jobs/{job_id}", headers=me.headers), 404, "NOT_FOUND")
    assert dispatcher.canceled == [running]
    assert files_under(settings.storage_root, f"{upload_folder(me.dance)}") == ["data"]


# ---------------------------------------------------------------- retry


def test_failed_and_canceled_jobs_can_be_retried(me: Owner, rows: Rows, dispatcher: Any) -> None:
    failed = me.queued({"nudge_ms": 1})
    rows.run(failed, "align", 0.3)
    rows.fail(failed, "WORKER_LOST", "the worker died")
    canceled = me.queued({"nudge_ms": 2})
    me.client.post(f"/api/v1/jobs/{canceled}/cancel", headers=me.headers)
    for job_id in (failed, canceled):
        response = me.client.post(f"/api/v1/jobs/{job_id}/retry", headers=me.headers)
        assert response.status_code == 202
        assert response.headers["location"] == f"/api/v1/jobs/{job_id}"
        body = response.json()
        assert (body["status"], body["error"], body["attempts"]) == ("queued", None, 0)
        assert (body["stage"], body["progress"], body["result"]) == (None, 0.0, None)
        assert body["started_at"] is None
        assert body["finished_at"] is None
        row = rows.job(job_id)
        assert (row.error_code, row.cancel_requested) == (None, False)
    assert dispatcher.submitted == [failed, canceled, failed, canceled]


def test_only_failed_or_canceled_jobs_can_be_retried(
    me: Owner, rows: Rows, dispatcher: Any
) -> None:
    queued = me.queued({"nudge_ms": 1})
    running = me.queued({"nudge_ms": 2})
    rows.run(running, "trim", 0.46)
    done = me.queued({"nudge_ms": 3})
    rows.succeed(done)
    for job_id in (queued, running, done):
        _problem(
            me.client.post(f"/api/v1/jobs/{job_id}/retry", headers=me.headers),
            409,
            "JOB_NOT_RETRYABLE",
        )
    assert len(dispatcher.submitted) == 3


# ---------------------------------------------------------------- render variants


def _render(owner: Owner, job_id: str, body: dict[str, Any] | None = None) -> Any:
    return owner.client.post(f"/api/v1/jobs/{job_id}/render", json=body, headers=owner.headers)


def test_a_candidate_is_rendered_with_its_mapping(me: Owner, rows: Rows, dispatcher: Any) -> None:
    parent = me.queued({"nudge_ms": 20, "start_s": 1.0})
    rows.succeed(parent)
    response = _render(me, parent, {"candidate": 1})
    assert response.status_code == 202
    variant = response.json()
    assert variant["parent_id"] == parent
    assert response.headers["location"] == f"/api/v1/jobs/{variant['id']}"
    assert variant["options"] == {
        **DEFAULT_OPTIONS,
        "nudge_ms": 20.0,
        "start_s": 1.0,
        "mapping": {"offset_s": 76.25, "scale": 0.98},
    }
    assert (variant["dance_upload_id"], variant["bgm_upload_id"]) == (me.dance, me.bgm)
    assert dispatcher.submitted == [parent, variant["id"]]
    _problem(_render(me, parent, {"candidate": 2}), 422, "VALIDATION_ERROR")


def test_a_nudge_reuses_the_jobs_own_mapping_before_its_nudge(me: Owner, rows: Rows) -> None:
    parent = me.queued({"nudge_ms": 20})
    # The engine's result mapping has the nudge in it: offset − 20 ms.
    used = {**RESULT, "mapping": {"offset_s": 12.48, "scale": 1.0001, "drift_ppm": 100.0}}
    rows.succeed(parent, result=used)
    variant = _render(me, parent, {"nudge_ms": -35}).json()
    assert variant["options"]["nudge_ms"] == -35.0
    assert variant["options"]["mapping"] == pytest.approx({"offset_s": 12.5, "scale": 1.0001})
    assert variant["parent_id"] == parent


def test_a_nudge_of_an_edit_moves_every_piece_and_keeps_the_seams(me: Owner, rows: Rows) -> None:
    parent = me.queued({"nudge_ms": 20})
    # An edit in two pieces; the result's offsets have the job's 20 ms nudge in them.
    pieces = [
        {"start_s": 1.2, "end_s": 9.0, "offset_s": 12.48, "scale": 1.0001, "drift_ppm": 100.0},
        {"start_s": 9.0, "end_s": 17.5, "offset_s": 40.23, "scale": 1.0001, "drift_ppm": 100.0},
    ]
    mapping = {"offset_s": 12.48, "scale": 1.0001, "drift_ppm": 100.0}
    rows.succeed(parent, result={**RESULT, "mapping": mapping, "pieces": pieces})
    variant = _render(me, parent, {"nudge_ms": -35}).json()
    given = variant["options"]["mapping"]
    assert given["pieces"] == [
        pytest.approx({"start_s": 1.2, "end_s": 9.0, "offset_s": 12.5, "scale": 1.0001}),
        pytest.approx({"start_s": 9.0, "end_s": 17.5, "offset_s": 40.25, "scale": 1.0001}),
    ]
    # The engine renders those pieces as they are, every one nudged alike.
    options = sync_options(variant["options"])
    assert options.pieces is not None
    assert [p.mapping.offset for p in options.pieces] == pytest.approx([12.5, 40.25])
    assert [p.start for p in options.pieces] == [1.2, 9.0]
    assert options.nudge_ms == -35.0
    # A variant of the variant keeps them too.
    rows.succeed(variant["id"])
    again = _render(me, variant["id"], {"nudge_ms": 5}).json()
    assert again["options"]["mapping"]["pieces"] == given["pieces"]


def test_another_cut_overrides_only_what_is_sent(me: Owner, rows: Rows) -> None:
    parent = me.queued({"start_s": 2.0, "end_s": 15.0, "nudge_ms": 5, "trim": True})
    rows.succeed(parent)
    cut = _render(me, parent, {"end_s": None, "trim": False}).json()
    assert cut["options"]["mapping"] == pytest.approx({"offset_s": 12.505, "scale": 1.0001})
    assert cut["options"] == {
        **DEFAULT_OPTIONS,
        "start_s": 2.0,
        "end_s": None,
        "trim": False,
        "nudge_ms": 5.0,
        "mapping": cut["options"]["mapping"],
    }
    _problem(_render(me, parent, {"end_s": 1.0}), 422, "VALIDATION_ERROR")
    _problem(_render(me, parent, {"nudge_ms": 9000}), 422, "VALIDATION_ERROR")
    _problem(_render(me, parent, {"offset_s": 3}), 422, "VALIDATION_ERROR")


def test_a_variants_candidates_are_those_of_its_search(me: Owner, rows: Rows) -> None:
    parent = me.queued()
    rows.succeed(parent)
    nudged = _render(me, parent, {"nudge_ms": 15}).json()["id"]
    rows.succeed(nudged, result={**RESULT, "candidates": []})
    other = _render(me, nudged, {"candidate": 0}).json()
    assert other["parent_id"] == nudged
    assert other["options"]["mapping"] == {"offset_s": 44.5, "scale": 1.0}
    assert other["options"]["nudge_ms"] == 15.0


def test_a_rendered_variant_is_cached_like_any_job(me: Owner, rows: Rows, dispatcher: Any) -> None:
    parent = me.queued()
    rows.succeed(parent)
    first = _render(me, parent, {"candidate": 0})
    assert first.status_code == 202
    rows.succeed(first.json()["id"])
    again = _render(me, parent, {"candidate": 0})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert dispatcher.submitted == [parent, first.json()["id"]]


def test_only_a_succeeded_job_can_be_rendered_again(me: Owner, rows: Rows) -> None:
    queued = me.queued({"nudge_ms": 1})
    running = me.queued({"nudge_ms": 2})
    rows.run(running, "render", 0.8)
    _problem(_render(me, queued, {"nudge_ms": 5}), 409, "JOB_NOT_FINISHED")
    _problem(_render(me, running), 409, "JOB_NOT_FINISHED")
    rows.fail(running)
    _problem(_render(me, running), 409, "JOB_NOT_FINISHED")


def test_the_openapi_document_lists_every_job_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()  # warnings are errors: duplicate ids would fail
    paths = spec["paths"]
    assert set(paths["/api/v1/jobs"]) == {"get", "post"}
    assert set(paths["/api/v1/jobs/{job_id}"]) == {"get", "delete"}
    for action in ("cancel", "retry", "render"):
        assert set(paths[f"/api/v1/jobs/{{job_id}}/{action}"]) == {"post"}
    assert set(paths["/api/v1/jobs/{job_id}/events"]) == {"get"}
    assert set(paths["/api/v1/files/{job_id}/{name}"]) == {"get", "head"}
    assert set(spec["components"]["schemas"]["JobOptions"]["properties"]) == (
        set(DEFAULT_OPTIONS) - {"mapping"}
    )
