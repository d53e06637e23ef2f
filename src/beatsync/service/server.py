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
    migrate(settings.database)
    app = create_app(settings)
    logger.info(
        "serving on http://%s:%d (data in %s, %d workers)",
        settings.host,
        settings.port,
        settings.data_dir.resolve(),
        settings.workers,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
        ws_max_size=64 * 1024,
        h11_max_incomplete_event_size=64 * 1024,
    )
