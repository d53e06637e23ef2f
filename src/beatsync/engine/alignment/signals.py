"""Both recordings, and the dance signal resampled to a change of speed.

A resampled version of the song (pitch moving with tempo) is undone by resampling the dance
signal once per 0.1 % of speed, so lines and slope trials share a few resamplings; clock drift,
and what is left of the speed after the resampling, is followed frame by frame by the callers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from ..media.decode import Audio

__all__ = ["Signals", "cubic_resample", "stretch_key", "stretched", "stretched_length"]

_STRETCH_GRID = 0.001
# Clock drift (and the slope trials around it) stays within this of 1: no resampling needed.
_NO_STRETCH = 0.003
_RESAMPLE_BLOCK = 1 << 18
# Whole resamplings kept (a slope scan passes through a dozen speeds, each tens of megabytes
# for a long class), and the share of one below which only the samples read are made.
_HELD = 3
_PARTIAL = 0.5


@dataclass(slots=True)
class Signals:
    """Both recordings, and the dance signal resampled to the last few speeds used."""

    dance: Audio
    bgm: Audio
    # Threads per FFT: all cores, or one while candidates are measured side by side (the
    # transforms' own threads then only add waiting).
    fft_workers: int = -1
    stretched: dict[Fraction, NDArray[np.float32]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def stretched(
    signals: Signals, scale: float, *, spans: NDArray[np.int64] | None = None
) -> tuple[NDArray[np.float32], float]:
    """The dance signal resampled so one of its seconds spans about one reference second, and
    the ratio used (a multiple of 0.1 %, so lines and slope trials share a few resamplings).

    Only a change of speed needs it: clock drift, and what is left of the speed after the
    resampling, is followed frame by frame. ``spans`` (rows of first and end sample of the
    result) are the only samples the caller reads: when they cover little of it (a slope
    trial's few windows), only they are made, the rest is zero, and nothing is kept. Whole
    resamplings are kept for the last ``_HELD`` speeds.
    """
    key = stretch_key(scale)
    if key is None:
        return signals.dance.samples, 1.0
    with signals.lock:
        held = signals.stretched.pop(key, None)
        if held is not None:
            signals.stretched[key] = held  # the most recently used goes last
            return held, float(key)
    length = stretched_length(signals, key)
    if spans is not None and int((spans[:, 1] - spans[:, 0]).sum()) < _PARTIAL * length:
        return cubic_resample(signals.dance.samples, float(key), spans=spans), float(key)
    whole = cubic_resample(signals.dance.samples, float(key))
    with signals.lock:
        signals.stretched[key] = whole
        while len(signals.stretched) > _HELD:
            del signals.stretched[next(iter(signals.stretched))]
    return whole, float(key)


def stretch_key(scale: float) -> Fraction | None:
    """The resampling ratio ``scale`` is measured at, ``None`` for none."""
    if abs(scale - 1.0) < _NO_STRETCH:
        return None
    ratio = round(scale / _STRETCH_GRID) * _STRETCH_GRID
    return Fraction(ratio).limit_denominator(10_000)


def stretched_length(signals: Signals, key: Fraction | None) -> int:
    n = len(signals.dance.samples)
    return n if key is None else int(n * float(key))


def cubic_resample(
    x: NDArray[np.float32], ratio: float, *, spans: NDArray[np.int64] | None = None
) -> NDArray[np.float32]:
    """``out[k] = x(k / ratio)`` by Catmull-Rom interpolation (phase-true, mild treble loss),
    in blocks so the temporaries stay small; only within ``spans`` (rows of first and end
    output sample) when given, zero elsewhere."""
    n = int(len(x) * ratio)
    if spans is None:
        out = np.empty(n, dtype=np.float32)
        spans = np.array([[0, n]], dtype=np.int64)
    else:
        out = np.zeros(n, dtype=np.float32)
    for lo, hi in _merged(spans, n):
        for first in range(lo, hi, _RESAMPLE_BLOCK):
            pos = np.arange(first, min(first + _RESAMPLE_BLOCK, hi), dtype=np.float64) / ratio
            i = np.floor(pos).astype(np.int64)
            f = (pos - i).astype(np.float32)
            # Taps x[i − 1 … i + 2], zero beyond the signal's ends.
            i0 = int(i[0])
            taps = _segment(x, i0 - 1, int(i[-1]) + 3)
            j = i - i0
            out[first : first + len(pos)] = _catmull_rom(taps, j, f)
    return out


def _catmull_rom(
    taps: NDArray[np.float32], j: NDArray[np.int64], f: NDArray[np.float32]
) -> NDArray[np.float32]:
    """``p1 + f/2 · (p2 − p0 + f · (2p0 − 5p1 + 4p2 − p3 + f · (3(p1 − p2) + p3 − p0)))`` with
    ``pk = taps[j + k]``, the operations in that order (so bit for bit that expression), in
    place: a block's temporaries are few."""
    p0 = taps[j]
    j += 1
    p1 = taps[j]
    j += 1
    p2 = taps[j]
    j += 1
    p3 = taps[j]
    inner = np.subtract(p1, p2)
    inner *= 3
    inner += p3
    inner -= p0
    inner *= f
    mid = np.multiply(p0, 2, dtype=np.float32)
    mid -= np.multiply(p1, 5, dtype=np.float32)
    mid += np.multiply(p2, 4, dtype=np.float32)
    mid -= p3
    mid += inner
    mid *= f
    outer = np.subtract(p2, p0)
    outer += mid
    half = np.multiply(f, 0.5, dtype=np.float32)
    half *= outer
    half += p1
    return half


def _segment(x: NDArray[np.float32], lo: int, hi: int) -> NDArray[np.float32]:
    """``x[lo:hi]`` with zeros where the range passes the signal's ends."""
    out = np.zeros(hi - lo, dtype=np.float32)
    a, b = max(lo, 0), min(hi, len(x))
    if a < b:
        out[a - lo : b - lo] = x[a:b]
    return out


def _merged(spans: NDArray[np.int64], n: int) -> list[tuple[int, int]]:
    """Sorted, clipped to [0, n) and overlapping spans merged."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted((max(int(a), 0), min(int(b), n)) for a, b in spans):
        if lo >= hi:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
