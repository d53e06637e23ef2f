"""What every request handler may use, built once per application."""

from __future__ import annotations

from dataclasses import dataclass, field

from beatsync.service.auth import TokenCache
from beatsync.service.config import Settings
from beatsync.service.db import Database
from beatsync.service.jobs.dispatch import Dispatcher
from beatsync.service.storage import Storage

__all__ = ["ServiceContext"]


@dataclass(slots=True)
class ServiceContext:
    settings: Settings
    db: Database
    storage: Storage
    dispatcher: Dispatcher
    tokens: TokenCache = field(default_factory=TokenCache)
