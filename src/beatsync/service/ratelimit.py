"""Request rates per owner and per client address: ``429 RATE_LIMITED`` before any work is done.

Each request to the API (``/api/…`` except ``/api/health…``; the web page, ``/metrics`` and the
documentation are not counted) adds one to two counters of the current one-minute window: its
owner's, named by the SHA-256 of its bearer token (no database lookup, so a flood of made-up
tokens costs nothing but is still counted by address), and its client address's. Past either
limit the request is refused with ``Retry-After`` (seconds to the next window); every counted
answer carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` for the
tighter of the two. Creating an anonymous session (``POST /api/v1/sessions``) counts a third
counter, the address's new sessions, with its own small limit: owners are free, and an address
that could make them without end could spread its load over as many as it liked.

Counters live in this process's memory in the embedded mode and in Redis in the distributed
mode, where every API replica shares them: one Lua script increments a request's counters and
sets their expiry in a single round trip. When Redis cannot be reached requests pass (and it is
logged): the limiter protects the service and must not be what takes it down.

Fixed windows let a client send up to twice its limit across a window boundary; for a limit meant
to stop floods, not to meter, that is the price of one counter per key.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.problems import problem_response
from .auth import token_hash
from .config import Settings
from .errors import ServiceError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "WINDOW_S",
    "Counter",
    "MemoryCounter",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisCounter",
    "Verdict",
    "is_limited_path",
    "make_limiter",
]

log = logging.getLogger(__name__)

WINDOW_S = 60
_WARN_EVERY_S = 60.0
_COUNT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return counts
"""


class Counter(Protocol):
    """Counts hits per key within one window."""

    async def incr(self, keys: Sequence[str], window: int) -> list[int]:
        """Add one to each of ``keys`` in window number ``window``; their new counts."""

    async def close(self) -> None:
        """Let go of connections (called at shutdown)."""


class MemoryCounter:
    """Counters in this process: enough when one process serves the API."""

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    async def incr(self, keys: Sequence[str], window: int) -> list[int]:
        if window != self._window:
            # A new window starts every counter at zero; the old ones are dropped whole.
            self._window = window
            self._counts = {}
        counts = []
        for key in keys:
            value = self._counts.get(key, 0) + 1
            self._counts[key] = value
            counts.append(value)
        return counts

    async def close(self) -> None:
        self._counts = {}


class RedisCounter:
    """Counters in Redis, shared by every API replica; keys expire after their window."""

    def __init__(self, url: str, *, prefix: str = "beatsync:rate", timeout_s: float = 0.5):
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._client: Redis | None = None
        self._script: Any = None

    def _connect(self) -> Any:
        if self._script is None:
            from redis.asyncio import Redis

            # Made on first use, inside the event loop that will use its connections.
            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
            )
            self._script = self._client.register_script(_COUNT)
        return self._script

    async def incr(self, keys: Sequence[str], window: int) -> list[int]:
        script = self._connect()
        names = [f"{self.prefix}:{window}:{key}" for key in keys]
        counts = await script(keys=names, args=[WINDOW_S * 2])
        return [int(c) for c in counts]

    async def close(self) -> None:
        client, self._client, self._script = self._client, None, None
        if client is not None:
            await client.aclose()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one request, stated for the tighter of its limits."""

    allowed: bool
    scope: str  # owner | address | sessions
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    """Per-owner and per-address limits over :class:`Counter` windows of ``WINDOW_S``."""

    def __init__(
        self,
        counter: Counter,
        *,
        per_owner: int,
        per_address: int,
        sessions_per_address: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counter = counter
        self.per_owner = per_owner
        self.per_address = per_address
        self.sessions_per_address = sessions_per_address
        self.clock = clock
        self._warned = -math.inf

    async def check(
        self, owner: str | None, address: str | None, *, new_session: bool = False
    ) -> Verdict | None:
        """Count one request (``new_session``: one that creates an owner); its verdict, or None
        when it cannot be counted (Redis down)."""
        now = self.clock()
        window = int(now // WINDOW_S)
        reset = max(1, math.ceil((window + 1) * WINDOW_S - now))
        limits: list[tuple[str, str, int]] = []
        if owner is not None:
            limits.append(("owner", f"o:{owner}", self.per_owner))
        if address is not None:
            limits.append(("address", f"a:{address}", self.per_address))
            if new_session and self.sessions_per_address is not None:
                limits.append(("sessions", f"s:{address}", self.sessions_per_address))
        if not limits:
            return None
        try:
            counts = await self.counter.incr([key for _, key, _ in limits], window)
        except Exception as exc:  # redis errors, OSError, timeouts: count nothing
            if now - self._warned >= _WARN_EVERY_S:
                self._warned = now
                log.warning("rate limits are not enforced: the counter failed: %s", exc)
            return None
        verdicts = [
            Verdict(count <= limit, scope, limit, max(0, limit - count), reset)
            for (scope, _, limit), count in zip(limits, counts, strict=True)
        ]
        refused = [v for v in verdicts if not v.allowed]
        return min(refused or verdicts, key=lambda v: v.remaining)


def make_limiter(settings: Settings) -> RateLimiter:
    """In-memory counters for the embedded mode, Redis for the distributed one."""
    counter: Counter = (
        RedisCounter(settings.redis_url) if settings.queue == "celery" else MemoryCounter()
    )
    return RateLimiter(
        counter,
        per_owner=settings.rate_limit_per_owner,
        per_address=settings.rate_limit_per_address,
        sessions_per_address=settings.sessions_per_address_per_minute,
    )


def is_limited_path(path: str) -> bool:
    """The API counts; its health checks, the web page, docs and metrics do not."""
    return path.startswith("/api/") and not (
        path == "/api/health" or path.startswith("/api/health/")
    )


def _owner_key(scope: Scope) -> str | None:
    token = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            kind, _, rest = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and rest.strip():
                token = rest.strip()
            break
    else:
        query = scope.get("query_string", b"").decode("latin-1")
        if "access_token" in query:
            values = parse_qs(query).get("access_token")
            token = values[0] if values else None
    # A hash prefix names the owner without keeping the token in memory or in Redis.
    return token_hash(token[:512])[:32] if token else None


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class RateLimitMiddleware:
    """Pure ASGI: counts the request before the app sees it, refuses it or lets it through
    with the ``RateLimit-*`` headers added to the answer."""

    def __init__(self, app: ASGIApp, *, settings: Settings, limiter: RateLimiter | None = None):
        self.app = app
        self.limiter = limiter or make_limiter(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        if scope["type"] not in ("http", "websocket") or not is_limited_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        new_session = scope.get("method") == "POST" and scope["path"] in (
            "/api/v1/sessions",
            "/api/v1/sessions/wechat",
        )
        verdict = await self.limiter.check(
            _owner_key(scope), _address(scope), new_session=new_session
        )
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            await self._refuse(scope, receive, send, verdict)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in verdict.headers().items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, verdict: Verdict) -> None:
        log.info("rate limited: %s over %d a minute", verdict.scope, verdict.limit)
        if scope["type"] == "websocket":
            # Accepted first, as the job streams do, so a browser learns why: 4000 + 429.
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4429, "reason": "RATE_LIMITED"})
            return
        what = (
            "new sessions a minute from this address"
            if verdict.scope == "sessions"
            else f"requests a minute from this {verdict.scope}"
        )
        error = ServiceError(
            "RATE_LIMITED",
            f"more than {verdict.limit} {what}; try again in {verdict.reset_s} s",
            headers={"Retry-After": str(verdict.reset_s), **verdict.headers()},
            extra={"limit": verdict.limit, "window_s": WINDOW_S},
        )
        response = problem_response(Request(scope), error)
        await response(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                try:
                    await self.limiter.counter.close()
                except Exception as exc:
                    log.warning("closing the rate limit counter: %s", exc)
            await send(message)

        return send_closing
