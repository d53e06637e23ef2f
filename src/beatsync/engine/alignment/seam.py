"""Where, between two pieces of an edit, the sound switches from one line to the other.

Two steps. Per 32 ms frame, the phase agreement of the recording with the reference under each
piece's mapping; the seam is where the running sum of their difference peaks (before it the
first line agrees better, after it the second). Then, within a quarter of a second of that,
the same change point on the samples themselves: per sample, how much less the first
(whitened, scaled) prediction leaves unexplained of the whitened recording than the second,
``|d − g·b|² − |d − g·a|²``, which is ``g²(a − b)²`` while the first line plays and its
negative once the second does, however loud either side is. Through a crossfade, where the
recording is ``g(w·a + (1 − w)·b)``, it is ``g²(2w − 1)(a − b)²``: the change point is the
crossfade's centre.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from ..media.decode import Audio
from .fine import Signals, frame_track
from .gcc import frame_agreement

__all__ = ["find_seam"]

_FRAME_S = 0.032
_MARGIN_S = 1.5  # seconds searched beyond the last and first agreeing windows
_FINE_REACH_S = 0.25  # the sample-level search stays this close to the frame-level seam
_FINE_CONTEXT_S = 0.6  # samples summed either side for the sample-level change point
_LPC_ORDER = 16
_LOWPASS_HZ = 2000.0
_PLATEAU = 0.01


def find_seam(signals: Signals, before: Mapping, after: Mapping, lo: float, hi: float) -> float:
    """The dance time (s) at which the sound passes from ``before``'s line to ``after``'s.

    Parameters
    ----------
    signals
        Both recordings at the analysis rate.
    before, after
        The mappings of the earlier and the later piece.
    lo, hi
        Dance times (s) of the earlier piece's last agreeing window and the later piece's first:
        the seam lies near or between them.
    """
    dance = signals.dance
    rate = dance.rate
    a, b = min(lo, hi) - _MARGIN_S, max(lo, hi) + _MARGIN_S
    i0 = max(0, int((a - dance.start) * rate))
    i1 = min(dance.samples.shape[-1], int((b - dance.start) * rate))
    if i1 - i0 < 4 * int(_FRAME_S * rate):
        return (lo + hi) / 2
    part = Signals(Audio(dance.samples[i0:i1], rate, dance.start + i0 / rate), signals.bgm)
    centres, first = _agreement(part, before)
    _, second = _agreement(part, after)
    n = min(len(first), len(second))
    if n < 4:
        return (lo + hi) / 2
    diff = np.convolve(first[:n] - second[:n], np.ones(3) / 3, mode="same")
    running = np.concatenate([[0.0], np.cumsum(diff)])
    k = int(np.argmax(running))
    coarse = float(centres[0] if k == 0 else (centres[k - 1] + centres[min(k, n - 1)]) / 2)
    return _fine(signals, before, after, coarse)


def _agreement(part: Signals, mapping: Mapping) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Frame centres (dance s) and each 32 ms frame's phase agreement under ``mapping``."""
    rate = part.dance.rate
    frame = round(_FRAME_S * rate)
    x, stretch, track = frame_track(part, mapping, frame=frame, hop=frame // 2)
    count = track.frame_count(len(x))
    # Frames the mapping puts outside the reference agree with nothing.
    starts = track.y_starts(np.arange(count, dtype=np.int64))
    inside = (starts >= 0) & (starts + frame <= len(part.bgm.samples))
    agree = np.zeros(count)
    if inside.all():
        agree = frame_agreement(x, part.bgm.samples, track, count, rate=rate)
    elif inside.any():
        k = np.flatnonzero(inside)
        sub = type(track)(track.frame, track.hop, track.y_first + k[0] * track.hop * track.step,
                          track.step)  # fmt: skip
        x_sub = x[k[0] * track.hop :]
        agree[k[0] : k[-1] + 1] = frame_agreement(
            x_sub, part.bgm.samples, sub, int(k[-1] - k[0] + 1), rate=rate
        )
    centres = part.dance.start + (np.arange(count) * track.hop + frame / 2) / rate / stretch
    return centres, agree


def _fine(signals: Signals, before: Mapping, after: Mapping, coarse: float) -> float:
    """The sample-level change point within ``_FINE_REACH_S`` of ``coarse`` (s)."""
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    first = round((coarse - _FINE_CONTEXT_S - dance.start) * rate)
    count = round(2 * _FINE_CONTEXT_S * rate)
    if first < 0 or first + count > dance.samples.shape[-1]:
        return coarse
    t = dance.start + (first + np.arange(count)) / rate
    d = dance.samples[first : first + count].astype(np.float64)
    grid = np.arange(bgm.samples.shape[-1], dtype=np.float64)
    ref = bgm.samples.astype(np.float64, copy=False)
    pa = np.interp((before.bgm_time_array(t) - bgm.start) * rate, grid, ref, left=0, right=0)
    pb = np.interp((after.bgm_time_array(t) - bgm.start) * rate, grid, ref, left=0, right=0)
    # Whitened, then kept below 2 kHz: the mappings hold to a tenth of a millisecond, which
    # would turn the phase of the top octaves at random.
    lowpass = _lowpass(rate)
    taps = np.convolve(_whitener(pa + pb), lowpass)
    delay = (len(lowpass) - 1) // 2
    d, pa, pb = (np.convolve(v, taps)[delay : delay + count] for v in (d, pa, pb))
    half = count // 2
    # The direct sound's gain, by least squares on either side of the frame-level seam.
    power = float(np.dot(pa[:half], pa[:half]) + np.dot(pb[half:], pb[half:]))
    if power <= 0.0:
        return coarse
    g = float(np.dot(d[:half], pa[:half]) + np.dot(d[half:], pb[half:])) / power
    votes = (d - g * pb) ** 2 - (d - g * pa) ** 2
    running = np.concatenate([[0.0], np.cumsum(votes)])
    reach = int(_FINE_REACH_S * rate)
    mid = count // 2
    window = running[mid - reach : mid + reach + 1]
    if not np.isfinite(window).all() or float(np.ptp(window)) <= 0.0:
        return coarse
    k = _plateau_centre(window)
    return float(dance.start + (first + mid - reach + k) / rate)


def _plateau_centre(running: NDArray[np.float64]) -> int:
    """The middle of the stretch around the maximum of ``running`` that stays within
    ``_PLATEAU`` of its range below it: where the two lines explain the sound equally (the
    same notes, or silence), the seam is put halfway."""
    top = int(np.argmax(running))
    level = float(running[top]) - _PLATEAU * float(np.ptp(running))
    lo = hi = top
    while lo > 0 and running[lo - 1] >= level:
        lo -= 1
    while hi < len(running) - 1 and running[hi + 1] >= level:
        hi += 1
    return (lo + hi) // 2


def _lowpass(rate: int) -> NDArray[np.float64]:
    """A windowed-sinc low-pass FIR (63 taps, linear phase) at ``_LOWPASS_HZ``."""
    cutoff = 2 * _LOWPASS_HZ / rate
    m = np.arange(63) - 31.0
    taps: NDArray[np.float64] = cutoff * np.sinc(cutoff * m) * np.hamming(63)
    taps /= taps.sum()
    return taps


def _whitener(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The prediction-error filter (LPC) that flattens ``x``'s spectrum: the products of
    whitened signals change within a few samples where the music changes."""
    r = np.array([np.dot(x[: len(x) - k], x[k:]) for k in range(_LPC_ORDER + 1)])
    if r[0] <= 0.0:
        return np.array([1.0])
    r[0] *= 1.0 + 1e-6
    lags = np.abs(np.subtract.outer(np.arange(_LPC_ORDER), np.arange(_LPC_ORDER)))
    try:
        coef = np.linalg.solve(r[lags], r[1:])
    except np.linalg.LinAlgError:
        return np.array([1.0])
    return np.concatenate([[1.0], -coef])
