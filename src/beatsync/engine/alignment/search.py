"""Coarse search: which lines ``bgm_time = a + b × dance_time`` do the band features support?

The dance features (:mod:`.features`) are cut into windows of a few seconds; each window is
correlated against the whole reference at a few candidate speeds, and the peaks vote in a Hough
accumulator over (slope, offset). A line that many windows agree on is a candidate; a song that
repeats a section yields several, which the fine stage tells apart. A speed is of one of two
kinds: resampled (the dance's bands are read at the speed's pitch) or pitch-kept (at pitch 1);
either way the dance's frames are stretched onto the reference's time scale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from .features import FEATURE_RATE

__all__ = ["Line", "Speed", "coarse_lines", "distinct_lines", "hough"]

_WINDOW_S = 6.0
_HOP_S = 3.0
_PEAKS_PER_WINDOW = 4
_PEAK_SEPARATION_S = 0.25
_OFFSET_BIN_S = 0.04
_SLOPE_SPAN = 0.012  # each speed candidate other than 1 covers ±1.2 %
_DRIFT_SPAN = 0.001  # at speed 1 only clock drift: phones stay within a few hundred ppm
_MIN_DISTINCT_OFFSET_S = 0.3
_BATCH = 4
_BLOCK_WINDOWS = 8  # overlap-save blocks of about this many windows


@dataclass(frozen=True, slots=True)
class Line:
    """A candidate mapping in seconds, with its vote (sum of peak z-scores that agree)."""

    offset: float
    scale: float
    votes: float
    pitch_kept: bool = False


@dataclass(frozen=True, slots=True)
class Speed:
    """A speed to search at: ``ratio`` reference seconds per dance second; ``pitch_kept`` for a
    tempo change that left the pitch alone, else a resampling that moved it by ``ratio``."""

    ratio: float
    pitch_kept: bool = False

    @property
    def pitch(self) -> float:
        """The factor by which the dance's frequencies sit above the reference's."""
        return 1.0 if self.pitch_kept else self.ratio


def coarse_lines(
    dance_bands: Callable[[float], NDArray[np.float32]],
    bgm: NDArray[np.float32],
    *,
    speeds: Sequence[float | Speed] = (1.0,),
    dance_start: float = 0.0,
    bgm_start: float = 0.0,
    max_lines: int = 4,
    pool: Executor | None = None,
) -> list[Line]:
    """Candidate lines from band features, best first.

    Parameters
    ----------
    dance_bands
        The dance recording's :func:`~.features.band_features` read at a pitch, shape
        (48, frames) with the same frame count at every pitch.
    bgm
        The reference's :func:`~.features.band_features`.
    speeds
        Speeds to try (a bare ratio is a resampled one); 1 covers clock drift, the others
        ±1.2 % each.
    dance_start, bgm_start
        File time in seconds of each array's first frame.
    max_lines
        How many distinct lines to return at most.
    pool
        Threads that correlate batches of windows side by side; without one, one at a time.
    """
    tried = [s if isinstance(s, Speed) else Speed(float(s)) for s in speeds]
    points: list[NDArray[np.float64]] = []
    frames = 0
    for speed in tried:
        dance = dance_bands(speed.pitch)
        frames = dance.shape[1]
        points.append(_window_peaks(dance, bgm, speed.ratio, dance_start, bgm_start, pool))
    if not any(len(p) for p in points):
        return []
    span = max(float(frames) / FEATURE_RATE, _WINDOW_S)
    lines: list[Line] = []
    for speed, mine in zip(tried, points, strict=True):
        kept = speed.pitch_kept and speed.ratio != 1.0
        lines.extend(
            Line(ln.offset, ln.scale, ln.votes, kept) for ln in hough(mine, speed.ratio, span)
        )
    return distinct_lines(lines, span, max_lines)


def distinct_lines(lines: Sequence[Line], span: float, max_lines: int) -> list[Line]:
    """The best ``max_lines`` of ``lines`` (by votes) that are distinct answers over a clip of
    ``span`` seconds."""
    distinct: list[Line] = []
    for line in sorted(lines, key=lambda line: -line.votes):
        if all(not _same(line, kept, span) for kept in distinct):
            distinct.append(line)
        if len(distinct) == max_lines:
            break
    return distinct


def _same(a: Line, b: Line, span: float) -> bool:
    # Two lines are one answer when they stay within the distinct-offset margin over the clip.
    mid = span / 2
    return (
        abs(a.offset - b.offset + (a.scale - b.scale) * mid) < _MIN_DISTINCT_OFFSET_S
        and abs(a.scale - b.scale) * span < _MIN_DISTINCT_OFFSET_S
    )


def _window_peaks(
    dance: NDArray[np.float32],
    bgm: NDArray[np.float32],
    speed: float,
    dance_start: float,
    bgm_start: float,
    pool: Executor | None = None,
) -> NDArray[np.float64]:
    """Rows (dance time, reference time, z-score, speed) of each window's strongest matches."""
    _n_bands, n_dance = dance.shape
    n_bgm = bgm.shape[1]
    width = int(_WINDOW_S * FEATURE_RATE)
    hop = int(_HOP_S * FEATURE_RATE)
    # Resample the dance features onto the reference's time scale at this speed.
    n_stretched = int(n_dance * speed)
    if n_stretched < width // 2 or n_bgm < width // 2:
        return np.zeros((0, 4))
    src = np.arange(n_stretched) / speed
    grid = np.arange(n_dance)
    stretched = np.stack([np.interp(src, grid, band) for band in dance]).astype(np.float32)
    starts = list(range(0, max(1, n_stretched - width + 1), hop))
    # Lags from half a window before the reference to half a window past its end, by
    # overlap-save: the reference (padded by half a window in front) is cut into blocks of
    # `size` frames overlapping by a window, each block yields `size − width + 1` lags, and a
    # window is transformed at the block size, not at the whole reference's length.
    pad = -(-width // 2)
    size = min(
        scipy.fft.next_fast_len(_BLOCK_WINDOWS * width, real=True),
        scipy.fft.next_fast_len(n_bgm + width, real=True),
    )
    step = size - width + 1
    n_blocks = -(-n_bgm // step)
    padded = np.zeros((bgm.shape[0], (n_blocks - 1) * step + size), np.float32)
    padded[:, pad : pad + n_bgm] = bgm
    blocks = np.lib.stride_tricks.sliding_window_view(padded, size, axis=1)[:, ::step]
    # (frequency, band, block): one batched product per frequency sums the bands.
    bgm_spec = scipy.fft.rfft(blocks, axis=2, workers=-1).transpose(2, 0, 1)
    energy = np.concatenate([[0.0], np.cumsum((bgm.astype(np.float64) ** 2).sum(axis=0))])
    lags = np.arange(-width // 2, n_bgm - width // 2)
    lo_idx = np.clip(lags, 0, n_bgm)
    hi_idx = np.clip(lags + width, 0, n_bgm)
    local = np.sqrt(np.maximum(energy[hi_idx] - energy[lo_idx], 1e-9))
    separation = int(_PEAK_SEPARATION_S * FEATURE_RATE)
    workers = 1 if pool is not None else -1  # the pool's threads are the parallelism

    def matches(first: int) -> list[tuple[float, float, float, float]]:
        batch = starts[first : first + _BATCH]
        wins = np.stack([stretched[:, s : s + width] for s in batch])
        if wins.shape[2] < width:
            return []
        norms = np.sqrt((wins.astype(np.float64) ** 2).sum(axis=(1, 2))) + 1e-9
        spec = np.conj(scipy.fft.rfft(wins, size, axis=2, workers=workers)).transpose(2, 0, 1)
        # corr[block, j] = Σ win[k] · padded[block · step + j + k], j < step.
        corr = scipy.fft.irfft((spec @ bgm_spec).transpose(1, 2, 0), size, workers=workers)
        corr = corr[:, :, :step].reshape(len(batch), -1)[:, :n_bgm]
        corr = corr / (norms[:, None] * local[None, :])
        found: list[tuple[float, float, float, float]] = []
        for row, s in zip(corr, batch, strict=True):
            found.extend(_peaks(row, s, lags, speed, separation, dance_start, bgm_start))
        return found

    firsts = range(0, len(starts), _BATCH)
    batches = pool.map(matches, firsts) if pool is not None else map(matches, firsts)
    rows = [row for found in batches for row in found]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _peaks(
    row: NDArray[np.float64],
    start: int,
    lags: NDArray[np.int64],
    speed: float,
    separation: int,
    dance_start: float,
    bgm_start: float,
) -> list[tuple[float, float, float, float]]:
    median = float(np.median(row))
    spread = 1.4826 * float(np.median(np.abs(row - median))) + 1e-9
    z = (row - median) / spread
    found: list[tuple[float, float, float, float]] = []
    work = z.copy()
    centre = (start + _WINDOW_S * FEATURE_RATE / 2) / FEATURE_RATE
    for _ in range(_PEAKS_PER_WINDOW):
        i = int(np.argmax(work))
        if work[i] <= 3.0:
            break
        dance_time = dance_start + centre / speed
        bgm_time = bgm_start + (lags[i] / FEATURE_RATE) + _WINDOW_S / 2
        found.append((dance_time, bgm_time, float(work[i]), speed))
        work[max(0, i - separation) : i + separation + 1] = -np.inf
    return found


def hough(points: NDArray[np.float64], speed: float, span: float) -> list[Line]:
    """Best lines through (dance time, reference time, z-score, …) points near ``speed``,
    votes weighted by z-score above 3, over a clip of ``span`` seconds."""
    if len(points) == 0:
        return []
    t, beta, z = points[:, 0], points[:, 1], np.minimum(points[:, 2], 12.0) - 3.0
    step = max(_OFFSET_BIN_S / max(span, 1.0), 2e-5)
    reach = _DRIFT_SPAN if speed == 1.0 else _SLOPE_SPAN
    slopes = speed * (1.0 + np.arange(-reach, reach + step / 2, step))
    lo = float((beta - slopes.max() * t).min()) - 1.0
    hi = float((beta - slopes.min() * t).max()) + 1.0
    n_bins = int((hi - lo) / _OFFSET_BIN_S) + 2
    best: list[Line] = []
    for slope in slopes:
        offsets = beta - slope * t
        idx = ((offsets - lo) / _OFFSET_BIN_S).astype(np.int64)
        acc = np.bincount(idx, weights=z, minlength=n_bins)
        acc[:-1] += acc[1:]  # tolerate a bin edge between two votes of one line
        for _ in range(3):
            i = int(np.argmax(acc))
            if acc[i] <= 0:
                break
            members = (idx == i) | (idx == i + 1)
            offset = float(np.average(offsets[members], weights=z[members] + 1e-9))
            best.append(_polish(t, beta, z, Line(offset, float(slope), float(acc[i]))))
            acc[max(0, i - 8) : i + 9] = 0.0
    # Equal votes (a short clip pins no slope): the slope nearest the speed tried.
    best.sort(key=lambda line: (-round(line.votes, 9), abs(line.scale / speed - 1.0)))
    return best[:12]


def _polish(
    t: NDArray[np.float64], beta: NDArray[np.float64], z: NDArray[np.float64], line: Line
) -> Line:
    """Least-squares line through the votes within two offset bins of ``line``: the Hough grid
    knows the slope only to one bin over the clip."""
    near = np.abs(beta - (line.offset + line.scale * t)) <= 2 * _OFFSET_BIN_S
    if near.sum() < 3 or np.ptp(t[near]) < 2 * _WINDOW_S:
        return line
    w = z[near] + 1e-9
    tc = float(np.average(t[near], weights=w))
    slope = float(np.sum(w * (t[near] - tc) * beta[near]) / np.sum(w * (t[near] - tc) ** 2))
    if abs(slope / line.scale - 1.0) > 0.01:
        return line
    offset = float(np.average(beta[near], weights=w)) - slope * tc
    return Line(offset, slope, line.votes)
