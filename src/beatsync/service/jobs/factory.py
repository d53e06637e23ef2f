"""``make_dispatcher(settings, db, storage)``: the dispatcher ``settings.queue`` names."""

from __future__ import annotations

from beatsync.service.config import Settings
from beatsync.service.db import Database
from beatsync.service.storage import Storage

from .dispatch import Dispatcher

__all__ = ["make_dispatcher"]


def make_dispatcher(settings: Settings, db: Database, storage: Storage) -> Dispatcher:
    """The embedded runner for ``queue = "embedded"``, Celery workers through Redis for
    ``queue = "celery"`` (then ``beatsync serve`` runs no job itself)."""
    if settings.queue == "celery":
        from .celery_dispatch import CeleryDispatcher

        return CeleryDispatcher(settings, db)
    from .embedded import EmbeddedRunner

    return EmbeddedRunner(settings, db, storage)
