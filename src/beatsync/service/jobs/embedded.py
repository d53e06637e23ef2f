"""The embedded job runner: worker processes inside ``beatsync serve``, fed from the job table.

A supervisor thread in the API process takes queued jobs (oldest first) with a conditional
claim, so two runners never take the same job, and runs each in a child process, at most
``settings.workers`` at a time. Children come from a fork server that has the engine, SciPy and
Matplotlib imported already, so a child starts in milliseconds without inheriting the API's
threads, sockets or database connections.

Each child (:mod:`.child`) limits its own memory (``RLIMIT_DATA``, see :func:`limit_memory`),
asks itself to stop at the soft time limit (on ``SIGALRM`` the run raises
:class:`~.run.JobTimeLimit` at its next progress report) and stops itself when the API process
is gone. The supervisor kills a child at the hard time limit (``TIMEOUT``; both limits move later
by the time the job waited for storage), when its job is canceled (``SIGTERM``, then ``SIGKILL``
2 s later), and on :meth:`EmbeddedRunner.stop`, which leaves the rows ``running`` for recovery
at the next start. A child that dies on its own leaves its row ``running``: the
job is requeued once, then fails ``WORKER_LOST`` (:mod:`.recovery`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import shutil
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from typing import cast

from sqlalchemy import Table, select, update

from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus
from beatsync.service.db.models import utcnow
from beatsync.service.layout import job_folder
from beatsync.service.metrics import record_job_end
from beatsync.service.storage import Storage

from .child import KILL_GRACE_S as _KILL_GRACE_S
from .child import PRELOAD, JobTarget, child_main, describe_exit, limit_memory, run_in_child
from .dispatch import DispatchUnavailable
from .liveness import STALE_S, Liveness
from .recovery import recover_orphans, requeue_or_lose
from .run import (
    claim_job,
    fail_job,
    worker_name,
)
from .scratch import sweep_scratch

__all__ = ["PRELOAD", "EmbeddedRunner", "JobTarget", "limit_memory"]

log = logging.getLogger(__name__)

_JOBS = cast(Table, Job.__table__)
_POLL_S = 0.5  # how often the table is read for jobs queued or canceled by other processes


@dataclass
class _Child:
    job_id: str
    process: BaseProcess
    started: float  # time.monotonic() at start
    waited: Synchronized[float]  # seconds the job waited for storage, written by the child
    reason: str | None = None  # why we stop it: cancel | timeout | stop
    termed_at: float | None = None


class EmbeddedRunner:
    """Runs queued jobs in child processes of this one (the :class:`Dispatcher` of the embedded
    mode). ``target`` replaces what a child runs (a seam for tests that need a child to
    misbehave); it must be a module-level function."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        storage: Storage,
        *,
        target: JobTarget | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.target: JobTarget = target or run_in_child
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(list(PRELOAD))
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._children: dict[str, _Child] = {}
        self._cancels: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_round = 0.0  # time.monotonic() of the supervisor's last round: its heartbeat
        self._is_idle = False
        # Children hold the reading end; it reaches end of file when this process is gone.
        self._lifeline, self._lifeline_w = self._context.Pipe(duplex=False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    # -- the Dispatcher protocol -----------------------------------------------------------

    def start(self) -> None:
        """Recover the jobs a crash left running, sweep the scratch their runs left, then
        start the supervisor thread (the API's sweeper sweeps scratch from then on)."""
        if self._thread is not None and self._thread.is_alive():
            return
        for job_id, status in recover_orphans(
            self.db, max_attempts=self.settings.job_max_attempts
        ).items():
            shutil.rmtree(self.settings.spool_root / "work" / job_id, ignore_errors=True)
            log.info("job %s recovered: %s", job_id, status, extra={"job_id": job_id})
        sweep_scratch(self.settings, self.db)  # what runs killed with an earlier server left
        self._stopping.clear()
        self._last_round = time.monotonic()
        self._thread = threading.Thread(target=self._supervise, name="beatsync-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking jobs and kill the running children; their rows stay ``running``."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for child in self._children.values():
                self._terminate(child, "stop")
            deadline = time.monotonic() + _KILL_GRACE_S
            for child in self._children.values():
                child.process.join(max(0.0, deadline - time.monotonic()))
                if child.process.exitcode is None:
                    child.process.kill()
                    child.process.join()
            for child in list(self._children.values()):
                exitcode = child.process.exitcode or 0
                self._forget(child)
                if child.reason == "stop":
                    log.info(
                        "job %s left running for recovery (runner stopped)",
                        child.job_id,
                        extra={"job_id": child.job_id},
                    )
                else:
                    self._after(child, exitcode)

    def submit(self, job_id: str) -> None:
        self._wake()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancels.add(job_id)
        self._wake()

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise DispatchUnavailable("the job runner is not running")

    def workers(self) -> Liveness:
        """The pool's processes while its supervisor goes round (its rounds are its heartbeat)."""
        age = time.monotonic() - self._last_round
        if self._thread is None or not self._thread.is_alive() or age >= STALE_S:
            return Liveness(0, None)
        return Liveness(self.settings.workers, age)

    # -- for tests and tools ---------------------------------------------------------------

    def run_until_empty(self, timeout: float) -> None:
        """Run (or, with the supervisor started, wait for) jobs until none is queued and no
        child is running. Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        supervised = self._thread is not None and self._thread.is_alive()
        if supervised:
            with self._idle:
                self._is_idle = False
                self._wake()
                while not self._is_idle:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"jobs still running after {timeout:g} s")
                    self._idle.wait(left)
            return
        while not self._tick():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"jobs still running after {timeout:g} s")
            self._wait(min(left, _POLL_S))

    def running(self) -> dict[str, int]:
        """Job id → pid of the child running it."""
        with self._lock:
            return {
                job_id: child.process.pid
                for job_id, child in self._children.items()
                if child.process.pid is not None
            }

    # -- the supervisor --------------------------------------------------------------------

    def _supervise(self) -> None:
        # Start the fork server (it imports the engine) before the first job needs it.
        try:
            multiprocessing.forkserver.ensure_running()
        except Exception:  # each start will try again, and say why it fails
            log.exception("job runner: the fork server did not start")
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # a locked or unreachable database: try again at the next tick
                log.exception("job runner: a round failed")
            self._last_round = time.monotonic()
            self._wait(_POLL_S)

    def _tick(self) -> bool:
        """One round: reap, enforce limits and cancels, fill free slots. True when idle."""
        with self._lock:
            self._reap()
            self._enforce()
            queued = False if self._stopping.is_set() else self._fill()
            idle = not self._children and not queued
            if idle:
                self._is_idle = True
                self._idle.notify_all()
            return idle

    def _wait(self, timeout: float) -> None:
        with self._lock:
            sentinels = [c.process.sentinel for c in self._children.values()]
            now = time.monotonic()
            for child in self._children.values():
                if child.reason is None:
                    left = self._deadline(child) - now
                elif child.termed_at is not None:
                    left = child.termed_at + _KILL_GRACE_S - now
                else:
                    continue
                timeout = min(timeout, max(0.0, left))
        multiprocessing.connection.wait([self._wake_r, *sentinels], timeout)
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"!")

    def _fill(self) -> bool:
        """Claim queued jobs into free slots, oldest first; True when queued jobs were seen."""
        free = self.settings.workers - len(self._children)
        if free <= 0:
            return True
        with self.db.engine.connect() as conn:
            ids = (
                conn.execute(
                    select(_JOBS.c.id)
                    .where(_JOBS.c.status == JobStatus.QUEUED.value)
                    .order_by(_JOBS.c.created_at, _JOBS.c.id)
                    .limit(free)
                )
                .scalars()
                .all()
            )
        for job_id in ids:
            if job_id in self._children:  # retried while its canceled run is still stopping
                continue
            if claim_job(self.db, job_id, worker_name()):
                self._spawn(job_id)
        return bool(ids)

    def _spawn(self, job_id: str) -> None:
        waited = self._context.Value("d", 0.0)
        process = self._context.Process(
            target=child_main,
            args=(job_id, self.settings, self.target, self._lifeline, waited),
            name=f"beatsync-job-{job_id}",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:
            log.exception("job %s: no worker process", job_id, extra={"job_id": job_id})
            requeue_or_lose(
                self.db,
                job_id,
                max_attempts=self.settings.job_max_attempts,
                why=f"the worker process did not start: {exc}",
            )
            return
        self._children[job_id] = _Child(job_id, process, time.monotonic(), waited)
        # The row names the process doing the work, so recovery can tell whether it lives.
        with self.db.engine.begin() as conn:
            conn.execute(
                update(_JOBS)
                .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
                .values(worker=worker_name(process.pid))
            )
        log.debug("job %s: process %s", job_id, process.pid, extra={"job_id": job_id})

    def _deadline(self, child: _Child) -> float:
        """The hard time limit of ``child``: later by as long as its job waited for storage."""
        return child.started + self.settings.job_time_limit_s + float(child.waited.value)

    def _enforce(self) -> None:
        now = time.monotonic()
        for child in self._children.values():
            if child.reason is None and now >= self._deadline(child):
                child.reason = "timeout"
                child.process.kill()
            elif child.termed_at is not None and now - child.termed_at >= _KILL_GRACE_S:
                child.process.kill()
        watched = [j for j, c in self._children.items() if c.reason is None]
        stopped = self._cancels & set(watched)
        self._cancels.clear()
        if watched:
            with self.db.engine.connect() as conn:
                found = conn.execute(
                    select(_JOBS.c.id, _JOBS.c.status, _JOBS.c.cancel_requested).where(
                        _JOBS.c.id.in_(watched)
                    )
                ).all()
            rows = {job_id: (status, cancel) for job_id, status, cancel in found}
            for job_id in watched:
                # A finished status other than canceled is the child's own last write: it is
                # about to exit and must not be disturbed. A missing row was deleted; a queued
                # one was canceled and retried, and the retry must not share the row with
                # this run.
                status, cancel = rows.get(job_id, (JobStatus.CANCELED.value, True))
                if cancel or status in (JobStatus.CANCELED.value, JobStatus.QUEUED.value):
                    stopped.add(job_id)
        for job_id in stopped:
            self._terminate(self._children[job_id], "cancel")

    def _terminate(self, child: _Child, reason: str) -> None:
        if child.reason is None:
            child.reason = reason
        if child.termed_at is None and child.process.exitcode is None:
            child.termed_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()

    def _reap(self) -> None:
        for child in list(self._children.values()):
            exitcode = child.process.exitcode
            if exitcode is None:
                continue
            self._forget(child)
            self._after(child, exitcode)

    def _forget(self, child: _Child) -> None:
        self._children.pop(child.job_id, None)
        shutil.rmtree(self.settings.spool_root / "work" / child.job_id, ignore_errors=True)
        child.process.join(0)
        with contextlib.suppress(ValueError):
            child.process.close()

    def _after(self, child: _Child, exitcode: int) -> None:
        job_id = child.job_id
        extra = {"job_id": job_id}
        if child.reason == "cancel":
            with self.db.engine.begin() as conn:
                changed = conn.execute(
                    update(_JOBS)
                    .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
                    .values(
                        status=JobStatus.CANCELED.value,
                        cancel_requested=True,
                        finished_at=utcnow(),
                    )
                )
                if changed.rowcount == 1:
                    record_job_end(conn, job_id)
                status = conn.execute(select(_JOBS.c.status).where(_JOBS.c.id == job_id)).scalar()
            # The child may have finished the job before the signal: then its result stands.
            if status in (None, JobStatus.CANCELED.value):
                self._discard(job_id)
                # The API canceled the row and logged it; only a cancel of a running row is news.
                level = logging.INFO if changed.rowcount == 1 else logging.DEBUG
                log.log(level, "job %s canceled: its process is stopped", job_id, extra=extra)
        elif child.reason == "timeout":
            self._discard(job_id)
            limit = self.settings.job_time_limit_s
            fail_job(self.db, job_id, "TIMEOUT", f"the job ran longer than {limit:g} s")
        else:
            requeue_or_lose(
                self.db,
                job_id,
                max_attempts=self.settings.job_max_attempts,
                why=f"its process ended with {describe_exit(exitcode)}",
            )

    def _discard(self, job_id: str) -> None:
        try:
            self.storage.delete_prefix(job_folder(job_id))
        except Exception:
            log.warning(
                "job %s: could not remove its stored files",
                job_id,
                exc_info=True,
                extra={"job_id": job_id},
            )
