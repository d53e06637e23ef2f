"""What happens to a job whose worker died: back to the queue once, then ``WORKER_LOST``.

A job is redelivered while ``attempts < job_max_attempts`` (each claim counts one attempt), so
no job stays running forever and a job that kills its worker every time stops trying. At
start-up, :func:`recover_orphans` applies the same rule to the rows a crash left ``running``.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta
from typing import cast

import psutil
from sqlalchemy import Table, select, update
from sqlalchemy.engine import make_url

from beatsync.service.db import Database, Job, JobStatus

from .run import fail_job

__all__ = ["holder_alive", "recover_orphans", "requeue_or_lose"]

log = logging.getLogger(__name__)

_JOBS = cast(Table, Job.__table__)

# A process created this long after the claim is not the one that claimed (its pid was reused).
_PID_REUSE_SLACK = timedelta(seconds=60)


def requeue_or_lose(db: Database, job_id: str, *, max_attempts: int, why: str) -> str | None:
    """Put the running job ``job_id`` back in the queue, or fail it ``WORKER_LOST`` when it has
    had ``max_attempts`` starts. Returns the new status, or None when the job was not running.
    """
    with db.engine.connect() as conn:
        attempts = conn.execute(
            select(_JOBS.c.attempts).where(
                _JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value
            )
        ).scalar()
    if attempts is None:
        return None
    if attempts >= max_attempts:
        detail = f"the worker running the job was lost {attempts} times ({why})"
        return JobStatus.FAILED.value if fail_job(db, job_id, "WORKER_LOST", detail) else None
    with db.engine.begin() as conn:
        requeued = conn.execute(
            update(_JOBS)
            .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
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
