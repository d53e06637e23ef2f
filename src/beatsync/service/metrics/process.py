"""What this process measures itself: its HTTP traffic, the upload bytes it receives, its resources.

One :class:`ProcessMetrics` per process, made on first use: Prometheus scrapes a process, and
several apps in one process (as in tests) share it. Routes are labelled by their template
(``/api/v1/jobs/{job_id}``), never by the raw path: ids would make every request a new series.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HTTP_BUCKETS",
    "HttpMetricsMiddleware",
    "ProcessMetrics",
    "count_upload_bytes",
    "process_metrics",
    "route_template",
]

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ProcessMetrics:
    """The metrics one process measures: its HTTP traffic, upload bytes and resources."""

    def __init__(self) -> None:
        # A `_created` series beside every counter and histogram doubles what Prometheus stores
        # and no panel reads it. (The switch is the library's, for the whole process.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "beatsync_http_requests",
            "HTTP requests answered, by method, route template and status class.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "beatsync_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "beatsync_http_requests_in_flight",
            "Requests being answered now, open event streams and WebSockets included.",
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "beatsync_upload_bytes",
            "Upload bytes received, by protocol (multipart; tus once their offset is recorded).",
            ("protocol",),
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)


_process: ProcessMetrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> ProcessMetrics:
    """This process's metrics, made on first use (Prometheus scrapes a process, not an app)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = ProcessMetrics()
        return _process


def count_upload_bytes(protocol: str, size: int) -> None:
    """Count ``size`` bytes of upload data received and kept through ``protocol``."""
    if size > 0:
        process_metrics().upload_bytes.labels(protocol).inc(size)


def route_template(scope: Scope) -> str:
    """The template of the route that answered (``/api/v1/jobs/{job_id}``), never the path."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if route is None and "endpoint" in scope:
        # A mounted app (the web page): FastAPI's router names no route for it, but the mount
        # point is where the root path grew.
        mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))) :]
        return f"{mounted}/{{path}}"
    return "unmatched"


class HttpMetricsMiddleware:
    """Counts and times every request by method, route template and status class.

    Pure ASGI, like the other middleware, so streamed uploads and downloads pass unbuffered. The
    route is read after the app ran: the router writes the matched route into the scope.
    """

    def __init__(self, app: ASGIApp, metrics: ProcessMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or process_metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        websocket = scope["type"] == "websocket"
        status = 0
        started = time.perf_counter()

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = message["status"]
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and not status:
                status = 403  # closed before the handshake completed: the server refuses it
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.metrics.in_flight.dec()
            method = "GET" if websocket else scope["method"]
            route = route_template(scope)
            # No answer at all means an exception, which the server turns into a 500.
            status_class = f"{status // 100}xx" if status else "5xx"
            self.metrics.requests.labels(method, route, status_class).inc()
            if not websocket:
                self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)
