"""Real servers for the integration and end-to-end tests: PostgreSQL, Redis and an S3 store.

A pytest plugin (``tests/conftest.py`` loads it), so that every test folder has these fixtures.
Each fixture reads its URL from the environment first (``BEATSYNC_TEST_POSTGRES_URL``,
``BEATSYNC_TEST_REDIS_URL``), else uses the machine's own server on its standard port, else starts
one (``redis-server`` on a free port); the S3 server is moto's, started on a free port. When a
server can be neither found nor started the test fails and says which, never skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "BEATSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BEATSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_URL)
    if not _reachable(admin.host or "127.0.0.1", admin.port or 5432):
        pytest.fail(
            f"PostgreSQL is not reachable at {admin.host}:{admin.port}; start it or set "
            "BEATSYNC_TEST_POSTGRES_URL",
            pytrace=False,
        )
    name = f"beatsync_test_{secrets.token_hex(6)}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def restart(self) -> None:
        """Stop and start the server (only one this fixture started itself)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop the server; its data (it keeps none on disk) is gone."""
        if self.process is None:
            raise RuntimeError("this Redis belongs to the machine; use redis_private")
        self.process.terminate()
        self.process.wait(10)

    def start(self) -> None:
        """Start a stopped server again on its port."""
        if self.process is None:
            raise RuntimeError("this Redis belongs to the machine; use redis_private")
        if self.process.poll() is None:
            raise RuntimeError("this Redis is running")
        self.process = _start_redis(self.port)


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian: redis-server)", pytrace=False)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _reachable("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
        time.sleep(0.05)
    return process


@pytest.fixture
def redis_private() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which the test may restart."""
    port = free_port()
    server = RedisServer(url=f"redis://127.0.0.1:{port}/0", process=_start_redis(port), port=port)
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(10)


@pytest.fixture
def redis_url(redis_private: RedisServer) -> str:
    """A Redis URL nothing else uses (a private server, so tests never see each other's keys)."""
    return redis_private.url


# A key the distributed mode accepts (it refuses short or well-known ones); tests only.
TEST_SECRET_KEY = "test-cluster-signing-key-0123456789abcdef"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def settings(self) -> dict[str, object]:
        """The ``BEATSYNC_S3_*`` settings (as :func:`load_settings` overrides) for this server."""
        return {
            "secret_key": TEST_SECRET_KEY,
            "storage": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": self.bucket,
            "s3_access_key_id": self.access_key_id,
            "s3_secret_access_key": self.secret_access_key,
            "s3_region": self.region,
            "s3_addressing_style": "path",
        }

    def environment(self) -> dict[str, str]:
        return {f"BEATSYNC_{k.upper()}": str(v) for k, v in self.settings().items()}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on a free port, for the whole test run."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Server:
    """A new, empty bucket on the S3 server."""
    import boto3

    server = S3Server(endpoint_url=s3_endpoint, bucket=f"beatsync-{secrets.token_hex(6)}")
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
        region_name=server.region,
    )
    client.create_bucket(Bucket=server.bucket)
    return server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
