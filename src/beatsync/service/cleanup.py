"""The sweeper: what has expired or was abandoned leaves the storage, the spool and the database.

One :func:`sweep`, in this order::

    expired uploads      rows past ``expires_at`` that no queued or running job uses: row,
                         stored file and spool part deleted (a used one waits for its job)
    expired partials     resumable uploads still receiving past their tus expiry: row and
                         spool part deleted
    expired results      a succeeded job past ``expires_at``: its files deleted; the row stays
                         (its mapping, confidence and cut remain readable) with ``result.files``
                         emptied and the message ``results expired``, so its JSON links nothing
    expired jobs         a finished job's row ``job_row_ttl_h`` after it ended (and not before
                         its results expired), with whatever files it still has; the metrics
                         keep it, in the totals each job added to ``metric_samples`` as it ended
    orphans              storage folders (``uploads/<id>/``, ``jobs/<id>/``) that no row claims:
                         deleted once their newest file is older than the grace period, so a
                         file stored a moment before its row is written is never raced
    missing files        the reverse: a ready upload whose file is gone becomes ``rejected``
                         (``FILE_NOT_FOUND``); a succeeded job forgets the result files it lost
    work folders         ``<spool>/work/<job id>`` of runs that are no longer running
    stale spool files    parts of no live resumable upload, older than the grace period

Every deletion is conditional on the state that justified it (``DELETE … WHERE expires_at <=
now AND …``), so a sweep racing a request changes nothing the request relies on. A row is always
removed before its files: a crash between the two leaves an orphan the next sweep removes, never
a row pointing at nothing.

The periodic :class:`Sweeper` runs in every API process. One sweep runs at a time across
processes and replicas: a PostgreSQL transaction-level advisory lock when the database is
PostgreSQL (replicas share it; it works through PgBouncer's transaction mode), otherwise an
``flock`` on ``<data_dir>/sweep.lock`` (SQLite lives on one host, so its API and ``beatsync
cleanup`` share that folder). A sweep that finds the lock taken is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, text, update

from .config import Settings
from .db import Database, Job, JobStatus, Upload, UploadStatus
from .db.models import utcnow
from .storage import LocalStorage, Storage
from .stored import referenced_folders, release_files
from .uploads import spool_path

try:  # POSIX; elsewhere only the in-process lock keeps two sweeps apart
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ORPHAN_GRACE",
    "RESULTS_EXPIRED",
    "SWEEP_LOCK_KEY",
    "SweepReport",
    "Sweeper",
    "sweep",
    "sweep_lock",
]

log = logging.getLogger(__name__)

ORPHAN_GRACE = timedelta(hours=1)
"""How old a file without a row must be before it counts as abandoned rather than in flight."""

RESULTS_EXPIRED = "results expired"
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
SWEEP_LOCK_KEY = int.from_bytes(b"beatsync", "big")  # the advisory lock's bigint
_BATCH = 500  # ids per IN (…) query
_UPLOAD_PART = re.compile(r"upl_[A-Za-z0-9_-]{1,64}\.part")
_JOB_ID = re.compile(r"job_[A-Za-z0-9_-]{1,64}")
_in_process = threading.Lock()
_EXPIRE_BATCH = 500  # job rows deleted per transaction


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did. ``pending`` counts orphans left for a later sweep (too young, or
    a store that cannot tell a file's age); ``errors`` the steps that could not finish."""

    uploads_expired: int = 0
    uploads_in_use: int = 0
    partials_expired: int = 0
    results_expired: int = 0
    jobs_expired: int = 0
    orphans_deleted: int = 0
    files_deleted: int = 0
    uploads_missing_file: int = 0
    results_missing_file: int = 0
    work_folders: int = 0
    spool_files: int = 0
    pending: int = 0
    errors: tuple[str, ...] = ()
    skipped: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = list(self.errors)
        return data

    @property
    def changed(self) -> int:
        """How many things the sweep removed or corrected."""
        return (
            self.uploads_expired
            + self.partials_expired
            + self.results_expired
            + self.jobs_expired
            + self.orphans_deleted
            + self.uploads_missing_file
            + self.results_missing_file
            + self.work_folders
            + self.spool_files
        )


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount


@contextlib.contextmanager
def sweep_lock(settings: Settings, db: Database) -> Iterator[bool]:
    """Hold the sweep lock while the block runs; yields False when another sweep holds it."""
    if not _in_process.acquire(blocking=False):
        yield False
        return
    try:
        if db.engine.dialect.name == "postgresql":
            with _advisory_lock(db) as held:
                yield held
        else:
            with _file_lock(settings.data_dir / "sweep.lock") as held:
                yield held
    finally:
        _in_process.release()


@contextlib.contextmanager
def _advisory_lock(db: Database) -> Iterator[bool]:
    # A transaction-level lock in a transaction of its own, open while the sweep runs: released
    # when it ends, and by the server when this process dies with the connection. Through
    # PgBouncer in transaction mode the open transaction keeps one server connection for it; a
    # session-level lock would stay behind on whichever server connection took it.
    with db.engine.begin() as conn:
        key = {"key": SWEEP_LOCK_KEY}
        yield bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), key).scalar())


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        if fcntl is None:  # pragma: no cover
            yield True
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the file releases the lock


def sweep(
    settings: Settings,
    db: Database,
    storage: Storage,
    *,
    grace: timedelta = ORPHAN_GRACE,
) -> SweepReport:
    """One cleanup pass (see the module docstring); skipped when another sweep is running."""
    began = time.monotonic()
    with sweep_lock(settings, db) as held:
        if not held:
            log.info("cleanup skipped: another sweep is running")
            return SweepReport(skipped=True)
        tally = _Tally()
        steps: tuple[tuple[str, Callable[[], None]], ...] = (
            ("expired uploads", lambda: _expired_uploads(db, storage, settings, tally)),
            ("expired partials", lambda: _expired_partials(db, storage, settings, tally)),
            ("expired results", lambda: _expired_results(db, storage, tally)),
            ("expired jobs", lambda: _expired_jobs(db, storage, settings, tally)),
            ("orphans", lambda: _orphans(db, storage, grace, tally)),
            ("spool", lambda: _spool(db, settings, storage, grace, tally)),
        )
        for name, step in steps:
            try:
                step()
            except Exception as exc:
                log.warning("cleanup: %s: %s", name, exc, exc_info=True)
                tally.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    report = SweepReport(
        **tally.counts,  # type: ignore[arg-type]  # every name is an int field
        errors=tuple(tally.errors),
        seconds=round(time.monotonic() - began, 3),
    )
    if report.changed or report.errors:
        log.info("cleanup: %s", report.as_dict(), extra={"cleanup": report.as_dict()})
    return report


# --- expiry ----------------------------------------------------------------------------------


def _in_use() -> Any:
    """Whether a queued or running job reads the upload of the enclosing statement."""
    return exists().where(
        Job.status.in_(_UNFINISHED),
        or_(Job.dance_upload_id == Upload.id, Job.bgm_upload_id == Upload.id),
    )


def _expired_uploads(db: Database, storage: Storage, settings: Settings, tally: _Tally) -> None:
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


def _expired_partials(db: Database, storage: Storage, settings: Settings, tally: _Tally) -> None:
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
    tally: _Tally,
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


def _expired_results(db: Database, storage: Storage, tally: _Tally) -> None:
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
        tally.add("files_deleted", storage.delete_prefix(f"jobs/{job_id}"))


def _expired_jobs(db: Database, storage: Storage, settings: Settings, tally: _Tally) -> None:
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
            tally.add("files_deleted", storage.delete_prefix(f"jobs/{job_id}"))
        if len(ids) < _EXPIRE_BATCH:
            return


# --- orphans, both ways ----------------------------------------------------------------------


def _folders(storage: Storage, kind: str) -> dict[str, list[str]]:
    """Keys under ``kind/`` grouped by the id folder they sit in."""
    folders: dict[str, list[str]] = defaultdict(list)
    for key in storage.keys(kind):
        parts = key.split("/")
        if len(parts) >= 3 and parts[0] == kind:
            folders[parts[1]].append(key)
    return folders


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in ids:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _orphans(db: Database, storage: Storage, grace: timedelta, tally: _Tally) -> None:
    now = utcnow()
    uploads = _folders(storage, "uploads")
    jobs = _folders(storage, "jobs")
    listed = {key for keys in (*uploads.values(), *jobs.values()) for key in keys}

    claimed_uploads: set[str] = set()
    with db.session() as session:
        for batch in _chunks(uploads):
            # Receiving: a resumable upload stores its file a moment before it is marked ready;
            # and a folder whose upload is gone stays while a copy of the upload refers to it.
            claimed_uploads.update(referenced_folders(session, batch))
    claimed_jobs: set[str] = set()
    with db.session() as session:
        for batch in _chunks(jobs):
            for job in session.scalars(select(Job).where(Job.id.in_(batch))):
                if job.status in _UNFINISHED or _live_files(job, now):
                    claimed_jobs.add(job.id)
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
    _missing_upload_files(db, storage, listed, tally)
    _missing_result_files(db, storage, listed, now, tally)


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


def _missing_upload_files(db: Database, storage: Storage, listed: set[str], tally: _Tally) -> None:
    with db.session() as session:
        rows = session.execute(
            select(Upload.id, Upload.storage_key).where(
                Upload.status == UploadStatus.READY.value, Upload.storage_key.is_not(None)
            )
        ).all()
    for upload_id, key in rows:
        assert key is not None
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
    db: Database, storage: Storage, listed: set[str], now: datetime, tally: _Tally
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
    for batch in _chunks(ids):
        with db.session() as session:
            for job in session.scalars(select(Job).where(Job.id.in_(batch))):
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


# --- the spool -------------------------------------------------------------------------------


def _spool(
    db: Database, settings: Settings, storage: Storage, grace: timedelta, tally: _Tally
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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: nothing to remove


def _spool_parts(db: Database, root: Path, cutoff: float, tally: _Tally) -> None:
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
        for batch in _chunks(ids):
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


def _work_folders(db: Database, work: Path, cutoff: float, tally: _Tally) -> None:
    if not work.is_dir():
        return
    folders = [
        p for p in work.iterdir() if _JOB_ID.fullmatch(p.name) and p.is_dir() and _mtime(p) < cutoff
    ]
    if not folders:
        return
    running: set[str] = set()
    with db.session() as session:
        for batch in _chunks(p.name for p in folders):
            running.update(
                session.scalars(
                    select(Job.id).where(Job.id.in_(batch), Job.status == JobStatus.RUNNING.value)
                )
            )
    for folder in folders:
        if folder.name in running:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        tally.add("work_folders")


# --- the periodic sweeper --------------------------------------------------------------------


class Sweeper:
    """Sweeps every ``settings.sweep_interval_s`` in a background thread of the API process.

    The first sweep comes one interval after :meth:`start`, not at once: a restarting server
    has better things to do, and the sweep's lock makes the timing of replicas irrelevant.
    """

    def __init__(self, settings: Settings, db: Database, storage: Storage) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="beatsync-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop; a sweep under way is finished first (each step is short and conditional)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                sweep(self.settings, self.db, self.storage)
            except Exception:
                log.exception("cleanup failed")
