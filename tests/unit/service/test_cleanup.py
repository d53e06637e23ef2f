"""The sweeper: expired uploads, partials and results leave with their files; orphans go both ways
(files no row claims, rows whose files are gone); work folders and spool parts of nothing live go;
one sweep at a time; the periodic sweeper runs inside the app.

State is made the way the service makes it (the API for uploads and jobs, :class:`Rows` for what
a worker writes), then aged by moving ``expires_at`` into the past or file times back by hours.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from factories import AUDIO_MEDIA, FILE_NAMES, Rows, owner_id, seeded_bytes
from fastapi.testclient import TestClient
from sqlalchemy import select

from beatsync.service.cleanup import RESULTS_EXPIRED, Sweeper, SweepReport, sweep, sweep_lock
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, JobStatus, Upload, UploadStatus
from beatsync.service.db.models import MetricSample, utcnow
from beatsync.service.layout import day_folder, day_of, job_folder, upload_folder
from beatsync.service.metrics import record_job_end
from beatsync.service.storage import LocalStorage

TUS = {"Tus-Resumable": "1.0.0"}
HOURS = 3600.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(max_running_jobs_per_owner=10)


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.storage_root)


@pytest.fixture
def run_sweep(rows: Rows, settings: Settings, storage: LocalStorage) -> Callable[..., SweepReport]:
    def run(**kwargs: Any) -> SweepReport:
        report = sweep(settings, rows.db, storage, **kwargs)
        assert report.errors == (), report.errors
        assert not report.skipped
        return report

    return run


def counts(report: SweepReport) -> dict[str, int]:
    """The report's non-zero counts."""
    return {
        k: v
        for k, v in report.as_dict().items()
        if isinstance(v, int) and not isinstance(v, bool) and v
    }


def age(path: Path, hours: float = 2.0) -> None:
    """Move the times of ``path`` (and of everything under it) ``hours`` into the past."""
    moment = time.time() - hours * HOURS
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (moment, moment))


def expire_upload(rows: Rows, upload_id: str) -> None:
    with rows.db.session() as session:
        row = session.get(Upload, upload_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)


def create_job(client: TestClient, headers: dict[str, str], dance: str, bgm: str) -> str:
    response = client.post(
        "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm}, headers=headers
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def stored(settings: Settings) -> set[str]:
    storage = LocalStorage(settings.storage_root)
    return set(storage.keys("uploads")) | set(storage.keys("jobs"))


def claimed(db: Database) -> set[str]:
    """Every file the database says exists: ready uploads' files, live results' files."""
    now = utcnow()
    with db.session() as session:
        keys = set(
            session.scalars(
                select(Upload.storage_key).where(Upload.status == UploadStatus.READY.value)
            )
        )
        for job in session.scalars(select(Job).where(Job.status == JobStatus.SUCCEEDED.value)):
            if job.expires_at is None or job.expires_at > now:
                keys.update(((job.result or {}).get("files") or {}).values())
    return {k for k in keys if k}


# ---------------------------------------------------------------- expiry


def test_expired_uploads_go_with_their_files_and_live_ones_stay(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    live = rows.upload(owner, content=seeded_bytes(1, 5000))
    gone = rows.upload(owner, content=seeded_bytes(2, 6000), expired=True)
    refused = rows.upload(
        owner, status=UploadStatus.REJECTED, error_code="INVALID_FORMAT", stored=False
    )
    expire_upload(rows, refused)

    report = run_sweep()

    assert counts(report) == {"uploads_expired": 2, "files_deleted": 1}
    with rows.db.session() as session:
        assert session.get(Upload, gone) is None
        assert session.get(Upload, refused) is None
        assert session.get(Upload, live) is not None
    assert not (settings.storage_root / upload_folder(gone)).exists()
    assert (settings.storage_root / upload_folder(live) / "data").read_bytes() == seeded_bytes(
        1, 5000
    )
    assert client.get(f"/api/v1/uploads/{gone}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/uploads/{live}", headers=auth).json()["status"] == "ready"
    assert counts(run_sweep()) == {}


def test_an_expired_upload_waits_for_the_job_that_reads_it(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    dance = rows.upload(owner)
    bgm = rows.upload(owner, media=AUDIO_MEDIA)
    job_id = create_job(client, auth, dance, bgm)
    expire_upload(rows, dance)
    expire_upload(rows, bgm)

    assert counts(run_sweep()) == {"uploads_in_use": 2}
    rows.run(job_id, "decode", 0.3)
    assert counts(run_sweep()) == {"uploads_in_use": 2}
    assert (settings.storage_root / upload_folder(dance) / "data").is_file()

    rows.fail(job_id)
    assert counts(run_sweep()) == {"uploads_expired": 2, "files_deleted": 2}
    assert stored(settings) == set()


def _tus_create(client: TestClient, auth: dict[str, str], length: int) -> str:
    created = client.post("/api/v1/tus", headers={**auth, **TUS, "Upload-Length": str(length)})
    assert created.status_code == 201, created.text
    return str(created.headers["location"]).rsplit("/", 1)[-1]


def _tus_append(client: TestClient, auth: dict[str, str], upload_id: str, data: bytes) -> None:
    sent = client.patch(
        f"/api/v1/tus/{upload_id}",
        content=data,
        headers={
            **auth,
            **TUS,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert sent.status_code == 204, sent.text


def test_abandoned_resumable_uploads_go_after_their_expiry(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    abandoned = _tus_create(client, auth, 10_000)
    _tus_append(client, auth, abandoned, seeded_bytes(3, 4000))
    active = _tus_create(client, auth, 10_000)
    _tus_append(client, auth, active, seeded_bytes(4, 3000))
    expire_upload(rows, abandoned)
    part = settings.spool_root / f"{abandoned}.part"
    assert part.stat().st_size == 4000

    assert counts(run_sweep()) == {"partials_expired": 1, "spool_files": 1}

    assert not part.exists()
    with rows.db.session() as session:
        assert session.get(Upload, abandoned) is None
    head = client.head(f"/api/v1/tus/{abandoned}", headers={**auth, **TUS})
    assert head.status_code == 404
    kept = settings.spool_root / f"{active}.part"
    assert kept.read_bytes() == seeded_bytes(4, 3000)
    head = client.head(f"/api/v1/tus/{active}", headers={**auth, **TUS})
    assert (head.status_code, head.headers["upload-offset"]) == (200, "3000")


def test_expired_results_lose_their_files_and_links_but_the_job_stays(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    dance, bgm = rows.upload(owner), rows.upload(owner, media=AUDIO_MEDIA)
    old = create_job(client, auth, dance, bgm)
    rows.succeed(old)
    fresh = create_job(client, auth, rows.upload(owner, content=seeded_bytes(9, 4096)), bgm)
    fresh_files = rows.succeed(fresh)
    rows.update(old, expires_at=utcnow() - timedelta(seconds=1))

    assert counts(run_sweep()) == {"results_expired": 1, "files_deleted": 4}

    assert not (settings.storage_root / job_folder(old)).exists()
    job = client.get(f"/api/v1/jobs/{old}", headers=auth).json()
    assert (job["status"], job["message"]) == ("succeeded", RESULTS_EXPIRED)
    assert job["result"]["files"] == {"video": None, "report": None, "plot": None, "poster": None}
    assert job["result"]["mapping"]["offset_s"] == 12.5  # what was found is still told
    assert rows.job(old).result["files"] == {}  # type: ignore[index]
    live = client.get(f"/api/v1/jobs/{fresh}", headers=auth).json()["result"]["files"]
    assert all(str(url).startswith(f"/api/v1/files/{fresh}/") for url in live.values())
    video = client.get(live["video"])
    assert video.content == fresh_files["video"]
    assert counts(run_sweep()) == {}


def test_finished_jobs_expire_with_their_files_and_the_metrics_keep_them(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    bgm = rows.upload(owner, media=AUDIO_MEDIA)
    now = utcnow()
    long_ago = now - timedelta(hours=settings.job_row_ttl_h + 1)

    def job(n: int) -> str:
        return create_job(client, auth, rows.upload(owner, content=seeded_bytes(20 + n, 4096)), bgm)

    ancient = job(0)
    rows.succeed(ancient)
    rows.update(ancient, finished_at=long_ago, expires_at=long_ago + timedelta(hours=72))
    failed = job(1)
    rows.fail(failed)
    rows.update(failed, finished_at=long_ago)
    kept = job(2)  # results kept longer than the row would be: the row waits for them
    rows.succeed(kept)
    rows.update(kept, finished_at=long_ago, expires_at=now + timedelta(hours=1))
    recent = job(3)
    rows.fail(recent)
    running = job(4)
    rows.run(running, "align", 0.5)
    rows.update(running, started_at=long_ago)
    with rows.db.engine.begin() as conn:
        for job_id in (ancient, failed, kept, recent):
            record_job_end(conn, job_id)
    with rows.db.session() as session:
        totals = session.execute(select(MetricSample.name, MetricSample.labels, MetricSample.value))
        before = sorted(tuple(row) for row in totals)
    assert ("beatsync_jobs_finished_total", '{"code":"","status":"succeeded"}', 2.0) in before

    assert counts(run_sweep()) == {"results_expired": 1, "jobs_expired": 2, "files_deleted": 4}

    with rows.db.session() as session:
        left = set(session.scalars(select(Job.id)))
        totals = session.execute(select(MetricSample.name, MetricSample.labels, MetricSample.value))
        assert sorted(tuple(row) for row in totals) == before
    assert left == {kept, recent, running}
    assert client.get(f"/api/v1/jobs/{ancient}", headers=auth).status_code == 404
    assert not (settings.storage_root / job_folder(ancient)).exists()
    assert (settings.storage_root / job_folder(kept)).is_dir()
    assert counts(run_sweep()) == {}


def test_deleting_a_job_deletes_its_files(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    dance, bgm = rows.upload(owner), rows.upload(owner, media=AUDIO_MEDIA)
    job_id = create_job(client, auth, dance, bgm)
    rows.succeed(job_id)
    assert len(list((settings.storage_root / job_folder(job_id)).iterdir())) == 4

    assert client.delete(f"/api/v1/jobs/{job_id}", headers=auth).status_code == 204

    assert not (settings.storage_root / job_folder(job_id)).exists()
    assert not rows.exists(job_id)
    assert stored(settings) == {f"{upload_folder(dance)}/data", f"{upload_folder(bgm)}/data"}
    assert claimed(rows.db) == stored(settings)
    assert counts(run_sweep(grace=timedelta(0))) == {}


# ---------------------------------------------------------------- orphans, both ways


def test_files_no_row_claims_go_once_older_than_the_grace_period(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    kept_upload = rows.upload(owner)
    rows.store("uploads/upl_nobodyOld/data", b"a" * 100)
    rows.store("uploads/upl_nobodyNew/data", b"b" * 100)  # a put a moment before its row
    rows.store("jobs/job_nobodyOld/output.mp4", b"c" * 100)
    rows.store("jobs/job_nobodyOld/plot.png", b"d" * 100)
    refused = rows.upload(
        owner, status=UploadStatus.REJECTED, error_code="INVALID_FORMAT", stored=False
    )
    rows.store(f"{upload_folder(refused)}/data", b"e" * 100)  # refused, yet its bytes were kept
    dance, bgm = rows.upload(owner), rows.upload(owner, media=AUDIO_MEDIA)
    failed = create_job(client, auth, dance, bgm)
    rows.fail(failed)
    rows.store(f"{job_folder(failed)}/output.mp4", b"f" * 100)
    running = create_job(client, auth, rows.upload(owner), bgm)
    rows.run(running, "render", 0.98)
    rows.store(f"{job_folder(running)}/output.mp4", b"g" * 100)  # being stored right now
    for folder in ("upl_nobodyOld", refused, kept_upload, dance, bgm):
        age(settings.storage_root / upload_folder(folder))
    for folder in ("job_nobodyOld", failed):
        age(settings.storage_root / job_folder(folder))

    report = run_sweep()

    # The failed job's folder is in today's day folder, which is not listed: its stray file goes
    # with the day (test_a_day_folder_goes_whole_once_no_row_refers_to_it).
    assert counts(report) == {"orphans_deleted": 3, "files_deleted": 4, "pending": 1}
    assert stored(settings) == {
        f"{job_folder(failed)}/output.mp4",
        f"{upload_folder(kept_upload)}/data",
        f"{upload_folder(dance)}/data",
        f"{upload_folder(bgm)}/data",
        f"{upload_folder(rows.job(running).dance_upload_id)}/data",
        "uploads/upl_nobodyNew/data",
        f"{job_folder(running)}/output.mp4",
    }
    age(settings.storage_root / "uploads" / "upl_nobodyNew")
    assert counts(run_sweep()) == {"orphans_deleted": 1, "files_deleted": 1}
    assert "uploads/upl_nobodyNew/data" not in stored(settings)


def test_a_day_folder_goes_whole_once_no_row_refers_to_it(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    failed = create_job(client, auth, rows.upload(owner), rows.upload(owner, media=AUDIO_MEDIA))
    rows.fail(failed)
    rows.store(f"{job_folder(failed)}/output.mp4", b"f" * 100)  # left by a crash
    day = day_of(failed)
    assert day is not None
    assert job_folder(failed).startswith(f"{day_folder('jobs', day)}/")
    assert counts(run_sweep(grace=timedelta(0))) == {}  # today's folder: not yet considered
    today = timedelta(days=-1)  # consider today's folder as if the day had ended

    # The failed job may be retried into its folder: its row keeps the day.
    assert counts(run_sweep(grace=timedelta(0), day_grace=today)) == {"days_kept": 1}
    assert f"{job_folder(failed)}/output.mp4" in stored(settings)
    with rows.db.session() as session:
        session.delete(session.get(Job, failed))

    report = run_sweep(grace=timedelta(0), day_grace=today)

    assert counts(report) == {"days_deleted": 1, "files_deleted": 1}
    assert not (settings.storage_root / day_folder("jobs", day)).exists()
    assert {k for k in stored(settings) if k.startswith("jobs/")} == set()


def test_a_running_job_keeps_only_what_its_run_wrote(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    bgm = rows.upload(owner, media=AUDIO_MEDIA)
    running = create_job(client, auth, rows.upload(owner), bgm)
    rows.run(running, "render", 0.9)  # its attempt began now
    folder = settings.storage_root / job_folder(running)
    rows.store(f"{job_folder(running)}/report.json", b"{}")  # this run's
    rows.store(f"{job_folder(running)}/plot.png", b"p" * 100)  # an earlier attempt's, hours old
    age(folder / "plot.png", hours=3)
    rows.store(f"{job_folder(running)}/poster.jpg", b"q" * 100)  # an earlier attempt's, young
    age(folder / "poster.jpg", hours=0.5)
    long_run = create_job(client, auth, rows.upload(owner), bgm)
    rows.run(long_run, "align", 0.5)
    rows.update(long_run, started_at=utcnow() - timedelta(hours=5))
    rows.store(f"{job_folder(long_run)}/output.mp4", b"v" * 100)  # written 2 h into a 5 h run
    age(settings.storage_root / job_folder(long_run), hours=3)

    assert counts(run_sweep()) == {"stale_files": 1, "files_deleted": 1}

    assert {k for k in stored(settings) if k.startswith("jobs/")} == {
        f"{job_folder(running)}/report.json",
        f"{job_folder(running)}/poster.jpg",
        f"{job_folder(long_run)}/output.mp4",
    }


def test_rows_whose_files_are_gone_stop_claiming_them(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    lost = rows.upload(owner)
    dance, bgm = rows.upload(owner), rows.upload(owner, media=AUDIO_MEDIA)
    job_id = create_job(client, auth, dance, bgm)
    contents = rows.succeed(job_id)
    (settings.storage_root / upload_folder(lost) / "data").unlink()
    (settings.storage_root / job_folder(job_id) / FILE_NAMES["plot"]).unlink()

    report = run_sweep()

    assert counts(report) == {"uploads_missing_file": 1, "results_missing_file": 1}
    upload = client.get(f"/api/v1/uploads/{lost}", headers=auth).json()
    assert upload["status"] == "rejected"
    assert upload["error"]["code"] == "FILE_NOT_FOUND"
    refused = client.post(
        "/api/v1/jobs", json={"dance_upload_id": lost, "bgm_upload_id": bgm}, headers=auth
    )
    assert (refused.status_code, refused.json()["code"]) == (404, "FILE_NOT_FOUND")
    files = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["result"]["files"]
    assert files["plot"] is None
    assert client.get(files["video"]).content == contents["video"]
    assert stored(settings) == claimed(rows.db)
    assert counts(run_sweep()) == {}


def test_after_a_sweep_storage_and_database_agree(
    client: TestClient,
    auth: dict[str, str],
    other_auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    me, other = owner_id(client, auth), owner_id(client, other_auth)
    dance, bgm = rows.upload(me), rows.upload(me, media=AUDIO_MEDIA)
    done = create_job(client, auth, dance, bgm)
    rows.succeed(done)
    expired = create_job(client, auth, rows.upload(me, content=seeded_bytes(9, 4096)), bgm)
    rows.succeed(expired)
    rows.update(expired, expires_at=utcnow() - timedelta(hours=1))
    rows.upload(other, expired=True)
    rows.upload(other, stored=False)  # its file never arrived
    rows.store("jobs/job_strayOne/report.json", b"{}")
    rows.store("uploads/upl_strayTwo/data", b"x")
    assert stored(settings) != claimed(rows.db)

    run_sweep(grace=timedelta(0))

    assert stored(settings) == claimed(rows.db)
    assert len(stored(settings)) == 3 + 4  # three uploads, one job's results


# ---------------------------------------------------------------- work folders and spool


def test_work_folders_of_dead_runs_and_stale_spool_parts_go(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    settings: Settings,
    run_sweep: Callable[..., SweepReport],
) -> None:
    owner = owner_id(client, auth)
    bgm = rows.upload(owner, media=AUDIO_MEDIA)
    running = create_job(client, auth, rows.upload(owner), bgm)
    rows.run(running, "align", 0.5)
    rows.update(running, started_at=utcnow() - timedelta(hours=3))  # a long run
    # Running now, on another host: this host's folder is an earlier attempt's.
    moved = create_job(client, auth, rows.upload(owner), bgm)
    rows.run(moved, "align", 0.5)
    work = settings.spool_root / "work"
    for name in (running, moved, "job_deadRun", "job_youngRun"):
        (work / name).mkdir(parents=True)
        (work / name / "dance.mp4").write_bytes(b"x" * 10)
    age(work / running)
    age(work / moved)
    age(work / "job_deadRun")
    live = _tus_create(client, auth, 1000)
    age(settings.spool_root / f"{live}.part", hours=5)  # a client paused, within its expiry
    stale = settings.spool_root / "upl_leftBehind.part"  # a multipart upload cut off
    stale.write_bytes(b"y" * 10)
    age(stale)
    young = settings.spool_root / "upl_arrivingNow.part"  # a multipart upload under way
    young.write_bytes(b"z" * 10)
    notes = settings.spool_root / "README.txt"  # not ours to judge
    notes.write_text("keep")
    age(notes, hours=100)

    assert counts(run_sweep()) == {"work_folders": 2, "spool_files": 1}

    assert sorted(p.name for p in work.iterdir()) == sorted([running, "job_youngRun"])
    assert sorted(p.name for p in settings.spool_root.iterdir() if p.is_file()) == sorted(
        [f"{live}.part", "upl_arrivingNow.part", "README.txt"]
    )


# ---------------------------------------------------------------- one at a time, periodically


def test_a_sweep_is_skipped_while_another_holds_the_lock(
    client: TestClient, auth: dict[str, str], rows: Rows, settings: Settings
) -> None:
    gone = rows.upload(owner_id(client, auth), expired=True)
    storage = LocalStorage(settings.storage_root)
    with sweep_lock(settings, rows.db) as held:
        assert held
        assert sweep(settings, rows.db, storage) == SweepReport(skipped=True)
    # Another process (``beatsync cleanup`` beside the server) holds the file lock.
    with (settings.data_dir / "sweep.lock").open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        assert sweep(settings, rows.db, storage).skipped
    with rows.db.session() as session:
        assert session.get(Upload, gone) is not None
    assert sweep(settings, rows.db, storage).uploads_expired == 1


def _wait_gone(db: Database, upload_id: str, deadline_s: float = 10.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with db.session() as session:
            if session.get(Upload, upload_id) is None:
                return True
        time.sleep(0.02)
    return False


def _wait_absent(path: Path, deadline_s: float = 10.0) -> bool:
    # The sweep deletes the row first and the stored file after it (the file may be another
    # upload's too): the file goes a moment after the row.
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.02)
    return False


def test_the_periodic_sweeper_runs_every_interval(
    client: TestClient, auth: dict[str, str], rows: Rows, settings: Settings
) -> None:
    owner = owner_id(client, auth)
    fast = settings.model_copy(update={"sweep_interval_s": 0.05})
    sweeper = Sweeper(fast, rows.db, LocalStorage(settings.storage_root))
    sweeper.start()
    thread = sweeper._thread
    assert thread is not None
    try:
        first = rows.upload(owner, expired=True)
        assert _wait_gone(rows.db, first)
        second = rows.upload(owner, expired=True)
        assert _wait_gone(rows.db, second)
    finally:
        sweeper.stop()
    assert not thread.is_alive()  # stopped means stopped: nothing sweeps after it


def test_the_app_sweeps_in_the_background(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    fast = load_settings(
        data_dir=tmp_path / "fast", workers=1, min_free_disk_mb=0, sweep_interval_s=0.05
    )
    client = make_client(fast)
    headers = {"Authorization": f"Bearer {client.post('/api/v1/sessions').json()['token']}"}
    rows = Rows(fast)
    try:
        gone = rows.upload(owner_id(client, headers), expired=True)
        assert _wait_gone(rows.db, gone)
        assert _wait_absent(fast.storage_root / upload_folder(gone))
    finally:
        rows.close()
