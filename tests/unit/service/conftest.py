"""Fixtures for the service's tests: settings in a temporary folder, an app, a client, a token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from socket import socket as socket_type

import pytest
from factories import Rows
from fastapi.testclient import TestClient

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings, load_settings
from beatsync.service.jobs.dispatch import DispatchUnavailable
from beatsync.service.jobs.liveness import Liveness


class ManualDispatcher:
    """Records what the API submits and cancels; tests run the jobs themselves (``drain``)."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.canceled: list[str] = []
        self.started = False
        self.down = False  # a queue that does not answer: submitting raises

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def submit(self, job_id: str) -> None:
        if self.down:
            raise DispatchUnavailable("the queue does not answer")
        self.submitted.append(job_id)

    def cancel(self, job_id: str) -> None:
        self.canceled.append(job_id)

    def check(self) -> None:
        return None

    def workers(self) -> Liveness:
        return Liveness(1, 0.0)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """``make_settings(**overrides)``: settings in a temporary folder, changed by ``overrides``."""

    def make(**overrides: object) -> Settings:
        return load_settings(
            data_dir=tmp_path / "data",
            workers=1,
            min_free_disk_mb=0,
            log_json=False,
            **overrides,
        )

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def dispatcher() -> ManualDispatcher:
    return ManualDispatcher()


@pytest.fixture
def make_client(
    dispatcher: ManualDispatcher,
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(settings)``: a started app around a :class:`ManualDispatcher`."""
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        client = TestClient(create_app(settings, dispatcher=dispatcher))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient], settings: Settings) -> TestClient:
    return make_client(settings)


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    """Headers of a fresh anonymous owner."""
    token = client.post("/api/v1/sessions").json()["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def other_auth(client: TestClient) -> dict[str, str]:
    """Headers of a second owner, for isolation tests."""
    token = client.post("/api/v1/sessions").json()["token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def rows(settings: Settings, client: TestClient) -> Iterator[Rows]:
    """Rows and stored files made directly, as a worker or an earlier upload would leave them."""
    made = Rows(settings)
    yield made
    made.close()


class LiveServer:
    """The app behind a real uvicorn, configured as ``beatsync serve`` runs it, in a thread."""

    def __init__(self, settings: Settings, dispatcher: ManualDispatcher, **overrides: object):
        import socket
        import threading

        import uvicorn

        from beatsync.service.server import uvicorn_config

        self.settings = settings
        self.app = create_app(settings, dispatcher=dispatcher)
        self.server = uvicorn.Server(uvicorn_config(settings, self.app, **overrides))
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> LiveServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()

    def connect(self, *, timeout: float = 10.0) -> socket_type:
        import socket

        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def token(self) -> str:
        import httpx

        answer = httpx.post(f"{self.url}/api/v1/sessions", timeout=10)
        answer.raise_for_status()
        return str(answer.json()["token"])


@pytest.fixture
def make_live(dispatcher: ManualDispatcher) -> Iterator[Callable[..., LiveServer]]:
    """``make_live(settings, **uvicorn_overrides)``: a started :class:`LiveServer`."""
    servers: list[LiveServer] = []

    def make(settings: Settings, **overrides: object) -> LiveServer:
        server = LiveServer(settings, dispatcher, **overrides)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
