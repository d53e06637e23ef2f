"""Run the service: migrations, then uvicorn with the app (and its embedded workers).

uvicorn may face clients directly (``make serve`` on a public address), so its connection
handling is bounded: a request head must arrive whole within ``header_timeout_s`` (uvicorn
itself waits for ever, so 300 connections trickling a header line each could hold the server),
idle kept-alive connections close after ``keep_alive_timeout_s``, heads are at most 64 KiB, at
most ``max_connections`` are served at once, and ``X-Forwarded-For`` is believed only from the
``trusted_proxies``. Request bodies are bounded inside the app (:mod:`.api.bodies`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .config import Settings
from .logs import configure_logging

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

__all__ = ["guarded_protocol", "serve", "uvicorn_config"]

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024


def guarded_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request head is still incomplete
    ``header_timeout_s`` after the connection opened or the previous answer ended."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle and self.cycle is not None:
                self._disarm()  # a whole head arrived: the body has its own idle timeout

        def on_response_complete(self) -> None:
            # Armed before the next head is looked for: a pipelined one disarms it at once.
            self._arm()
            super().on_response_complete()

    return GuardedH11Protocol


def uvicorn_config(settings: Settings, app: FastAPI, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration ``beatsync serve`` runs ``app`` with."""
    import uvicorn

    proxies = list(settings.proxies)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or [],
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.max_connections,
        "ws_max_size": 64 * 1024,
        # h11, not httptools: httptools takes headers of any size into memory (20 MB was
        # accepted); h11 refuses a request line and headers beyond this size with a 400.
        "http": guarded_protocol(settings.header_timeout_s),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; running jobs are left for recovery at the next start."""
    import uvicorn

    from .api.app import create_app
    from .db import migrate

    configure_logging(settings.log_level, json_lines=settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.migrate_on_start:
        migrate(settings.database)
    app = create_app(settings)
    workers = (
        f"{settings.workers} worker processes"
        if settings.queue == "embedded"
        else f"jobs through Celery queue {settings.celery_queue!r}"
    )
    logger.info(
        "serving on http://%s:%d (data in %s, %s)",
        settings.host,
        settings.port,
        settings.data_dir.resolve(),
        workers,
    )
    uvicorn.Server(uvicorn_config(settings, app)).run()
