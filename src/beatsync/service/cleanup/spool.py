"""The spool: parts of no live resumable upload, and work folders of runs that are not the
running attempt of their job."""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, select

from ..config import Settings
from ..db import Database, Job, JobStatus, Upload, UploadStatus
from ..db.models import utcnow
from ..storage import LocalStorage, Storage
from .orphans import RUN_CLOCK_SKEW
from .report import Tally, chunks

__all__ = ["spool"]

_UPLOAD_PART = re.compile(r"upl_[A-Za-z0-9_-]{1,64}\.part")
_JOB_ID = re.compile(r"job_[A-Za-z0-9_-]{1,64}")


def spool(
    db: Database, settings: Settings, storage: Storage, grace: timedelta, tally: Tally
) -> None:
    root = settings.spool_root
    cutoff = time.time() - grace.total_seconds()
    if root.is_dir():
        _spool_parts(db, root, cutoff, tally)
        _work_folders(db, root / "work", cutoff, tally)
    if isinstance(storage, LocalStorage):
        # A copy into place that a crash interrupted (LocalStorage.put_file across disks).
        for temp in storage.root.rglob(".put-*"):
            if _mtime(temp) < cutoff:
                temp.unlink(missing_ok=True)
                tally.add("spool_files")


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: nothing to remove


def _spool_parts(db: Database, root: Path, cutoff: float, tally: Tally) -> None:
    # Only what the upload paths write: the spool may share its folder with other things.
    files = [
        p
        for p in root.glob("upl_*.part")
        if _UPLOAD_PART.fullmatch(p.name) and p.is_file() and _mtime(p) < cutoff
    ]
    if not files:
        return
    now = utcnow()
    ids = [p.name.removesuffix(".part") for p in files]
    live: set[str] = set()
    with db.session() as session:
        for batch in chunks(ids):
            live.update(
                session.scalars(
                    select(Upload.id).where(
                        Upload.id.in_(batch),
                        and_(
                            Upload.status == UploadStatus.RECEIVING.value,
                            Upload.expires_at > now,
                        ),
                    )
                )
            )
    for path in files:
        # A multipart upload's part has no row until it is stored; its writes keep it young.
        if path.name.removesuffix(".part") in live:
            continue
        path.unlink(missing_ok=True)
        tally.add("spool_files")


def _work_folders(db: Database, work: Path, cutoff: float, tally: Tally) -> None:
    if not work.is_dir():
        return
    folders = [
        p for p in work.iterdir() if _JOB_ID.fullmatch(p.name) and p.is_dir() and _mtime(p) < cutoff
    ]
    if not folders:
        return
    running: dict[str, datetime] = {}
    with db.session() as session:
        for batch in chunks(p.name for p in folders):
            for job_id, started, created in session.execute(
                select(Job.id, Job.started_at, Job.created_at).where(
                    Job.id.in_(batch), Job.status == JobStatus.RUNNING.value
                )
            ):
                running[job_id] = started or created
    for folder in folders:
        # A run makes its folder afresh when it begins: one older than the running attempt
        # is an earlier attempt's, left on this host when the job moved to another.
        began = running.get(folder.name)
        if began is not None and _mtime(folder) >= _timestamp(began - RUN_CLOCK_SKEW):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        tally.add("work_folders")
