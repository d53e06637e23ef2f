"""Where in the dance recording the reference's music is heard."""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from .fine import Fit, Signals, frame_track
from .gcc import frame_agreement
from .mapping import Mapping

__all__ = ["music_span"]


def music_span(
    signals: Signals, mapping: Mapping, fit: Fit, *, pool: Executor | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[float, float]]:
    """How well each moment of the dance recording matches the mapped reference, and the span
    where the music is heard.

    Per 32 ms frame, the phase agreement with the recording's average cross-spectrum; the span
    is the stretch whose agreement most exceeds half the typical in-music level (the largest
    sum of a contiguous run), so short gaps in the music do not split it. ``pool``: threads
    that share the frames.
    """
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    frame = 1024
    x, stretch, track = frame_track(signals, mapping, frame=frame, hop=frame // 2)
    count = track.frame_count(len(x))
    agree = frame_agreement(x, bgm.samples, track, count, rate=rate, pool=pool)
    smooth = np.convolve(agree, np.ones(5) / 5, mode="same")
    centres = dance.start + (np.arange(count) * track.hop + frame / 2) / rate / stretch
    agreed = fit.track.times[fit.track.inlier]
    if len(agreed) == 0:
        agreed = fit.track.times if len(fit.track.times) else centres
    core = (centres >= agreed.min()) & (centres <= agreed.max())
    level = float(np.median(smooth[core])) if core.any() else float(smooth.max(initial=0.0))
    score = np.clip(smooth / max(level, 1e-9), 0.0, 1.0)
    lo, hi = _largest_run(smooth - 0.5 * level)
    if hi <= lo:
        return centres, score, (float(agreed.min()), float(agreed.max()))
    half = track.hop / rate / stretch / 2
    return centres, score, (float(centres[lo]) - half, float(centres[hi - 1]) + half)


def _largest_run(values: NDArray[np.float64]) -> tuple[int, int]:
    """``(lo, hi)`` maximising ``values[lo:hi].sum()`` (Kadane); ``(0, 0)`` if all negative."""
    best, best_lo, best_hi = 0.0, 0, 0
    running, lo = 0.0, 0
    for i, v in enumerate(values.tolist()):
        if running <= 0.0:
            running, lo = v, i
        else:
            running += v
        if running > best:
            best, best_lo, best_hi = running, lo, i + 1
    return best_lo, best_hi
