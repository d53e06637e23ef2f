"""Orphans both ways: stored folders no row claims, rows whose stored files are gone.

Only the layout before day folders (``uploads/upl_…/``, ``jobs/job_…/``) is listed, until it
is empty; day folders are retired whole by :mod:`.days`. What needs a look inside a day folder
is listed folder by folder: a queued or running job's, for files of an earlier attempt.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from ..db import Database, Job, JobStatus, Upload, UploadStatus
from ..db.models import utcnow
from ..layout import DATED_KINDS, day_of, job_folder
from ..storage import Storage
from ..stored import referenced_folders
from .report import UNFINISHED, Tally, chunks

log = logging.getLogger(__name__)

__all__ = ["ORPHAN_GRACE", "orphans"]

ORPHAN_GRACE = timedelta(hours=1)
"""How old a file without a row must be before it counts as abandoned rather than in flight."""
RUN_CLOCK_SKEW = timedelta(minutes=1)
"""How far the store's clock and the clock that stamped a run's start may disagree."""
RECHECK = timedelta(hours=1)
"""How recently a row in a day folder must have changed for its files to be looked for."""


def _folders(storage: Storage, kind: str) -> dict[str, list[str]]:
    """Keys of the layout before day folders (``kind/<id>/…``), grouped by their id folder."""
    folders: dict[str, list[str]] = defaultdict(list)
    for key in storage.keys(kind, start=f"{DATED_KINDS[kind]}_"):
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == kind:
            folders[parts[1]].append(key)
    return folders


def orphans(
    db: Database, storage: Storage, grace: timedelta, tally: Tally, *, recheck: timedelta = RECHECK
) -> None:
    now = utcnow()
    uploads = _folders(storage, "uploads")
    jobs = _folders(storage, "jobs")
    listed = {key for keys in (*uploads.values(), *jobs.values()) for key in keys}

    claimed_uploads: set[str] = set()
    with db.session() as session:
        for batch in chunks(uploads):
            # Receiving: a resumable upload stores its file a moment before it is marked ready;
            # and a folder whose upload is gone stays while a copy of the upload refers to it.
            claimed_uploads.update(referenced_folders(session, batch))
    claimed_jobs: set[str] = set()
    stale: list[str] = []
    with db.session() as session:
        for batch in chunks(jobs):
            for job in session.scalars(select(Job).where(Job.id.in_(batch))):
                if job.status in UNFINISHED:
                    claimed_jobs.add(job.id)
                    stale.extend(_before_the_run(storage, job, jobs[job.id], grace))
                elif _live_files(job, now):
                    claimed_jobs.add(job.id)
        # A queued or running job in a day folder: only its own folder is listed.
        for job in session.scalars(select(Job).where(Job.status.in_(UNFINISHED))):
            if day_of(job.id) is not None:
                keys = list(storage.keys(job_folder(job.id)))
                stale.extend(_before_the_run(storage, job, keys, grace))
    if stale:
        tally.add("stale_files", len(stale))
        tally.add("files_deleted", storage.delete(stale))
    for kind, folders, claimed in (
        ("uploads", uploads, claimed_uploads),
        ("jobs", jobs, claimed_jobs),
    ):
        for folder_id, keys in folders.items():
            if folder_id in claimed:
                continue
            if not _old_enough(storage, keys, grace):
                tally.add("pending")
                continue
            tally.add("orphans_deleted")
            tally.add("files_deleted", storage.delete_prefix(f"{kind}/{folder_id}"))
    since = now - recheck
    _missing_upload_files(db, storage, listed, since, tally)
    _missing_result_files(db, storage, listed, now, since, tally)


def _looked_for(item_id: str, changed: datetime, since: datetime) -> bool:
    """Whether to look for a row's file: always in the layout that is listed; in a day folder
    (not listed) only when the row changed since ``since``. A file of a day folder goes only
    with its rows, or with the race of :mod:`beatsync.service.stored`, which happens as a row
    settles; a recent row is where it can show, and looking for every file would cost a
    request per file and sweep."""
    if day_of(item_id) is None:
        return True
    moment = changed if changed.tzinfo else changed.replace(tzinfo=UTC)
    return moment >= since


def _before_the_run(storage: Storage, job: Job, keys: list[str], grace: timedelta) -> list[str]:
    """The keys in the folder of the queued or running ``job`` that its run does not use: not
    among its results, written before the run began (by an earlier attempt) and older than
    ``grace``. What is younger than the run, or of unknown age, stays."""
    began = job.started_at or job.created_at
    if began.tzinfo is None:
        began = began.replace(tzinfo=UTC)
    before = min(began - RUN_CLOCK_SKEW, utcnow() - grace).timestamp()
    used = set(((job.result or {}).get("files") or {}).values())
    stale = []
    for key in keys:
        moment = _modified(storage, key)
        if key not in used and moment is not None and 0 < moment < before:  # 0: gone
            stale.append(key)
    return stale


def _live_files(job: Job, now: datetime) -> dict[str, str]:
    if job.status != JobStatus.SUCCEEDED.value or (job.expires_at and job.expires_at <= now):
        return {}
    files = (job.result or {}).get("files") or {}
    return {kind: key for kind, key in files.items() if isinstance(key, str) and key}


def _old_enough(storage: Storage, keys: list[str], grace: timedelta) -> bool:
    """Whether the newest of ``keys`` was written longer than ``grace`` ago (unknown: no)."""
    newest = 0.0
    for key in keys:
        moment = _modified(storage, key)
        if moment is None:
            return False
        newest = max(newest, moment)
    return time.time() - newest >= grace.total_seconds()


def _modified(storage: Storage, key: str) -> float | None:
    """When ``key`` was written (seconds since the epoch); 0 when it is already gone."""
    moment = storage.modified(key)
    return 0.0 if moment is None else moment.timestamp()


def _missing_upload_files(
    db: Database, storage: Storage, listed: set[str], since: datetime, tally: Tally
) -> None:
    with db.session() as session:
        rows = session.execute(
            select(Upload.id, Upload.storage_key, Upload.updated_at).where(
                Upload.status == UploadStatus.READY.value, Upload.storage_key.is_not(None)
            )
        ).all()
    for upload_id, key, changed in rows:
        assert key is not None
        if not _looked_for(key.split("/")[-2], changed, since):
            continue
        # The listing came first: a file stored since then is not in it but is there.
        if key in listed or storage.size(key) is not None:
            continue
        with db.session() as session:
            marked = session.execute(
                update(Upload)
                .where(
                    Upload.id == upload_id,
                    Upload.status == UploadStatus.READY.value,
                    Upload.storage_key == key,
                )
                .values(
                    status=UploadStatus.REJECTED.value,
                    storage_key=None,
                    error_code="FILE_NOT_FOUND",
                    error_message="the stored file is gone; upload it again",
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
        if getattr(marked, "rowcount", 0):
            tally.add("uploads_missing_file")
            log.warning("upload %s lost its stored file", upload_id)


def _missing_result_files(
    db: Database, storage: Storage, listed: set[str], now: datetime, since: datetime, tally: Tally
) -> None:
    with db.session() as session:
        ids = list(
            session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.SUCCEEDED.value,
                    or_(Job.expires_at.is_(None), Job.expires_at > now),
                )
            )
        )
    for batch in chunks(ids):
        with db.session() as session:
            for job in session.scalars(select(Job).where(Job.id.in_(batch))):
                if not _looked_for(job.id, job.updated_at, since):
                    continue
                files = _live_files(job, now)
                lost = {
                    kind
                    for kind, key in files.items()
                    if key not in listed and storage.size(key) is None
                }
                if not lost:
                    continue
                kept = {
                    k: v for k, v in (job.result or {}).get("files", {}).items() if k not in lost
                }
                job.result = {**(job.result or {}), "files": kept}
                tally.add("results_missing_file")
                log.warning(
                    "job %s lost its result files %s",
                    job.id,
                    ", ".join(sorted(lost)),
                    extra={"job_id": job.id},
                )
