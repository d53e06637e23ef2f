"""A worker sweeps its own scratch: the work folders that runs killed on this host left behind.

A run works in ``<spool>/work/<job id>`` and removes it when it ends, however it ends, unless
its process is killed (SIGKILL, the OOM killer, a power cut). A worker host's spool is its own,
so no API sweep ever sees it: each worker sweeps it when it starts and every
``sweep_interval_s`` after. A folder goes when it is older than :data:`MIN_AGE_S` and no live
run owns it. A run owns its job's folder while the job's row is ``running`` and names a live
process on this host, or a worker on another host (a spool shared between hosts: that host
decides).
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import cast

from sqlalchemy import Table, select

from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus

from .recovery import holder_alive

__all__ = ["MIN_AGE_S", "ScratchSweeper", "sweep_scratch"]

log = logging.getLogger(__name__)

MIN_AGE_S = 60.0
"""A work folder younger than this is left alone (its run may be claiming the job now)."""

_JOBS = cast(Table, Job.__table__)
_JOB_ID = re.compile(r"job_[A-Za-z0-9_-]{1,64}")


def sweep_scratch(
    settings: Settings, db: Database, *, min_age_s: float = MIN_AGE_S, now: float | None = None
) -> list[str]:
    """Remove the work folders under ``settings.spool_root`` that no live run owns; the job
    ids whose folders went."""
    work = settings.spool_root / "work"
    if not work.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - min_age_s
    folders = {p.name: p for p in work.iterdir() if _JOB_ID.fullmatch(p.name) and p.is_dir()}
    old = {name: path for name, path in folders.items() if _mtime(path) < cutoff}
    if not old:
        return []
    with db.engine.connect() as conn:
        rows = {
            row.id: row
            for row in conn.execute(
                select(_JOBS.c.id, _JOBS.c.status, _JOBS.c.worker, _JOBS.c.started_at).where(
                    _JOBS.c.id.in_(sorted(old)), _JOBS.c.status == JobStatus.RUNNING.value
                )
            )
        }
    host = socket.gethostname()
    removed = []
    for job_id, path in sorted(old.items()):
        row = rows.get(job_id)
        if row is not None:
            elsewhere = (row.worker or "").rpartition(":")[0] != host
            if elsewhere or holder_alive(row.worker, row.started_at):
                continue
        if _mtime(path) >= cutoff:  # a run started on it since it was listed
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(job_id)
    if removed:
        log.info("scratch: removed %d work folders left by runs that ended", len(removed))
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


class ScratchSweeper:
    """Sweeps at once, then every ``settings.sweep_interval_s``, in a thread of the worker."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beatsync-scratch", daemon=True)

    def start(self) -> ScratchSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                sweep_scratch(self.settings, self.db)
            except Exception:  # the database is away: next time
                log.warning("scratch: the sweep failed", exc_info=True)
            finally:
                # No connection stays open between sweeps, for a pool process to inherit.
                self.db.dispose()
            if self._stop.wait(self.settings.sweep_interval_s):
                return
