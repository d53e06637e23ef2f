"""What a Celery worker does with one message: a job id in, the job run by one worker at a time.

A message is a hint and the row is the truth, so any message may be a duplicate or a
redelivery. :meth:`JobDelivery.deliver` reads the row first:

    no row, or finished      acknowledged and ignored (a redelivery, a resend, a deleted job)
    queued                   claimed (a conditional UPDATE: of two deliveries one wins) and run
    running, here before     this very process held it and its try ended on a transient fault
                             (the task is being retried): run again, same attempt
    running, holder gone     a dead process on this host, or a heartbeat older than
                             STALE_AFTER_S: requeued and claimed for another attempt, or failed
                             WORKER_LOST once it had ``job_max_attempts`` (:mod:`.recovery`)
    running, holder alive    ignored; if that worker dies, its heartbeat goes stale and the
                             API's watch (:mod:`.celery_dispatch`) sends the job again

While a job runs, a heartbeat thread writes ``heartbeat_at`` every HEARTBEAT_S (what other hosts
judge liveness by) and asks the run to stop when the row no longer names this process
(canceled, deleted, or given to another worker). In the pool process, for the duration of a
job, SIGTERM (a cancel: Celery's terminate) asks the run to stop and SIGUSR1 (Celery's soft time
limit) asks it to fail ``TIMEOUT``; like the embedded runner's signals, both take effect at the
run's next progress report. A run that has not stopped STOP_GRACE_S after being asked ends its
process (the pool starts another). Celery's hard time limit kills the process; the worker's
main process then fails the row ``TIMEOUT`` (:meth:`JobDelivery.hard_time_limit`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from types import FrameType, TracebackType
from typing import cast

from sqlalchemy import Table, select, update

from beatsync.engine.memory import tune_allocator
from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus, job_database
from beatsync.service.db.models import utcnow
from beatsync.service.layout import job_folder
from beatsync.service.storage import Storage, open_storage

from .recovery import release_if_lost
from .run import JobInterrupted, JobTimeLimit, claim_job, fail_job, run_job, worker_name

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "STOP_GRACE_S", "JobDelivery"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
"""How often a running job's row is touched, whatever the engine is doing."""
STALE_AFTER_S = 30.0
"""A running job whose heartbeat is older than this has lost its worker."""
STOP_GRACE_S = 10.0
"""How long a run asked to stop may take before its process is ended."""

_JOBS = cast(Table, Job.__table__)


class JobDelivery:
    """Runs the jobs that messages name, with a database and a storage per process.

    The worker's main process and each pool process (forked from it) use their own connections,
    made on first use in that process; a pool process caps its memory before its first job.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid = 0
        self._db: Database | None = None
        self._storage: Storage | None = None
        self._limited_pid = 0

    def resources(self) -> tuple[Database, Storage]:
        """This process's database and storage."""
        if self._pid != os.getpid() or self._db is None or self._storage is None:
            if self._db is not None:
                # Inherited from the parent, which still uses these sockets: drop, never close.
                self._db.engine.dispose(close=False)
            self._db = job_database(
                self.settings.database, prepared_statements=self.settings.db_prepared_statements
            )
            self._storage = open_storage(self.settings)
            self._pid = os.getpid()
        return self._db, self._storage

    def close(self) -> None:
        """Close this process's connections (a worker's processes just exit)."""
        if self._db is not None and self._pid == os.getpid():
            self._db.dispose()
        self._db, self._storage, self._pid = None, None, 0

    def deliver(self, job_id: str) -> str:
        """Run the job the message names if it is this worker's to run; its status after."""
        if self._limited_pid != os.getpid():
            from .child import limit_memory

            limit_memory(self.settings.job_memory_limit_mb)
            tune_allocator()
            self._limited_pid = os.getpid()
        stop = _StopRequest()
        # From the start: Celery's soft time limit (or a cancel) may come before the run does.
        with _stop_signals(stop):
            db, storage = self.resources()
            me = worker_name()
            status = self._take(db, job_id, me)
            if status is not None:
                return status
            with _Heartbeat(db, job_id, me, stop):
                try:
                    status = run_job(
                        job_id,
                        settings=self.settings,
                        db=db,
                        storage=storage,
                        stop_requested=stop.requested,
                        holder=me,
                    )
                except JobTimeLimit:
                    # Raised while the run was finishing, outside its own handling: fail it.
                    limit = self.settings.job_soft_time_limit_s
                    detail = f"the job ran longer than {limit:g} s"
                    fail_job(db, job_id, "TIMEOUT", detail, holder=me)
                    status = _status(db, job_id)
                except JobInterrupted:
                    status = _status(db, job_id)
        if status not in (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value):
            log.info("job %s stopped: it is %s", job_id, status, extra={"job_id": job_id})
        return status

    def hard_time_limit(self, job_id: str) -> None:
        """The pool process running ``job_id`` was killed at the hard time limit: fail the job
        ``TIMEOUT`` and remove what it stored (in the worker's main process)."""
        db, storage = self.resources()
        limit = self.settings.job_time_limit_s
        if fail_job(db, job_id, "TIMEOUT", f"the job ran longer than {limit:g} s"):
            try:
                storage.delete_prefix(job_folder(job_id))
            except Exception:
                log.warning(
                    "job %s: could not remove its stored files",
                    job_id,
                    exc_info=True,
                    extra={"job_id": job_id},
                )

    def _take(self, db: Database, job_id: str, me: str) -> str | None:
        """None when this process now holds the job, else the status to answer with."""
        extra = {"job_id": job_id}
        with db.engine.connect() as conn:
            row = conn.execute(
                select(
                    _JOBS.c.status, _JOBS.c.worker, _JOBS.c.started_at, _JOBS.c.heartbeat_at
                ).where(_JOBS.c.id == job_id)
            ).first()
        if row is None:
            log.info("job %s: no such job, message ignored", job_id, extra=extra)
            return JobStatus.CANCELED.value
        status = str(row.status)
        if JobStatus(status).finished:
            log.info("job %s is %s already, message ignored", job_id, status, extra=extra)
            return status
        if status == JobStatus.RUNNING.value:
            if row.worker == me:
                log.info("job %s: its run in this process ended early, again", job_id, extra=extra)
                return None
            released = release_if_lost(
                db,
                job_id,
                worker=row.worker,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                stale_before=utcnow() - timedelta(seconds=STALE_AFTER_S),
                max_attempts=self.settings.job_max_attempts,
            )
            if released != JobStatus.QUEUED.value:
                if released is None:
                    log.info("job %s runs on %s, message ignored", job_id, row.worker, extra=extra)
                return _status(db, job_id)
        if not claim_job(db, job_id, me):
            return _status(db, job_id)
        return None


def _status(db: Database, job_id: str) -> str:
    with db.engine.connect() as conn:
        status = conn.execute(select(_JOBS.c.status).where(_JOBS.c.id == job_id)).scalar()
    return str(status) if status is not None else JobStatus.CANCELED.value


class _StopRequest:
    """What the run is asked to raise at its next progress report, and since when it was asked
    to stop. A stop outranks the soft time limit, which the hard limit backs up by itself."""

    def __init__(self) -> None:
        self.kind: type[BaseException] | None = None
        self.stop_asked_at: float | None = None

    def ask(self, kind: type[BaseException]) -> None:
        if kind is JobInterrupted:
            self.kind = JobInterrupted
            if self.stop_asked_at is None:
                self.stop_asked_at = time.monotonic()
        elif self.kind is None:
            self.kind = kind

    def requested(self) -> BaseException | None:
        return None if self.kind is None else self.kind()


class _Heartbeat:
    """A thread that touches the row while the job runs, and notices when it is not ours."""

    def __init__(self, db: Database, job_id: str, holder: str, stop: _StopRequest) -> None:
        self.db, self.job_id, self.holder, self.stop = db, job_id, holder, stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        extra = {"job_id": self.job_id}
        while not self._done.wait(HEARTBEAT_S):
            asked = self.stop.stop_asked_at
            if asked is not None and time.monotonic() - asked > STOP_GRACE_S:
                log.warning(
                    "job %s: the run did not stop within %g s; ending its process",
                    self.job_id,
                    STOP_GRACE_S,
                    extra=extra,
                )
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                with self.db.engine.begin() as conn:
                    beat = conn.execute(
                        update(_JOBS)
                        .where(
                            _JOBS.c.id == self.job_id,
                            _JOBS.c.status == JobStatus.RUNNING.value,
                            _JOBS.c.worker == self.holder,
                        )
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # the database is away for a moment; the run finds out too
                log.warning(
                    "job %s: heartbeat not written", self.job_id, exc_info=True, extra=extra
                )
                continue
            if beat.rowcount != 1 and not self._done.is_set():
                log.info("job %s is no longer this worker's: stopping", self.job_id, extra=extra)
                self.stop.ask(JobInterrupted)


@contextlib.contextmanager
def _stop_signals(stop: _StopRequest) -> Iterator[None]:
    """SIGTERM and SIGUSR1 ask the run to stop, while it runs (handlers need the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process
        stop.ask(JobInterrupted)

    def soft_time_limit(signum: int, frame: FrameType | None) -> None:
        stop.ask(JobTimeLimit)

    before = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, terminate),
        signal.SIGUSR1: signal.signal(signal.SIGUSR1, soft_time_limit),
    }
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
