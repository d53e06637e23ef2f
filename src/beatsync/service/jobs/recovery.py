"""What happens to a job whose worker died: back to the queue once, then ``WORKER_LOST``.

A job is redelivered while ``attempts < job_max_attempts`` (each claim counts one attempt), so
no job stays running forever and a job that kills its worker every time stops trying. At
start-up, :func:`recover_orphans` applies the same rule to the rows a crash left ``running``.

Where the holder's process cannot be looked at (another host), its heartbeat tells: a running row
whose heartbeat is older than ``stale_before`` has lost its worker. Every change here is
conditional on the row still being as it was judged, so two processes judging the same row
(two API replicas, a worker and an API) requeue it once, and a worker that turns out to be
alive keeps its job.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta
from typing import Any, cast

import psutil
from sqlalchemy import Table, or_, select, update
from sqlalchemy.engine import make_url

from beatsync.service.db import Database, Job, JobStatus
from beatsync.service.db.models import utcnow
from beatsync.service.metrics import record_job_end

__all__ = ["holder_alive", "recover_orphans", "release_if_lost", "requeue_or_lose"]

log = logging.getLogger(__name__)

_JOBS = cast(Table, Job.__table__)

# A process created this long after the claim is not the one that claimed (its pid was reused).
_PID_REUSE_SLACK = timedelta(seconds=60)


def requeue_or_lose(
    db: Database,
    job_id: str,
    *,
    max_attempts: int,
    why: str,
    holder: str | None = None,
    stale_before: datetime | None = None,
) -> str | None:
    """Put the running job ``job_id`` back in the queue, or fail it ``WORKER_LOST`` when it has
    had ``max_attempts`` starts. Returns the new status, or None when the job was not running.

    With ``holder``, only while the row names that worker; with ``stale_before``, only while its
    heartbeat is older than that.
    """
    judged: list[Any] = [_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value]
    if holder is not None:
        judged.append(_JOBS.c.worker == holder)
    if stale_before is not None:
        judged.append(or_(_JOBS.c.heartbeat_at.is_(None), _JOBS.c.heartbeat_at < stale_before))
    with db.engine.connect() as conn:
        attempts = conn.execute(select(_JOBS.c.attempts).where(*judged)).scalar()
    if attempts is None:
        return None
    judged.append(_JOBS.c.attempts == attempts)  # nobody claimed it since
    if attempts >= max_attempts:
        detail = f"the worker running the job was lost {attempts} times ({why})"
        return JobStatus.FAILED.value if _lose(db, job_id, judged, detail) else None
    with db.engine.begin() as conn:
        requeued = conn.execute(
            update(_JOBS)
            .where(*judged)
            .values(
                status=JobStatus.QUEUED.value,
                stage=None,
                progress=0.0,
                message=None,
                worker=None,
                heartbeat_at=None,
            )
        )
    if requeued.rowcount != 1:
        return None
    log.warning(
        "job %s requeued after attempt %d: %s", job_id, attempts, why, extra={"job_id": job_id}
    )
    return JobStatus.QUEUED.value


def _lose(db: Database, job_id: str, judged: list[Any], detail: str) -> bool:
    now = utcnow()
    with db.engine.begin() as conn:
        done = conn.execute(
            update(_JOBS)
            .where(*judged)
            .values(
                status=JobStatus.FAILED.value,
                error_code="WORKER_LOST",
                error_message=detail[:500],
                finished_at=now,
                heartbeat_at=now,
            )
        )
        if done.rowcount == 1:
            record_job_end(conn, job_id)
    if done.rowcount != 1:
        return False
    log.info("job %s failed: WORKER_LOST: %s", job_id, detail, extra={"job_id": job_id})
    return True


def holder_alive(worker: str | None, started_at: datetime | None) -> bool:
    """Whether the process named ``host:pid`` in ``worker``, on this host, still holds its job.

    A pid that exists but belongs to a process started well after the claim was reused, so its
    holder is dead; so is a worker on another host name (callers skip those when they cannot
    know).
    """
    host, _, pid_text = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        process = psutil.Process(int(pid_text))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = float(process.create_time())
    except psutil.Error:
        return False
    if started_at is None:
        return True
    return created <= (started_at + _PID_REUSE_SLACK).timestamp()


def release_if_lost(
    db: Database,
    job_id: str,
    *,
    worker: str | None,
    started_at: datetime | None,
    heartbeat_at: datetime | None,
    stale_before: datetime,
    max_attempts: int,
) -> str | None:
    """Requeue (or fail ``WORKER_LOST``) the running job ``job_id`` if ``worker``, which held it
    when the row was read, is gone: a dead process on this host, or, anywhere, a heartbeat older
    than ``stale_before``. Returns the new status, or None when the holder may be alive (or the
    row changed meanwhile).
    """
    host = (worker or "").rpartition(":")[0]
    if host == socket.gethostname() and not holder_alive(worker, started_at):
        return requeue_or_lose(
            db, job_id, max_attempts=max_attempts, why=f"its worker {worker} is gone", holder=worker
        )
    if heartbeat_at is None or heartbeat_at < stale_before:
        return requeue_or_lose(
            db,
            job_id,
            max_attempts=max_attempts,
            why=f"its worker {worker} stopped its heartbeat",
            holder=worker,
            stale_before=stale_before,
        )
    return None


def recover_orphans(db: Database, *, max_attempts: int) -> dict[str, str]:
    """Requeue (or fail ``WORKER_LOST``) every running job whose worker is gone.

    With SQLite the database lives on this host, so every running row whose holder is not a
    live process here is an orphan; with a shared database only this host's dead processes are.
    Returns job id → new status.
    """
    local = make_url(db.url).get_backend_name() == "sqlite"
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(_JOBS.c.id, _JOBS.c.worker, _JOBS.c.started_at).where(
                _JOBS.c.status == JobStatus.RUNNING.value
            )
        ).all()
    outcome: dict[str, str] = {}
    for job_id, worker, started_at in rows:
        host = (worker or "").rpartition(":")[0]
        if not local and host != socket.gethostname():
            continue
        if holder_alive(worker, started_at):
            continue
        status = requeue_or_lose(
            db, job_id, max_attempts=max_attempts, why=f"its worker {worker} is gone"
        )
        if status is not None:
            outcome[job_id] = status
    return outcome
