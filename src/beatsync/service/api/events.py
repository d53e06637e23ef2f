"""Live progress: ``/api/v1/jobs/{id}/events`` (Server-Sent Events) and ``/ws`` (WebSocket).

Both repeat the job row: the current Job JSON on connect, then the Job JSON again each time the
row changes, ending after a finished status. Clients that cannot send an ``Authorization``
header (``EventSource``, browsers' WebSocket) open them with a stream ticket from
``POST /api/v1/jobs/{id}/ticket`` (:mod:`beatsync.service.tickets`): valid for a minute, for that
job only. ``?access_token=`` is still read here, and only here, for older clients.

The row is polled every ``event_poll_s`` with the read in a worker thread, so a slow database
never stalls the event loop; nothing else is shared between streams, and a client that goes
away takes its stream's work with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect

from beatsync.service.codes import Locale, negotiate_locale
from beatsync.service.db.models import Job, JobStatus
from beatsync.service.errors import ServiceError
from beatsync.service.jobs.views import job_fingerprint, job_json
from beatsync.service.tickets import issue_ticket, verify_ticket

from .context import ServiceContext
from .deps import Context, LocaleDep, OwnerId, bearer_token, resolve_owner

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


async def _stream_owner(
    context: ServiceContext, job_id: str, headers: Any, query: Any
) -> str | None:
    """Who opens a stream of ``job_id``: by header, by a ticket for this job, else by a token
    in the query."""
    ticket = query.get("ticket")
    if ticket and not headers.get("authorization"):
        settings = context.settings
        return verify_ticket(
            settings.secret_key.get_secret_value(),
            ticket,
            job_id,
            max_ttl_s=settings.stream_ticket_ttl_s,
        )
    token = bearer_token(headers.get("authorization"), query.get("access_token"))
    return await resolve_owner(context, token) if token else None


class TicketOut(BaseModel):
    ticket: str
    expires_at: str = Field(description="ISO 8601, UTC.")
    ttl_s: int
    events: str = Field(description="The job's event stream, ticket included.")
    ws: str = Field(description="The job's WebSocket, ticket included.")


@router.post("/{job_id}/ticket", status_code=201, response_model=TicketOut)
async def stream_ticket(job_id: str, owner: OwnerId, context: Context) -> TicketOut:
    """A ticket that opens this job's event stream and WebSocket for a minute, for clients
    that cannot send an ``Authorization`` header there (``EventSource``)."""
    if await _owned_job(context, owner, job_id) is None:
        raise ServiceError("NOT_FOUND", f"no job {job_id}")
    settings = context.settings
    ttl = settings.stream_ticket_ttl_s
    ticket, expires = issue_ticket(settings.secret_key.get_secret_value(), job_id, owner, ttl_s=ttl)
    moment = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    base = f"/api/v1/jobs/{job_id}"
    return TicketOut(
        ticket=ticket,
        expires_at=moment,
        ttl_s=ttl,
        events=f"{base}/events?ticket={ticket}",
        ws=f"{base}/ws?ticket={ticket}",
    )


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`event: job` lines"}},
)
async def job_events(
    job_id: str,
    request: Request,
    context: Context,
    locale: LocaleDep,
    ticket: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    """The job as Server-Sent Events (``event: job``, data = the Job JSON) until it finishes.

    ``EventSource`` cannot send headers: pass a ticket (``POST …/ticket``) as ``?ticket=``.
    """
    owner = await _stream_owner(context, job_id, request.headers, request.query_params)
    if owner is None:
        raise ServiceError(
            "UNAUTHORIZED", "send Authorization: Bearer <token>, or ?ticket= for this job"
        )
    request.state.owner_id = owner
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


@router.websocket("/{job_id}/ws")
async def job_socket(websocket: WebSocket, job_id: str) -> None:
    """The job as WebSocket text messages (the Job JSON), closed with 1000 once it finishes.

    The caller comes with an ``Authorization`` header or a ticket (``?ticket=``). The connection
    is accepted first so that a browser sees why it is closed: 4401 for a bad token or ticket,
    4404 for a job that is not the caller's.
    """
    context: ServiceContext = websocket.app.state.context
    owner = await _stream_owner(context, job_id, websocket.headers, websocket.query_params)
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
