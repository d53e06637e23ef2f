"""``GET /metrics``: the Prometheus text exposition (:mod:`beatsync.service.metrics`).

Outside ``/api``: no owner token and no rate limit apply, since Prometheus is neither a client
nor an owner. When ``BEATSYNC_METRICS_TOKEN`` is set, only that bearer token is answered; the
nginx configuration in ``deploy/`` keeps the path off the public side in any case.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from beatsync.service.errors import ServiceError
from beatsync.service.metrics import CONTENT_TYPE, exposition

from .deps import Context, bearer_token

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, context: Context) -> Response:
    """Every metric of this process and of the cluster, for Prometheus to scrape."""
    expected = context.settings.metrics_token.get_secret_value()
    if expected:
        given = bearer_token(request.headers.get("authorization")) or ""
        if not secrets.compare_digest(given.encode(), expected.encode()):
            raise ServiceError(
                "UNAUTHORIZED",
                "send Authorization: Bearer <BEATSYNC_METRICS_TOKEN>",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    # The database part runs queries: off the event loop.
    body = await run_in_threadpool(exposition, context.db, context.dispatcher.workers)
    return Response(body, media_type=CONTENT_TYPE)
