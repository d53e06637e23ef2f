"""Live progress: ``/api/v1/jobs/{id}/events`` (Server-Sent Events) and ``/ws`` (WebSocket).

Both repeat the job row: the current Job JSON on connect, then the Job JSON again each time the
row changes, ending after a finished status. The row is polled every ``event_poll_s`` with the
read in a worker thread, so a slow database never stalls the event loop; nothing else is shared
between streams, and a client that goes away takes its stream's work with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect

from beatsync.service.auth import authenticate
from beatsync.service.codes import Locale, negotiate_locale
from beatsync.service.db.models import Job, JobStatus
from beatsync.service.errors import ServiceError
from beatsync.service.jobs.views import job_fingerprint, job_json

from .context import ServiceContext
from .deps import Context, LocaleDep, OwnerId, bearer_token

__all__ = ["KEEPALIVE_S", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/jobs", tags=["progress"])

# Proxies and phone networks drop idle connections after 30–60 s; a comment line keeps them up.
KEEPALIVE_S = 15.0
# WebSocket close codes: the HTTP status a request would have had, plus 4000.
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


def _read_job(context: ServiceContext, owner_id: str, job_id: str) -> Job | None:
    with context.db.session() as session:
        job = session.get(Job, job_id)
        return job if job is not None and job.owner_id == owner_id else None


async def _owned_job(context: ServiceContext, owner_id: str, job_id: str) -> Job | None:
    return await anyio.to_thread.run_sync(_read_job, context, owner_id, job_id)


def _finished(job: Job) -> bool:
    return JobStatus(job.status).finished


async def _watch(
    context: ServiceContext, owner_id: str, first: Job
) -> AsyncGenerator[Job | None, None]:
    """``first``, then each changed state of the job, None on every poll that found no change.

    Ends after a finished state, or when the job is deleted.
    """
    yield first
    last = job_fingerprint(first)
    job = first
    while not _finished(job):
        await anyio.sleep(context.settings.event_poll_s)
        current = await _owned_job(context, owner_id, first.id)
        if current is None:
            return
        job = current
        fingerprint = job_fingerprint(job)
        if fingerprint == last:
            yield None
            continue
        last = fingerprint
        yield job


def _payload(context: ServiceContext, job: Job, locale: Locale) -> str:
    body: dict[str, Any] = job_json(
        job, settings=context.settings, storage=context.storage, locale=locale
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`event: job` lines"}},
)
async def job_events(
    job_id: str, request: Request, owner: OwnerId, context: Context, locale: LocaleDep
) -> StreamingResponse:
    """The job as Server-Sent Events (``event: job``, data = the Job JSON) until it finishes.

    ``EventSource`` cannot send headers: pass the token as ``?access_token=``.
    """
    first = await _owned_job(context, owner, job_id)
    if first is None:
        raise ServiceError("NOT_FOUND", f"no job {job_id}")

    async def stream() -> AsyncIterator[str]:
        sequence = 0
        quiet_since = anyio.current_time()
        async with aclosing(_watch(context, owner, first)) as changes:
            async for job in changes:
                if await request.is_disconnected():
                    return
                now = anyio.current_time()
                if job is None:
                    if now - quiet_since >= KEEPALIVE_S:
                        quiet_since = now
                        yield ": keep-alive\n\n"
                    continue
                sequence += 1
                quiet_since = now
                retry = "retry: 3000\n" if sequence == 1 else ""
                data = _payload(context, job, locale)
                yield f"{retry}id: {sequence}\nevent: job\ndata: {data}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _authenticate(context: ServiceContext, token: str) -> str | None:
    with context.db.session() as session:
        return authenticate(session, token, context.settings.operator_keys)


@router.websocket("/{job_id}/ws")
async def job_socket(websocket: WebSocket, job_id: str) -> None:
    """The job as WebSocket text messages (the Job JSON), closed with 1000 once it finishes.

    The token comes as ``?access_token=`` or an ``Authorization`` header. The connection is
    accepted first so that a browser sees why it is closed: 4401 for a bad token, 4404 for a
    job that is not the caller's.
    """
    context: ServiceContext = websocket.app.state.context
    token = bearer_token(
        websocket.headers.get("authorization"), websocket.query_params.get("access_token")
    )
    owner = await anyio.to_thread.run_sync(_authenticate, context, token) if token else None
    await websocket.accept()
    if owner is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "a valid access token is required")
        return
    first = await _owned_job(context, owner, job_id)
    if first is None:
        await websocket.close(CLOSE_NOT_FOUND, "no such job")
        return
    locale = negotiate_locale(
        websocket.headers.get("accept-language"), context.settings.default_locale
    )
    gone = False
    async with anyio.create_task_group() as group:

        async def until_client_leaves() -> None:
            # Clients have nothing to say here; reading is how their leaving is noticed.
            nonlocal gone
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            gone = True
            group.cancel_scope.cancel()

        group.start_soon(until_client_leaves)
        last = first
        try:
            async with aclosing(_watch(context, owner, first)) as changes:
                async for job in changes:
                    if job is not None:
                        last = job
                        await websocket.send_text(_payload(context, job, locale))
        except (WebSocketDisconnect, OSError):
            gone = True
        if not gone:
            if _finished(last):
                await websocket.close(1000)
            else:
                await websocket.close(CLOSE_NOT_FOUND, "the job was deleted")
        group.cancel_scope.cancel()
