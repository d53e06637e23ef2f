"""Run the service: migrations, then uvicorn with the app (and its embedded workers)."""

from __future__ import annotations

import logging

from .config import Settings
from .logs import configure_logging

__all__ = ["serve"]

logger = logging.getLogger(__name__)


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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
        ws_max_size=64 * 1024,
        # h11, not httptools: httptools takes headers of any size into memory (20 MB was
        # accepted); h11 refuses a request line and headers beyond this size with a 400.
        http="h11",
        h11_max_incomplete_event_size=64 * 1024,
    )
