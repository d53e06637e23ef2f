"""``create_app(settings)``: the FastAPI application with its routers, errors and the web page.

Nothing here runs at import time. The lifespan brings the database to the current migration,
starts the job dispatcher (the embedded worker pool by default) and stops it on shutdown.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from beatsync import __version__
from beatsync.service.cleanup import Sweeper
from beatsync.service.config import Settings
from beatsync.service.db import Database, migrate
from beatsync.service.jobs.dispatch import Dispatcher
from beatsync.service.metrics import HttpMetricsMiddleware
from beatsync.service.ratelimit import RateLimitMiddleware
from beatsync.service.storage import Storage, open_storage

from . import (
    apidocs,
    direct,
    events,
    files,
    health,
    jobs,
    metrics,
    problems,
    sessions,
    tus,
    uploads,
)
from .bodies import BodyGuardMiddleware
from .context import ServiceContext
from .middleware import RequestContextMiddleware

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    dispatcher: Dispatcher | None = None,
    storage: Storage | None = None,
) -> FastAPI:
    """The application for ``settings``; ``dispatcher`` and ``storage`` replace the defaults."""
    for folder in (settings.data_dir, settings.spool_root):
        folder.mkdir(parents=True, exist_ok=True)
    db = Database(
        settings.database,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        prepared_statements=settings.db_prepared_statements,
    )
    store = storage or open_storage(settings)
    if dispatcher is None:
        from beatsync.service.jobs.factory import make_dispatcher

        dispatcher = make_dispatcher(settings, db, store)
    context = ServiceContext(settings=settings, db=db, storage=store, dispatcher=dispatcher)
    sweeper = Sweeper(settings, db, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            migrate(settings.database)
        context.dispatcher.start()
        sweeper.start()
        # Everything built so far lives as long as the process: out of the collector's sight,
        # a full collection no longer walks it (and no longer stalls requests for tens of ms).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            sweeper.stop()
            context.dispatcher.stop()
            db.dispose()

    app = FastAPI(
        title="BeatSync",
        version=__version__,
        summary="Put the clean reference track under a dance class video, in sync.",
        lifespan=lifespan,
        docs_url=None,  # served by .apidocs, without a CDN or an inline script
        openapi_url="/openapi.json",
        redoc_url=None,
        responses=problems.PROBLEM_RESPONSES,
    )
    app.state.context = context
    problems.install(app)
    for module in (sessions, direct, uploads, tus, jobs, events, files, health, apidocs):
        app.include_router(module.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    # Inside CORS and the request id: a refusal carries both. Bodies are looked at only once
    # the request has passed the rate limits.
    app.add_middleware(BodyGuardMiddleware, settings=settings)
    app.add_middleware(RateLimitMiddleware, settings=settings)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=[
                "Location",
                "Upload-Offset",
                "Upload-Length",
                "Upload-Expires",
                "Tus-Resumable",
                "Tus-Version",
                "Tus-Extension",
                "Tus-Max-Size",
                "Tus-Checksum-Algorithm",
                "Upload-Metadata",
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    app.add_middleware(RequestContextMiddleware)
    if settings.metrics_enabled:
        app.add_middleware(HttpMetricsMiddleware)
    web = resources.files("beatsync") / "web"
    app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
    return app
