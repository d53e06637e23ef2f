"""Readings that fail the way a demuxer can, for :class:`beatsync.service.probing.MediaReader`
(module-level, so that a reader process can import them by name)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from beatsync.service.probing import read_file

__all__ = ["crash_on_name", "hang_on_name"]


def crash_on_name(path: str) -> tuple[Any, ...]:
    """Read real files; die of a segmentation fault on a path ending in ``.crash``."""
    if path.endswith(".crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return read_file(path)


def hang_on_name(path: str) -> tuple[Any, ...]:
    """Read real files; never come back from a path ending in ``.hang``."""
    if path.endswith(".hang"):
        time.sleep(3600)
    return read_file(path)
