"""A ``python -m beatsync …`` subprocess in its own process group, for the end-to-end tests.

:meth:`ManagedProcess.kill` takes the whole group (the server's or worker's job processes too),
as a crash or a power cut would; :meth:`ManagedProcess.stop` is the polite way. Output goes to a
log file that a failing test prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["ManagedProcess"]

STOP_GRACE_S = 20.0


class ManagedProcess:
    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "BEATSYNC_MIN_FREE_DISK_MB": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """Run ``python -m beatsync ARGS`` with the log appended to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "beatsync", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.process

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the whole process group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, a grace period for running work to stop, then SIGKILL to what is left."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE_S)
        self.kill()

    def output(self) -> str:
        """The end of the log, for a failure message."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-20000:]
