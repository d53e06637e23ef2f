"""One sweep at a time across processes and replicas (see :func:`sweep_lock`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import text

from ..config import Settings
from ..db import Database

__all__ = ["SWEEP_LOCK_KEY", "sweep_lock"]

SWEEP_LOCK_KEY = int.from_bytes(b"beatsync", "big")  # the advisory lock's bigint
_in_process = threading.Lock()

try:  # POSIX; elsewhere only the in-process lock keeps two sweeps apart
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


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
