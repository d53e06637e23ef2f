"""What runs in a child process of the embedded runner: limits, signals and the job itself.

The child caps its memory, lowers its priority, turns ``SIGTERM`` and ``SIGALRM`` (the soft time
limit) into stop requests the run acts on at its next progress report, tells the runner how long
it waited for storage (:func:`report_wait`: the hard time limit moves by as much) and ends
itself when the runner's process is gone.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from types import FrameType

from beatsync.engine.memory import tune_allocator
from beatsync.service.config import Settings
from beatsync.service.db import job_database
from beatsync.service.logs import configure_logging

from .run import JOB_NICENESS, JobInterrupted, JobTimeLimit, fail_job, run_job

__all__ = [
    "KILL_GRACE_S",
    "PRELOAD",
    "JobTarget",
    "child_main",
    "describe_exit",
    "limit_memory",
    "report_wait",
    "run_in_child",
]

JobTarget = Callable[[str, Settings], object]
"""What a child runs: ``target(job_id, settings)``; :func:`run_in_child` unless replaced."""

KILL_GRACE_S = 2.0  # SIGTERM, then SIGKILL this much later

# Imported once by the fork server, shared by every child: what a job would import anyway.
PRELOAD = (
    "beatsync.service.jobs.forkserver_init",
    "beatsync.engine",
    "beatsync.engine.alignment.align",
    "beatsync.engine.output.plot",
    "beatsync.engine.output.poster",
    "beatsync.engine.output.report",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "matplotlib.font_manager",
    "beatsync.service.jobs.run",
    "beatsync.service.jobs.embedded",
    "beatsync.service.jobs.child",
)


def limit_memory(megabytes: int) -> None:
    """Cap this process's private writable memory (heap and anonymous maps) at ``megabytes``.

    ``RLIMIT_DATA``, not ``RLIMIT_AS``: the address space of a job counts reservations it never
    touches (thread stacks, glibc's per-thread arenas, OpenBLAS buffers, the fork server's
    shared libraries) and runs to about twice its data size, so an address-space cap tight
    enough to stop a runaway allocation would also stop ordinary jobs. An allocation past the
    cap fails at once with ``MemoryError``.
    """
    limit = megabytes * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def child_main(
    job_id: str,
    settings: Settings,
    target: JobTarget,
    lifeline: Connection,
    waited: Synchronized[float] | None = None,
) -> None:
    global _WAITED
    _WAITED = waited
    threading.Thread(target=_watch_parent, args=(lifeline,), daemon=True).start()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    limit_memory(settings.job_memory_limit_mb)
    tune_allocator()
    # Below the API in the scheduler's eyes: a status poll must not wait behind a render.
    os.nice(JOB_NICENESS)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _soft_time_limit)
    signal.setitimer(signal.ITIMER_REAL, settings.job_soft_time_limit_s)
    try:
        target(job_id, settings)
    except JobTimeLimit:
        # Raised outside the run's own handling (while it was finishing): fail it here.
        db = job_database(settings.database, prepared_statements=settings.db_prepared_statements)
        try:
            limit = settings.job_soft_time_limit_s
            fail_job(db, job_id, "TIMEOUT", f"the job ran longer than {limit:g} s")
        finally:
            db.dispose()
    except JobInterrupted:
        pass  # stopped by the runner; the row is its business
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_in_child(job_id: str, settings: Settings) -> object:
    return run_job(job_id, settings=settings, stop_requested=_STOP.requested, on_wait=report_wait)


def report_wait(seconds: float) -> None:
    """Tell the runner that this job waited ``seconds`` for storage: its hard time limit moves
    that much later, as the soft one does inside the run."""
    if _WAITED is not None:
        with _WAITED.get_lock():
            _WAITED.value += seconds


_WAITED: Synchronized[float] | None = None  # shared with the runner, which reads it


class _StopRequest:
    """What the signal handlers ask of the run; it acts on it at its next progress report."""

    def __init__(self) -> None:
        self.kind: type[BaseException] | None = None

    def requested(self) -> BaseException | None:
        return None if self.kind is None else self.kind()


_STOP = _StopRequest()  # one per child process, as signals are


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _STOP.kind = JobInterrupted


def _soft_time_limit(signum: int, frame: FrameType | None) -> None:
    if _STOP.kind is None:
        _STOP.kind = JobTimeLimit


def _watch_parent(lifeline: Connection) -> None:
    """End this process when the runner's process is gone (its end of the pipe closes).

    The fork server outlives the API process while any child runs, so the child watches the API
    process itself: a job must not go on unsupervised, past its hard time limit.
    """
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: this returns at end of file
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


def describe_exit(exitcode: int) -> str:
    """How a child process ended, for a log line or a row's message."""
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
