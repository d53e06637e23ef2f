"""``make_dispatcher(settings, db, storage)``: the dispatcher ``settings.queue`` names."""

from __future__ import annotations

from beatsync.service.config import Settings
from beatsync.service.db import Database
from beatsync.service.storage import Storage

from .dispatch import Dispatcher

__all__ = ["DistributedModeUnavailableError", "make_dispatcher"]


class DistributedModeUnavailableError(RuntimeError):
    """``BEATSYNC_QUEUE=celery`` names a mode this build does not contain."""


def make_dispatcher(settings: Settings, db: Database, storage: Storage) -> Dispatcher:
    """The embedded runner for ``queue = "embedded"``; the distributed mode is refused here, at
    start-up, rather than when the first job is submitted."""
    if settings.queue == "embedded":
        from .embedded import EmbeddedRunner

        return EmbeddedRunner(settings, db, storage)
    raise DistributedModeUnavailableError(
        f"BEATSYNC_QUEUE={settings.queue!r} configures the distributed mode (Celery workers "
        "through a broker), which this build does not include; use BEATSYNC_QUEUE=embedded"
    )
