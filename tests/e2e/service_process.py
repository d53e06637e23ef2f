"""``beatsync serve`` as a real subprocess on a free port, for end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from fixtures_servers import free_port
from managed_process import ManagedProcess

__all__ = ["FINISHED", "ServiceProcess"]

FINISHED = {"succeeded", "failed", "canceled"}  # the statuses a job ends in
READY_DEADLINE_S = 60.0
# Every test client speaks from 127.0.0.1, standing for many users: the shares of one address
# (sessions a minute, jobs at once) are tested on their own, not met by accident here.
SHARED_ADDRESS = {
    "BEATSYNC_SESSIONS_PER_ADDRESS_PER_MINUTE": "100000",
    "BEATSYNC_MAX_ACTIVE_JOBS_PER_ADDRESS": "100000",
}


class ServiceProcess(ManagedProcess):
    """``python -m beatsync serve`` with its data in ``data_dir``; it can be killed and started
    again on the same port and data. Its output goes to ``data_dir/server.log``."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None):
        super().__init__(
            data_dir / "server.log",
            {**SHARED_ADDRESS, "BEATSYNC_DATA_DIR": str(data_dir), **(env or {})},
        )
        self.data_dir = data_dir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(
        self, *, timeout: float = READY_DEADLINE_S, ready_without: tuple[str, ...] = ()
    ) -> ServiceProcess:
        """Start and wait until ``/api/health/ready`` answers 200 (or fails only the checks
        named in ``ready_without``, e.g. ``workers`` before any is started); raise with the
        log if not."""
        process = self.spawn(
            "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"beatsync serve exited early:\n{self.output()}")
            try:
                answer = httpx.get(f"{self.url}/api/health/ready", timeout=2)
                if answer.status_code == 200:
                    return self
                failing = {k for k, c in answer.json().get("checks", {}).items() if not c["ok"]}
                if answer.status_code == 503 and failing <= set(ready_without):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"beatsync serve was not ready in {timeout:g} s:\n{self.output()}")
