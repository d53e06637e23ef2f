"""ASGI middleware: a request id on every request and response, and the security headers.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed uploads and downloads are not buffered.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from beatsync.service.errors import ServiceError

from .problems import problem_response

__all__ = ["JobBodyLimitMiddleware", "RequestContextMiddleware"]

logger = logging.getLogger("beatsync.service.access")

_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# The page loads only its own scripts and styles; media and images come from the API itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _INCOMING_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                if scope["path"].startswith("/api/") and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if scope["type"] == "http":
                logger.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "request_id": request_id,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )


class JobBodyLimitMiddleware:
    """Refuses a job request body (``POST /api/v1/jobs``, ``…/frames``) larger than ``limit``.

    An audio-first job carries its manifest and thumbnails in the body; this bounds what a
    client can make the API hold in memory. A declared length is judged before anything is
    read; an undeclared one is counted as it arrives, and refused once past the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _applies(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or scope.get("method") != "POST":
            return False
        return path == "/api/v1/jobs" or (
            path.startswith("/api/v1/jobs/") and path.endswith("/frames")
        )

    def _refusal(self, size: int | None) -> ServiceError:
        told = "passes the limit" if size is None else f"is {size} bytes; the limit is"
        return ServiceError("INVALID_MANIFEST", f"the request body {told} {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = problem_response(Request(scope), self._refusal(int(declared)))
            await response(scope, receive, send)
            return
        # Undeclared: read it here, up to the limit (the route would hold it all anyway),
        # and hand the route the same messages.
        received: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                response = problem_response(Request(scope), self._refusal(None))
                await response(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        await self.app(scope, replay, send)
