"""``beatsync worker`` as a real subprocess, for the integration and end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

__all__ = ["WorkerProcess"]

READY_DEADLINE_S = 60.0
STOP_GRACE_S = 20.0


class WorkerProcess:
    """Start, kill and stop ``python -m beatsync worker`` with ``env`` (``BEATSYNC_*``).

    The worker runs in its own process group, so :meth:`kill` takes its pool processes with it,
    as a crash or a power cut would. Its log (JSON lines) goes to ``log_path``.
    """

    def __init__(self, log_path: Path, env: dict[str, str], *, concurrency: int = 1) -> None:
        self.log_path = log_path
        self.concurrency = concurrency
        self.env = {
            **os.environ,
            "BEATSYNC_LOG_JSON": "true",
            "BEATSYNC_LOG_LEVEL": "INFO",
            "BEATSYNC_MIN_FREE_DISK_MB": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = READY_DEADLINE_S) -> WorkerProcess:
        """Start and wait until the worker consumes from its queue; raise with its log if not."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        seen = len(self.lines())
        command = [sys.executable, "-m", "beatsync", "worker"]
        command += ["--concurrency", str(self.concurrency)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"beatsync worker exited early:\n{self.output()}")
            if any(m.endswith(" ready.") for m in self.messages()[seen:]):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"beatsync worker was not ready in {timeout:g} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pool_pids(self) -> set[int]:
        """The pids of the pool processes that run the jobs."""
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def kill(self) -> None:
        """SIGKILL the whole process group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (running jobs finish), then SIGKILL to what is left after a grace period."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        self.kill()

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

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:] if self.log_path.exists() else ""
