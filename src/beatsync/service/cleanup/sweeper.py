"""One sweep (:func:`sweep`) and the periodic :class:`Sweeper` of the API process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from ..config import Settings
from ..db import Database
from ..storage import Storage
from .days import DAY_GRACE, expired_days
from .expiry import expired_jobs, expired_partials, expired_results, expired_uploads
from .lock import sweep_lock
from .orphans import ORPHAN_GRACE, orphans
from .report import SweepReport, Tally
from .spool import spool

log = logging.getLogger(__name__)

__all__ = ["Sweeper", "sweep"]


def sweep(
    settings: Settings,
    db: Database,
    storage: Storage,
    *,
    grace: timedelta = ORPHAN_GRACE,
    day_grace: timedelta = DAY_GRACE,
) -> SweepReport:
    """One cleanup pass (see the module docstring); skipped when another sweep is running.
    ``grace`` is how old an orphan must be, ``day_grace`` how long ago a day folder's day
    must have ended."""
    began = time.monotonic()
    with sweep_lock(settings, db) as held:
        if not held:
            log.info("cleanup skipped: another sweep is running")
            return SweepReport(skipped=True)
        tally = Tally()
        steps: tuple[tuple[str, Callable[[], None]], ...] = (
            ("expired uploads", lambda: expired_uploads(db, storage, settings, tally)),
            ("expired partials", lambda: expired_partials(db, storage, settings, tally)),
            ("expired results", lambda: expired_results(db, storage, tally)),
            ("expired jobs", lambda: expired_jobs(db, storage, settings, tally)),
            ("orphans", lambda: orphans(db, storage, grace, tally)),
            ("day folders", lambda: expired_days(db, storage, day_grace, tally)),
            ("spool", lambda: spool(db, settings, storage, grace, tally)),
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
