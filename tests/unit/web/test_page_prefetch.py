"""The page's track fetched ahead (a nudge rendered before "Apply"), run in Node: each track is
fetched once, and a nudge fetched ahead while an earlier one is assembled is kept."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("page_prefetch.mjs")


def test_a_track_taken_by_an_assembly_is_neither_aborted_nor_fetched_again() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (make node)", pytrace=False)
    done = subprocess.run(
        [node, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    a, b = "/api/v1/files/job_a/audio.m4a", "/api/v1/files/job_b/audio.m4a"
    assert seen["fetched"] == [a, b]
    assert seen["aborted"] == []
    assert seen["kept"] == b
