"""Day folders on a real S3 server and PostgreSQL: the sweeper retires a past day's folder whole
once no row refers to it, never lists the days still in use, keeps an earlier day's object
that a later upload shares, and sweeps the layout before day folders the old way."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

import seed_rows
from beatsync.service.cleanup import sweep
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, JobStatus, Upload, migrate
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.layout import day_folder, job_folder, new_dated_id, upload_folder
from beatsync.service.storage import Storage, open_storage
from beatsync.service.stored import data_key, shared_copy
from fixtures_servers import S3Server

DAY = timedelta(days=1)


@pytest.fixture
def settings(s3: S3Server, postgres_url: str, tmp_path: Path) -> Settings:
    migrate(postgres_url)
    return load_settings(
        data_dir=tmp_path / "data", database_url=postgres_url, min_free_disk_mb=0, **s3.settings()
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database)
    yield database
    database.dispose()


class Listed:
    """Every key and folder name the store's listings answered, seen on the wire."""

    def __init__(self, storage: Storage) -> None:
        self.keys: list[str] = []
        self.folders: list[str] = []
        client: Any = storage.client  # type: ignore[attr-defined]
        client.meta.events.register("after-call.s3.ListObjectsV2", self._seen)

    def _seen(self, parsed: dict[str, Any], **_: Any) -> None:
        self.keys.extend(item["Key"] for item in parsed.get("Contents") or ())
        self.folders.extend(item["Prefix"] for item in parsed.get("CommonPrefixes") or ())

    def clear(self) -> None:
        self.keys.clear()
        self.folders.clear()


def _levels(kind: str, days: set[date]) -> set[str]:
    """The folder names a listing of the day folders of ``days`` answers."""
    return {f"{kind}/{day:{level}}/" for day in days for level in ("%Y", "%Y/%m", "%Y/%m/%d")}


def test_past_days_go_whole_unless_a_row_or_a_shared_copy_refers_to_them(
    settings: Settings, db: Database
) -> None:
    storage = open_storage(settings)
    owner = seed_rows.owner(db)
    now = utcnow()
    shared_day, empty_day, live_day = now - 3 * DAY, now - 4 * DAY, now

    # An upload of three days ago whose row has expired, and a copy of its bytes made today
    # (dedup: the copy refers to the earlier day's object, found by the service's own lookup).
    first = new_dated_id("upl", now=shared_day)
    clip = b"the same clip" * 1000
    seed_rows.upload(db, owner, clip, upload_id=first, storage=storage)
    with db.session() as session:
        found = shared_copy(session, storage, owner, hashlib.sha256(clip).hexdigest(), len(clip))
    assert found == data_key(first)
    assert found.startswith(f"{day_folder('uploads', shared_day.date())}/")
    copy = new_dated_id("upl", now=live_day)
    seed_rows.upload(db, owner, clip, upload_id=copy, key=found)
    with db.session() as session:
        session.delete(session.get(Upload, first))
    # Beside it that day, an object no row claims (a crash between a row and its file).
    stray = new_dated_id("upl", now=shared_day)
    seed_rows.put(storage, data_key(stray), b"stray")
    # Four days ago: an upload and a job whose rows are gone, their files left behind.
    gone_upload = new_dated_id("upl", now=empty_day)
    seed_rows.put(storage, data_key(gone_upload), b"gone upload")
    gone_job = job_folder(new_dated_id("job", now=empty_day))
    for name in ("output.mp4", "report.json"):
        seed_rows.put(storage, f"{gone_job}/{name}", b"gone result")
    # Three days ago: a failed job whose row is still there (it may be retried into its folder).
    failed = new_dated_id("job", now=shared_day)
    seed_rows.job(
        db,
        owner,
        job_id=failed,
        dance_upload_id=copy,
        bgm_upload_id=copy,
        status=JobStatus.FAILED.value,
    )
    seed_rows.put(storage, f"{job_folder(failed)}/report.json", b"{}")
    # Today: many objects of live uploads, which no sweep may list.
    live = [new_dated_id("upl", now=live_day) for _ in range(40)]
    for upload_id in live:
        seed_rows.upload(db, owner, upload_id.encode(), upload_id=upload_id, storage=storage)
    # The layout before day folders: a live upload and an orphan, swept by listing them.
    legacy, legacy_orphan = new_id("upl"), new_id("upl")
    assert upload_folder(legacy) == f"uploads/{legacy}"
    seed_rows.upload(db, owner, b"legacy", upload_id=legacy, storage=storage)
    seed_rows.put(storage, data_key(legacy_orphan), b"legacy orphan")

    listed = Listed(storage)
    report = sweep(settings, db, storage, grace=timedelta(0))
    seen, folders = sorted(listed.keys), list(listed.folders)

    assert report.errors == ()
    assert (report.days_deleted, report.days_kept, report.orphans_deleted) == (2, 2, 1)
    assert report.files_deleted == 1 + 2 + 1  # the empty day's upload and job, the legacy orphan
    remaining = set(storage.keys())
    assert remaining == {
        data_key(first),  # shared: today's copy refers to it
        data_key(stray),  # in a day still referred to: goes with the day
        f"{job_folder(failed)}/report.json",
        data_key(legacy),
        *(data_key(upload_id) for upload_id in live),
    }
    # Listed: the legacy layout (the orphan once more as it is deleted) and the day deleted,
    # besides folder names; nothing of a day still in use.
    assert seen == sorted(
        [
            data_key(legacy),
            data_key(legacy_orphan),
            data_key(legacy_orphan),
            data_key(gone_upload),
            f"{gone_job}/output.mp4",
            f"{gone_job}/report.json",
        ]
    )
    # Folder names: the years, months and days (each once), and the legacy folder.
    assert sorted(folders) == sorted(
        [
            *_levels("uploads", {empty_day.date(), shared_day.date(), live_day.date()}),
            *_levels("jobs", {empty_day.date(), shared_day.date()}),
            f"{upload_folder(legacy)}/",  # its orphan's went with its file, before
        ]
    )

    # The copy expires: its row goes and the shared object with it; the stray goes with its day
    # at the next sweep, now that nothing refers to the day.
    with db.session() as session:
        row = session.get(Upload, copy)
        assert row is not None
        row.expires_at = now - timedelta(minutes=1)
        session.delete(session.get(Job, failed))
    listed.clear()
    report = sweep(settings, db, storage, grace=timedelta(0))
    seen = sorted(listed.keys)
    assert report.errors == ()
    assert (report.uploads_expired, report.days_deleted, report.days_kept) == (1, 2, 0)
    assert set(storage.keys()) == {data_key(legacy), *(data_key(u) for u in live)}
    assert seen == sorted(
        [
            data_key(legacy),
            data_key(stray),
            f"{job_folder(failed)}/report.json",
            # release_files lists the shared object's own folder as it deletes it
            data_key(first),
        ]
    )


def test_a_day_is_not_considered_until_a_day_after_it_ended(
    settings: Settings, db: Database
) -> None:
    storage = open_storage(settings)
    yesterday = new_dated_id("upl", now=utcnow() - DAY)
    seed_rows.put(storage, data_key(yesterday), b"an upload whose row is not written yet")

    report = sweep(settings, db, storage, grace=timedelta(0))
    assert (report.days_deleted, report.days_kept, report.errors) == (0, 0, ())
    assert storage.size(data_key(yesterday)) is not None

    report = sweep(settings, db, storage, grace=timedelta(0), day_grace=timedelta(0))
    assert (report.days_deleted, report.files_deleted) == (1, 1)
    assert storage.size(data_key(yesterday)) is None
