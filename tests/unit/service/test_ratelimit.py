"""Rate limits: per owner and per address in one-minute windows, 429 RATE_LIMITED as a problem
document with Retry-After and RateLimit headers; health, metrics and the page are never counted;
a counter that fails lets requests through.

The app's limiter gets a fake clock, so a window never turns over in the middle of a test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings, load_settings
from beatsync.service.ratelimit import (
    WINDOW_S,
    MemoryCounter,
    RateLimiter,
    RateLimitMiddleware,
    RedisCounter,
    Verdict,
    is_limited_path,
    make_limiter,
)
from fixtures_servers import TEST_SECRET_KEY

START = 1_800_000_000.0  # a window boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = START + 15.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check(limiter: RateLimiter, owner: str | None, address: str | None) -> Verdict | None:
    return asyncio.run(limiter.check(owner, address))


# ---------------------------------------------------------------- the limiter


def test_each_owner_has_its_own_budget_per_window() -> None:
    clock = Clock()
    limiter = RateLimiter(MemoryCounter(), per_owner=3, per_address=100, clock=clock)
    verdicts = [check(limiter, "alice", "10.0.0.1") for _ in range(4)]
    assert verdicts == [
        Verdict(True, "owner", 3, 2, 45),
        Verdict(True, "owner", 3, 1, 45),
        Verdict(True, "owner", 3, 0, 45),
        Verdict(False, "owner", 3, 0, 45),
    ]
    assert check(limiter, "bob", "10.0.0.1") == Verdict(True, "owner", 3, 2, 45)
    clock.now = START + WINDOW_S - 0.5
    assert check(limiter, "alice", "10.0.0.1") == Verdict(False, "owner", 3, 0, 1)
    clock.now = START + WINDOW_S  # the next window starts afresh
    assert check(limiter, "alice", "10.0.0.1") == Verdict(True, "owner", 3, 2, 60)


def test_an_address_is_limited_whoever_it_claims_to_be() -> None:
    limiter = RateLimiter(MemoryCounter(), per_owner=100, per_address=5, clock=Clock())
    verdicts = [check(limiter, f"owner-{i}", "10.0.0.9") for i in range(6)]
    assert [v.allowed for v in verdicts if v] == [True] * 5 + [False]
    assert verdicts[-1] == Verdict(False, "address", 5, 0, 45)
    assert verdicts[2] == Verdict(True, "address", 5, 2, 45)  # the tighter budget is told
    assert check(limiter, None, "10.0.0.10") == Verdict(True, "address", 5, 4, 45)
    assert check(limiter, None, None) is None


def test_the_embedded_mode_counts_in_memory_and_the_distributed_mode_in_redis(
    tmp_path: Path,
) -> None:
    embedded = make_limiter(load_settings(data_dir=tmp_path))
    distributed = make_limiter(
        load_settings(
            data_dir=tmp_path,
            queue="celery",
            redis_url="redis://127.0.0.1:1/0",
            secret_key=TEST_SECRET_KEY,
        )
    )
    assert isinstance(embedded.counter, MemoryCounter)
    assert isinstance(distributed.counter, RedisCounter)
    assert distributed.counter.url == "redis://127.0.0.1:1/0"


def test_requests_pass_when_redis_cannot_be_reached(caplog: pytest.LogCaptureFixture) -> None:
    counter = RedisCounter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    limiter = RateLimiter(counter, per_owner=1, per_address=1, clock=Clock())

    async def three() -> list[Verdict | None]:
        try:
            return [await limiter.check("alice", "10.0.0.1") for _ in range(3)]
        finally:
            await counter.close()

    with caplog.at_level(logging.WARNING, logger="beatsync.service.ratelimit"):
        assert asyncio.run(three()) == [None, None, None]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # said once, not at every request
    assert warnings[0].startswith("rate limits are not enforced")


@pytest.mark.parametrize(
    ("path", "limited"),
    [
        ("/api/v1/jobs", True),
        ("/api/v1/tus/upl_x", True),
        ("/api/v1/files/job_x/output.mp4", True),
        ("/api/health", False),
        ("/api/health/ready", False),
        ("/api/healthy", True),
        ("/metrics", False),
        ("/", False),
        ("/app.js", False),
        ("/docs", False),
    ],
)
def test_what_is_counted(path: str, limited: bool) -> None:
    assert is_limited_path(path) is limited


# ---------------------------------------------------------------- in the app


@pytest.fixture
def limited(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        workers=1,
        min_free_disk_mb=0,
        log_json=False,
        rate_limit_per_owner=3,
        rate_limit_per_address=6,
        sessions_per_address_per_minute=100,
    )


def _middleware(app: Any) -> RateLimitMiddleware:
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, RateLimitMiddleware):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, RateLimitMiddleware), "the app has no rate limiter"
    return layer


@pytest.fixture
def app_client(limited: Settings, dispatcher: Any) -> Iterator[tuple[TestClient, Clock]]:
    app = create_app(limited, dispatcher=dispatcher)
    with TestClient(app) as client:
        clock = Clock()
        _middleware(app).limiter.clock = clock
        yield client, clock


def test_an_owner_over_its_limit_gets_a_problem_document(
    app_client: tuple[TestClient, Clock],
) -> None:
    client, clock = app_client
    token = client.post("/api/v1/sessions").json()["token"]  # counted for the address only
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    seen = []
    for _ in range(3):
        answer = client.get("/api/v1/sessions/me", headers=headers)
        assert answer.status_code == 200
        seen.append(
            tuple(answer.headers[f"ratelimit-{h}"] for h in ("limit", "remaining", "reset"))
        )
    assert seen == [("3", "2", "45"), ("3", "1", "45"), ("3", "0", "45")]

    refused = client.get("/api/v1/sessions/me", headers=headers)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "45"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["x-request-id"]
    body = refused.json()
    assert body["code"] == "RATE_LIMITED"
    assert body["status"] == 429
    assert body["message"] == "Too many requests; try again shortly."
    assert body["retryable"] is True
    assert body["request_id"] == refused.headers["x-request-id"]
    assert body["instance"] == "/api/v1/sessions/me"
    assert (body["limit"], body["window_s"]) == (3, 60)
    assert "owner" in body["detail"]
    # The same token in the query (EventSource, WebSocket) is the same owner.
    by_query = client.get(f"/api/v1/sessions/me?access_token={token}")
    assert by_query.status_code == 429
    clock.now += WINDOW_S
    assert client.get("/api/v1/sessions/me", headers=headers).status_code == 200


def test_an_address_over_its_limit_is_refused_for_every_owner(
    app_client: tuple[TestClient, Clock],
) -> None:
    client, _ = app_client
    tokens = [client.post("/api/v1/sessions").json()["token"] for _ in range(3)]
    for token in tokens:
        answer = client.get("/api/v1/sessions/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    refused = client.post("/api/v1/sessions")
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert "address" in refused.json()["detail"]
    # Nothing was done for a refused request: no new owner.
    assert refused.json().get("token") is None
    with (
        client.websocket_connect(f"/api/v1/jobs/job_x/ws?access_token={tokens[0]}") as socket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        socket.receive_text()
    # 4000 + the HTTP status, as the job streams close; the route (4404) was never reached.
    assert (closed.value.code, closed.value.reason) == (4429, "RATE_LIMITED")


def test_health_metrics_and_the_page_are_never_limited(
    app_client: tuple[TestClient, Clock],
) -> None:
    client, _ = app_client
    for _ in range(7):
        client.post("/api/v1/sessions")
    assert client.post("/api/v1/sessions").status_code == 429
    for path in ("/api/health", "/api/health/ready", "/", "/docs", "/openapi.json"):
        for _ in range(10):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert "ratelimit-limit" not in answer.headers


def test_another_address_has_its_own_budget(limited: Settings, dispatcher: Any) -> None:
    app = create_app(limited, dispatcher=dispatcher)
    # One client runs the app's lifespan; the other only sends from elsewhere.
    second = TestClient(app, client=("203.0.113.6", 40000))
    with TestClient(app, client=("203.0.113.5", 40000)) as first:
        _middleware(app).limiter.clock = Clock()
        for _ in range(6):
            assert first.post("/api/v1/sessions").status_code == 201
        assert first.post("/api/v1/sessions").status_code == 429
        assert second.post("/api/v1/sessions").status_code == 201
