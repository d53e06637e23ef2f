"""Request bodies: credentials before a byte is read, JSON bodies capped, idle bodies let go.

FastAPI reads and parses a JSON body before it resolves a route's dependencies, so without this
layer a client with no token could make the server read 200 MB before hearing 401, and a 400 MB
JSON document went into memory whole. Here, in pure ASGI ahead of the routes:

- a request that carries a body to the API (other than the two upload routes, which stream
  to disk under their own limits) must present a known bearer token first, except the session
  creation that issues one; it is refused with 401 before its body is read;
- such a body is read here, up to ``max_json_body_bytes`` (``max_job_request_bytes`` for a
  job's creation and its frames, which carry an audio-first job's manifest and thumbnails): a
  larger declared ``Content-Length`` is refused at once, a chunked body the moment it passes
  the cap (413 ``REQUEST_TOO_LARGE``), and the route is handed the bytes read;
- every request body, uploads included, that sends nothing for ``body_idle_timeout_s`` is
  treated as abandoned: the route sees the client leave (a resumable upload keeps what came);
- a request still being served when the server shuts down and cancels it is answered with a
  ``503 SERVER_BUSY`` problem document (with ``Retry-After``) instead of a bare text 500.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beatsync.service.config import Settings
from beatsync.service.errors import ServiceError

from .deps import bearer_token, resolve_owner
from .problems import problem_response

__all__ = ["BodyGuardMiddleware", "streams_its_body"]

logger = logging.getLogger(__name__)

_UPLOAD_ROUTES = ("/api/v1/tus", "/api/v1/tus/")
_ISSUES_TOKENS = ("/api/v1/sessions", "/api/v1/sessions/wechat")
_SHUTDOWN_RETRY_AFTER_S = "10"


def streams_its_body(method: str, path: str) -> bool:
    """The routes that stream a body to disk themselves (multipart and tus uploads)."""
    if method == "POST" and path == "/api/v1/uploads":
        return True
    return path == _UPLOAD_ROUTES[0] or path.startswith(_UPLOAD_ROUTES[1])


def _carries_a_job(method: str, path: str) -> bool:
    """A job's creation or an audio-first job's frames: bodies with thumbnails in them."""
    if method != "POST" or not path.startswith("/api/v1/jobs"):
        return False
    return path in ("/api/v1/jobs", "/api/v1/jobs/") or path.endswith("/frames")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BodyGuardMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.json_limit = settings.max_json_body_bytes
        self.job_limit = settings.max_job_request_bytes
        self.idle_s = settings.body_idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._guarded(scope, self._idle_limited(receive), send_tracked)
        except asyncio.CancelledError:
            # uvicorn cancels what is still running when its graceful shutdown runs out.
            if not started:
                logger.warning("%s %s cut by shutdown", scope["method"], scope["path"])
                error = ServiceError(
                    "SERVER_BUSY",
                    "the server is restarting; send the request again",
                    headers={"Retry-After": _SHUTDOWN_RETRY_AFTER_S, "Connection": "close"},
                )
                await problem_response(Request(scope), error)(scope, receive, send)
            raise

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        length = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        has_body = chunked or (length is not None and length.strip() not in ("", "0"))
        if not has_body or not path.startswith("/api/") or streams_its_body(method, path):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if path not in _ISSUES_TOKENS:
            token = bearer_token(_header(scope, b"authorization"))
            if token is None or await resolve_owner(request.app.state.context, token) is None:
                detail = "send Authorization: Bearer <token>" if token is None else None
                error = ServiceError(
                    "UNAUTHORIZED", detail or "the token is not known", headers=_CLOSE
                )
                await problem_response(request, error)(scope, receive, send)
                return
        limit = self.job_limit if _carries_a_job(method, path) else self.json_limit
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await self._too_large(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        ready: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay(ready, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = ServiceError(
            "REQUEST_TOO_LARGE",
            f"the request body is larger than {limit} bytes",
            headers=_CLOSE,
            extra={"max_bytes": limit},
        )
        await problem_response(Request(scope), error)(scope, receive, send)

    def _idle_limited(self, receive: Receive) -> Receive:
        done = False

        async def receive_within() -> Message:
            nonlocal done
            if done:  # the body is complete: the app now only listens for the client leaving
                return await receive()
            message: Message | None = None
            with anyio.move_on_after(self.idle_s):
                message = await receive()
            if message is None:
                done = True
                logger.info("request body idle for %g s: treated as abandoned", self.idle_s)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return receive_within


_CLOSE = {"Connection": "close"}


def _replay(first: Message, receive: Receive) -> Receive:
    """``first`` (the whole body, or what ended it), then whatever the client sends next."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
