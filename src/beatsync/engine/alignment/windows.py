"""The two kinds of window the fine stage measures: frames that add up in phase, and grains.

A recording at the reference's speed (clock drift allowed) or a resampled version of it keeps
the song's waveform once the dance signal is resampled to the line's speed: its frames'
cross-spectra add up in phase over a window (:func:`~.gcc.window_lags`). A tempo change with the
pitch kept does not: a stretcher's grains agree in lag only, one short frame at a time, so its
windows are read from their frames' own peaks, twice as long, searched over a narrower reach
and fitted with a wider tolerance (:mod:`.kept`). Where the windows lie, how lines are fitted
through them and how their agreement is counted is shared; a :class:`WindowKind` holds what
differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .gcc import FrameTrack, GccResult, window_lags
from .kept import KEPT_REACHES, kept_frame, kept_lags

__all__ = ["GRAINS", "IN_PHASE", "REACH", "WindowKind", "window_kind"]

# Seconds either side of the line within which each in-phase window's peak is sought.
REACH = 0.08

Lags = Callable[
    [NDArray[np.float32], NDArray[np.float32], FrameTrack, NDArray[np.int64], int, int, float, int],
    GccResult,
]


@dataclass(frozen=True, slots=True)
class WindowKind:
    """How one kind of recording's windows are measured and fitted.

    ``resampled``: whether the dance signal is resampled to the line's speed. ``span``: the
    windows' length, in measuring windows. ``passes``: the fine stage's (gate, reach) in
    seconds, pass by pass: how far from the line windows may lie to be fitted, and how far
    their peaks are sought. ``agree``: a window agrees with a fitted line within three robust
    deviations of the fit, kept within these (s). ``frame``: ``(scale, rate, longest,
    search)`` → frame length (samples). ``lags``: ``(x, y, track, starts, width, rate, search,
    workers)`` → each window's lag, strength and prominence.
    """

    resampled: bool
    span: float
    passes: tuple[tuple[float, float], ...]
    agree: tuple[float, float]
    frame: Callable[[float, int, int, float], int]
    lags: Lags


def _longest(scale: float, rate: int, longest: int, search: float) -> int:
    return longest


def _in_phase_lags(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    starts: NDArray[np.int64],
    width: int,
    rate: int,
    search: float,
    workers: int,
) -> GccResult:
    return window_lags(x, y, track, starts, width, rate=rate, search=search, workers=workers)


# The search stays wide in both passes: a window that lands within 2 ms of the line by chance
# then has a 1-in-40 probability, so agreeing windows are evidence.
IN_PHASE = WindowKind(
    resampled=True,
    span=1.0,
    passes=((0.08, REACH), (0.01, REACH)),
    agree=(0.001, 0.002),
    frame=_longest,
    lags=_in_phase_lags,
)
# Windows twice as long and short frames, whose reach shrinks with them. More passes: the
# first, with the slope only scanned, may be too far off at the ends for their windows to
# agree, and the line would be fitted over the middle alone; the last two measure with shorter
# frames (:data:`~.kept.KEPT_REACHES`). The wider tolerance: the windows
# average grains that a stretcher lays a few milliseconds either side of the line, and their
# mean wanders by a millisecond or two with the music; the tighter bounds would fit the line
# through the few windows that happen to sit closest together.
GRAINS = WindowKind(
    resampled=False,
    span=2.0,
    passes=tuple(zip((0.08, 0.01, 0.01, 0.01), KEPT_REACHES, strict=True)),
    agree=(0.002, 0.004),
    frame=kept_frame,
    lags=kept_lags,
)


def window_kind(pitch_kept: bool) -> WindowKind:
    """The windows of a pitch-kept line's recording, or of any other."""
    return GRAINS if pitch_kept else IN_PHASE
