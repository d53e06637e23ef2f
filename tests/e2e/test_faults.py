"""Faults a real server meets: it is killed in the middle of an upload, its database goes away.

For each: what the client sees while the fault lasts, and that once it is over nothing was lost
or duplicated.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_process import ServiceProcess
from sqlalchemy.engine import make_url
from test_serve import multipart_upload, wait_finished, wait_ready

from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from fixtures_servers import free_port

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("media"))


def _client(service: ServiceProcess, token: str | None = None) -> httpx.Client:
    token = token or httpx.post(f"{service.url}/api/v1/sessions").json()["token"]
    return httpx.Client(
        base_url=service.url,
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
        timeout=60,
    )


def _patch(client: httpx.Client, location: str, data: bytes, offset: int) -> httpx.Response:
    return client.patch(
        location,
        content=data,
        headers={
            **TUS,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    )


def test_an_upload_resumes_after_the_server_was_killed(case: BuiltCase, tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "data").start()
    client = _client(service)
    token = str(client.headers["Authorization"]).split()[1]
    try:
        data = case.dance.read_bytes()
        created = client.post("/api/v1/tus", headers={**TUS, "Upload-Length": str(len(data))})
        assert created.status_code == 201
        location = created.headers["location"]
        half = len(data) // 2
        assert _patch(client, location, data[:half], 0).status_code == 204

        service.kill()  # no goodbye: the process group dies mid-upload
        with pytest.raises(httpx.TransportError):
            _patch(client, location, data[half:], half)
        service.start()
        client.close()
        client = _client(service, token)

        head = client.head(location, headers=TUS)
        assert head.status_code == 200
        assert int(head.headers["upload-offset"]) == half
        assert _patch(client, location, data[half:], half).status_code == 204
        upload = wait_ready(client, location.rsplit("/", 1)[-1])
        assert upload["status"] == "ready"
        assert upload["sha256"] == hashlib.sha256(data).hexdigest()
        assert upload["size"] == len(data)
    finally:
        client.close()
        service.stop()


class TcpProxy:
    """A TCP relay to ``target`` that can be unplugged (every connection cut, the port closed)
    and plugged back on the same port: a database host that drops off the network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def plug(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def unplug(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def database_behind_proxy(postgres_url: str) -> Iterator[tuple[str, TcpProxy]]:
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.plug()
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
    finally:
        proxy.unplug()


def _wait_status(client: httpx.Client, path: str, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(path)
        if answer.status_code == status:
            return
        assert time.monotonic() < deadline, f"{path}: {answer.status_code} {answer.text[:300]}"
        time.sleep(0.2)


def test_a_lost_database_is_reported_and_recovered_from(
    case: BuiltCase, tmp_path: Path, database_behind_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = database_behind_proxy
    service = ServiceProcess(tmp_path / "data", env={"BEATSYNC_DATABASE_URL": url}).start()
    client = _client(service)
    try:
        dance = multipart_upload(client, case.dance)
        bgm = multipart_upload(client, case.bgm)
        body = {"dance_upload_id": dance, "bgm_upload_id": bgm, "options": {}}
        first = wait_finished(client, client.post("/api/v1/jobs", json=body).json()["id"])
        assert first["status"] == "succeeded"

        proxy.unplug()
        _wait_status(client, "/api/health/ready", 503)
        ready = client.get("/api/health/ready").json()
        assert ready["checks"]["database"]["ok"] is False
        assert ready["checks"]["storage"]["ok"] is True
        refused = client.get(f"/api/v1/jobs/{first['id']}")
        assert refused.status_code == 503
        problem = refused.json()
        assert problem["code"] == "DATABASE_UNAVAILABLE"
        assert problem["retryable"] is True
        assert refused.headers["retry-after"] == "5"
        assert str(proxy.port) not in refused.text  # no connection details leak
        assert client.get("/api/health").status_code == 200  # the process itself is alive

        proxy.plug()
        _wait_status(client, "/api/health/ready", 200)
        again = client.get(f"/api/v1/jobs/{first['id']}").json()
        assert again["status"] == "succeeded"
        assert again["result"]["mapping"] == first["result"]["mapping"]
        body["options"] = {"nudge_ms": 5.0}
        second = wait_finished(client, client.post("/api/v1/jobs", json=body).json()["id"])
        assert second["status"] == "succeeded"
        listed = client.get("/api/v1/jobs").json()["items"]
        assert sorted(job["id"] for job in listed) == sorted([first["id"], second["id"]])
    finally:
        client.close()
        service.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system (tmpfs) to put the server's spool on: a disk about to be full."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"a full disk is simulated with a 4 MiB tmpfs, which needs mount (root): "
            f"{mounted.stderr.strip()}",
            pytrace=False,
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_refuses_uploads_and_keeps_serving(
    case: BuiltCase, tmp_path: Path, tiny_disk: Path
) -> None:
    service = ServiceProcess(
        tmp_path / "data", env={"BEATSYNC_SPOOL_DIR": str(tiny_disk / "spool")}
    ).start()
    client = _client(service)
    try:
        big = random.Random(7).randbytes(6 << 20)
        whole = client.post("/api/v1/uploads", files={"file": ("big.mp4", big)})
        assert whole.status_code == 507, whole.text
        assert whole.json()["code"] == "INSUFFICIENT_STORAGE"
        assert whole.headers["retry-after"] == "60"

        created = client.post("/api/v1/tus", headers={**TUS, "Upload-Length": str(len(big))})
        assert created.status_code == 201
        location = created.headers["location"]
        chunk = _patch(client, location, big, 0)
        assert chunk.status_code == 507, chunk.text
        assert chunk.json()["code"] == "INSUFFICIENT_STORAGE"
        head = client.head(location, headers=TUS)
        assert int(head.headers["upload-offset"]) == 0  # nothing half-written was counted

        # Nothing of the refused bytes stays on the disk, and the service goes on serving.
        spool = tiny_disk / "spool"
        assert sum(p.stat().st_size for p in spool.rglob("*") if p.is_file()) == 0
        assert client.get("/api/health/ready").status_code == 200
        small = multipart_upload(client, case.bgm)
        assert wait_ready(client, small)["status"] == "ready"
    finally:
        client.close()
        service.stop()
