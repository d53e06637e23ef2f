"""``beatsync serve`` as a real subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["ServiceProcess", "free_port"]

READY_DEADLINE_S = 60.0
STOP_GRACE_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """Start, kill and restart ``python -m beatsync serve`` with its data in ``data_dir``.

    The server runs in its own process group, so :meth:`kill` takes its workers with it, as a
    crash or a power cut would, and nothing else. Its output goes to ``data_dir/server.log``.
    """

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.env = {
            **os.environ,
            "BEATSYNC_DATA_DIR": str(data_dir),
            "BEATSYNC_MIN_FREE_DISK_MB": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = READY_DEADLINE_S) -> ServiceProcess:
        """Start and wait until ``/api/health/ready`` answers 200; raise with the log if not."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "beatsync", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"beatsync serve exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/api/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"beatsync serve was not ready in {timeout:g} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the whole process group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, a grace period for the workers to stop, then SIGKILL to what is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]
