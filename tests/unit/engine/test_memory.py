"""tune_allocator(): glibc's thresholds set for a job process."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_the_thresholds_are_set_on_linux() -> None:
    # In a child: the setting is the whole process's, and the test run's own stays as it was.
    code = "from beatsync.engine.memory import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
