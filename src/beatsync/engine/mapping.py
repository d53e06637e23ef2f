"""The answer's shape: reference time as a linear function of dance time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Mapping"]


@dataclass(frozen=True, slots=True)
class Mapping:
    """A linear map from dance-file time to reference-file time, both in seconds.

    ``offset`` is the reference time at dance time 0; ``scale`` is reference seconds per dance
    second (1 + drift; 0.75–1.35 for a version played slower or faster, 0.5–1.5 for a tempo
    change). ``pitch_kept`` says how the class's music changed speed: false (the default) for a
    resampled version whose pitch moves with the speed (and for clock drift alone), true for a
    time-stretch that kept the pitch (a practice player at 0.75×), which the output's clean
    track then follows the same way.
    """

    offset: float
    scale: float = 1.0
    pitch_kept: bool = False

    def bgm_time(self, dance_time: float) -> float:
        """Reference time (s) heard at ``dance_time`` (s)."""
        return self.offset + self.scale * dance_time

    def bgm_time_array(self, dance_time: NDArray[np.float64]) -> NDArray[np.float64]:
        """:meth:`bgm_time` of each element (s)."""
        return self.offset + self.scale * dance_time

    def dance_time(self, bgm_time: float) -> float:
        """Dance time (s) at which reference time ``bgm_time`` (s) is heard."""
        return (bgm_time - self.offset) / self.scale

    @property
    def drift_ppm(self) -> float:
        """The scale's departure from 1 in parts per million (clock drift, or a speed change)."""
        return (self.scale - 1.0) * 1e6

    def nudged(self, milliseconds: float) -> Mapping:
        """The same map with the reference played ``milliseconds`` later against the picture."""
        return Mapping(self.offset - milliseconds / 1000.0, self.scale, self.pitch_kept)

    @property
    def kind(self) -> str:
        """``"pitch-kept"`` or ``"resampled"`` (the default, also for clock drift alone)."""
        return "pitch-kept" if self.pitch_kept else "resampled"
