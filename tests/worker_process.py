"""``beatsync worker`` as a real subprocess, for the integration and end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import psutil

from managed_process import ManagedProcess

__all__ = ["WorkerProcess"]

READY_DEADLINE_S = 60.0


class WorkerProcess(ManagedProcess):
    """Start, kill and stop ``python -m beatsync worker`` with ``env`` (``BEATSYNC_*``).

    The worker runs in its own process group, so :meth:`kill` takes its pool processes with it,
    as a crash or a power cut would. Its log (JSON lines) goes to ``log_path``.
    """

    def __init__(self, log_path: Path, env: dict[str, str], *, concurrency: int = 1) -> None:
        super().__init__(
            log_path, {"BEATSYNC_LOG_JSON": "true", "BEATSYNC_LOG_LEVEL": "INFO", **env}
        )
        self.concurrency = concurrency

    def start(self, *, timeout: float = READY_DEADLINE_S) -> WorkerProcess:
        """Start and wait until the worker consumes from its queue; raise with its log if not."""
        seen = len(self.lines())
        self.spawn("worker", "--concurrency", str(self.concurrency))
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"beatsync worker exited early:\n{self.output()}")
            if any(m.endswith(" ready.") for m in self.messages()[seen:]):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"beatsync worker was not ready in {timeout:g} s:\n{self.output()}")

    def pool_pids(self) -> set[int]:
        """The pids of the pool processes that run the jobs."""
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def lines(self) -> list[dict[str, Any]]:
        """The log records written so far (lines that are not JSON are skipped)."""
        if not self.log_path.exists():
            return []
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def messages(self, job_id: str | None = None) -> list[str]:
        """The log messages, or those about ``job_id``."""
        return [
            str(r.get("message", ""))
            for r in self.lines()
            if job_id is None or r.get("job_id") == job_id
        ]
