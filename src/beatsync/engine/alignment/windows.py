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
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .gcc import FrameTrack, GccResult, Windows, frame_agreement, window_lags
from .kept import KEPT_AGREE, KEPT_REACHES, kept_agreement, kept_frame, kept_lags
from .spectra import FrameSpectra

__all__ = ["GRAINS", "IN_PHASE", "REACH", "Agreement", "Lags", "WindowKind", "window_kind"]

# Seconds either side of the line within which each in-phase window's peak is sought.
REACH = 0.08


class Lags(Protocol):
    """Each of ``windows``' lag, strength and prominence. ``workers``: threads per FFT;
    ``spectra``: x's frame spectra that the trials of a scan share, looked up and added to."""

    def __call__(
        self, windows: Windows, *, workers: int = -1, spectra: FrameSpectra | None = None
    ) -> GccResult: ...


class Agreement(Protocol):
    """How well each of the first ``count`` frames of ``track`` matches under its line, about 0
    without music."""

    def __call__(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.float32],
        track: FrameTrack,
        count: int,
        *,
        rate: int,
        pool: Executor | None = None,
    ) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class WindowKind:
    """How one kind of recording's windows are measured and fitted.

    ``resampled``: whether the dance signal is resampled to the line's speed. ``span``: the
    windows' length, in measuring windows. ``passes``: the fine stage's (gate, reach) in
    seconds, pass by pass: how far from the line windows may lie to be fitted, and how far
    their peaks are sought. ``agree``: a window agrees with a fitted line within three robust
    deviations of the fit, kept within these (s). ``frame``: ``(scale, rate, longest,
    search)`` → frame length (samples). ``lags``: each window's lag, strength and prominence
    (:class:`Lags`). ``agreement``: each short frame's match, which tells where the music plays
    and where an edit's seams lie; ``share``: the least share of the agreement its level
    predicts that the music may show there (:func:`~.presence.frame_evidence`). ``coherent``:
    whether frames add up in phase over long spans, so that a line can be moved onto the
    earliest arrival (:mod:`.direct`) or onto the waveform from far away (:mod:`.wide`).
    ``regrow``: when set, the fine stage judges afresh under each new line where the music is
    (windows within this many seconds of it, in runs), instead of keeping the region the
    previous line's windows found.
    """

    resampled: bool
    span: float
    passes: tuple[tuple[float, float], ...]
    agree: tuple[float, float]
    frame: Callable[[float, int, int, float], int]
    lags: Lags
    agreement: Agreement
    share: float
    coherent: bool
    regrow: float | None


def _longest(scale: float, rate: int, longest: int, search: float) -> int:
    return longest


def _grain_agreement(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    count: int,
    *,
    rate: int,
    pool: Executor | None = None,
) -> NDArray[np.float64]:
    # One peak per frame says little alone: averaged over five, as the plot's curve is.
    agree = kept_agreement(x, y, track, count, rate=rate)
    smooth: NDArray[np.float64] = np.convolve(agree, np.ones(5) / 5, mode="same")
    return smooth


# The search stays wide in both passes: a window that lands within 2 ms of the line by chance
# then has a 1-in-40 probability, so agreeing windows are evidence.
IN_PHASE = WindowKind(
    resampled=True,
    span=1.0,
    passes=((0.08, REACH), (0.01, REACH)),
    agree=(0.001, 0.002),
    frame=_longest,
    lags=window_lags,
    agreement=frame_agreement,
    share=1.0,
    coherent=True,
    regrow=None,
)
# A pitch-kept recording's frames agree with the music only as well as its grains line up, less
# in a tonal passage (its lags repeat every period) than in a rhythmic one: the music may show as
# little as this share of the agreement the level predicts. Its grains scatter by milliseconds:
# they add up to no sharp arrival, nor in phase over long frames.
_KEPT_SHARE = 0.4
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
    agreement=_grain_agreement,
    share=_KEPT_SHARE,
    coherent=False,
    regrow=KEPT_AGREE,
)


def window_kind(pitch_kept: bool) -> WindowKind:
    """The windows of a pitch-kept line's recording, or of any other."""
    return GRAINS if pitch_kept else IN_PHASE
