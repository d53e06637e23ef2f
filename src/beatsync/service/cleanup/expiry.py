"""Expiry: uploads, partial uploads, results and job rows past their time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, exists, func, or_, select

from ..config import Settings
from ..db import Database, Job, JobStatus, Upload, UploadStatus
from ..db.models import utcnow
from ..layout import job_folder
from ..storage import Storage
from ..stored import release_files
from ..uploads import spool_path
from .report import UNFINISHED, Tally

__all__ = [
    "RESULTS_EXPIRED",
    "expired_jobs",
    "expired_partials",
    "expired_results",
    "expired_uploads",
]

RESULTS_EXPIRED = "results expired"
_EXPIRE_BATCH = 500  # job rows deleted per transaction


def _in_use() -> Any:
    """Whether a queued or running job reads the upload of the enclosing statement."""
    return exists().where(
        Job.status.in_(UNFINISHED),
        or_(Job.dance_upload_id == Upload.id, Job.bgm_upload_id == Upload.id),
    )


def expired_uploads(db: Database, storage: Storage, settings: Settings, tally: Tally) -> None:
    now = utcnow()
    done = Upload.status != UploadStatus.RECEIVING.value
    with db.session() as session:
        ids = list(session.scalars(select(Upload.id).where(Upload.expires_at <= now, done)))
    for upload_id in ids:
        with db.session() as session:
            key = session.scalar(select(Upload.storage_key).where(Upload.id == upload_id))
            # An expired upload cannot gain a job (creation and retry refuse it), only lose one.
            gone = session.execute(
                delete(Upload)
                .where(Upload.id == upload_id, Upload.expires_at <= now, done, ~_in_use())
                .execution_options(synchronize_session=False)
            )
        if not getattr(gone, "rowcount", 0):
            tally.add("uploads_in_use")
            continue
        tally.add("uploads_expired")
        _drop_upload_files(db, storage, settings, upload_id, tally, key=key)


def expired_partials(db: Database, storage: Storage, settings: Settings, tally: Tally) -> None:
    now = utcnow()
    receiving = Upload.status == UploadStatus.RECEIVING.value
    with db.session() as session:
        ids = list(session.scalars(select(Upload.id).where(Upload.expires_at <= now, receiving)))
    for upload_id in ids:
        with db.session() as session:
            # An append extends the expiry first, so a client still sending keeps its upload.
            gone = session.execute(
                delete(Upload)
                .where(Upload.id == upload_id, Upload.expires_at <= now, receiving)
                .execution_options(synchronize_session=False)
            )
        if getattr(gone, "rowcount", 0):
            tally.add("partials_expired")
            _drop_upload_files(db, storage, settings, upload_id, tally, key=None)


def _drop_upload_files(
    db: Database,
    storage: Storage,
    settings: Settings,
    upload_id: str,
    tally: Tally,
    *,
    key: str | None,
) -> None:
    # Its stored object may be shared with another upload of the owner: it stays for that one.
    with db.session() as session:
        tally.add("files_deleted", release_files(session, storage, upload_id, key))
    part = spool_path(settings, upload_id)
    if part.exists():
        part.unlink(missing_ok=True)
        tally.add("spool_files")


def expired_results(db: Database, storage: Storage, tally: Tally) -> None:
    now = utcnow()
    with db.session() as session:
        # The message marks the rows already done, so each sweep reads only the new ones.
        ids = list(
            session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.SUCCEEDED.value,
                    Job.expires_at <= now,
                    Job.message.is_distinct_from(RESULTS_EXPIRED),
                )
            )
        )
    for job_id in ids:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job is None or job.expires_at is None or job.expires_at > now:
                continue
            job.result = {**(job.result or {}), "files": {}}
            job.message = RESULTS_EXPIRED
        tally.add("results_expired")
        tally.add("files_deleted", storage.delete_prefix(job_folder(job_id)))


def expired_jobs(db: Database, storage: Storage, settings: Settings, tally: Tally) -> None:
    now = utcnow()
    expired = (
        Job.status.in_([s.value for s in JobStatus if s.finished]),
        func.coalesce(Job.finished_at, Job.updated_at)
        <= now - timedelta(hours=settings.job_row_ttl_h),
        or_(Job.expires_at.is_(None), Job.expires_at <= now),
    )
    while True:
        with db.session() as session:
            ids = list(session.scalars(select(Job.id).where(*expired).limit(_EXPIRE_BATCH)))
            if ids:
                gone = session.execute(delete(Job).where(Job.id.in_(ids), *expired))
        if not ids:
            return
        tally.add("jobs_expired", gone.rowcount)  # type: ignore[attr-defined]
        for job_id in ids:  # the row first: a crash now leaves orphans, not dangling rows
            tally.add("files_deleted", storage.delete_prefix(job_folder(job_id)))
        if len(ids) < _EXPIRE_BATCH:
            return
