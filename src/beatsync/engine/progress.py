"""A run's stages and its progress: stage-local fractions turned into one overall fraction.

Both runs (:func:`~.pipeline.sync` and :func:`~.audiofirst.sync_audio_first`) go through the same
stages and report through the same callback, so they share this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .result import StageTiming

__all__ = ["STAGES", "Progress", "ProgressCallback"]

STAGES = ("probe", "decode", "align", "trim", "render", "done")

ProgressCallback = Callable[[str, float, str], None]
"""``(stage, fraction, message)``; ``fraction`` is overall progress in [0, 1], never decreasing."""

# Where each stage starts on the overall progress scale; render takes the largest share.
_STAGE_START = {
    "probe": 0.0,
    "decode": 0.04,
    "align": 0.2,
    "trim": 0.45,
    "render": 0.5,
    "done": 1.0,
}


class Progress:
    """Turns stage-local fractions into one overall fraction that never goes backwards, and
    times each stage."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0
        self.timings: list[StageTiming] = []

    def report(self, stage: str, local: float, message: str) -> None:
        names = list(_STAGE_START)
        lo = _STAGE_START[stage]
        hi = _STAGE_START[names[min(names.index(stage) + 1, len(names) - 1)]]
        overall = max(self._last, min(1.0, lo + (hi - lo) * min(max(local, 0.0), 1.0)))
        self._last = overall
        if self._callback is not None:
            self._callback(stage, overall, message)

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        self.report(name, 0.0, message)
        began = time.perf_counter()
        yield
        self.timings.append(StageTiming(name, round(time.perf_counter() - began, 4)))
