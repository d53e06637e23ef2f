"""A waveform search: candidate lines from whitened waveforms, for rooms the band energies miss.

A loud reverberant room smears the band energies (:mod:`.features`) and a phone's gain control
flattens them until no window of them stands out against the song. The waveform keeps what
they lose: whitened frame by frame (the phase transform) and cut to the band below 2 kHz that
a room carries best, each of a few long windows of the dance recording is correlated against the
whole reference, and the peaks vote for lines at speed 1 as the band search's do
(:func:`.search.hough`). It costs more than the band search, so it runs only when that found
nothing to accept.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from ..media.decode import Audio
from ..output.resample import PolyphaseResampler, kaiser_lowpass
from .search import Line, distinct_lines, hough

__all__ = ["waveform_lines"]

_RATE = 4000  # Hz: the band below 2 kHz
_LOW_HZ = 100.0
_FRAME = 256  # samples at _RATE of each whitening frame (64 ms), half overlapping
# Long windows: a peak's height grows with the root of the length, the chance peaks' do not.
_WINDOW_S = 8.0
_MIN_HOP_S = 2.0
_WINDOWS = 12
# Every how many lags the correlation's median and spread are estimated.
_STATS_STRIDE = 8
_PEAKS_PER_WINDOW = 3
_PEAK_SEPARATION_S = 0.25
# A peak counts from this many robust deviations: the largest of a million lags of unrelated
# songs stays below it.
_MIN_Z = 6.0
_BLOCK_FRAMES = 2048  # whitening frames transformed at a time


def waveform_lines(
    dance: Audio, bgm: Audio, *, max_lines: int = 4, pool: Executor | None = None
) -> list[Line]:
    """Candidate lines at speed 1 (clock drift allowed) from whitened waveforms, best first.

    Parameters
    ----------
    dance, bgm
        Mono audio at one rate, each with its start on its file's timeline.
    max_lines
        How many distinct lines to return at most.
    pool
        Threads that correlate windows side by side.
    """
    # One recording after the other: side by side, the peak memory would hold both's frames.
    x = _whitened(dance.samples, dance.rate)
    y = _whitened(bgm.samples, bgm.rate)
    width = int(_WINDOW_S * _RATE)
    if len(x) < width or len(y) < width:
        return []
    count = min(_WINDOWS, 1 + int((len(x) - width) // (_MIN_HOP_S * _RATE)))
    starts = np.linspace(0, len(x) - width, count).astype(np.int64)
    size = scipy.fft.next_fast_len(len(y) + width, real=True)
    spectrum = scipy.fft.rfft(y, size)
    lags = len(y) - width + 1

    def peaks(start: int) -> list[tuple[float, float, float, float]]:
        win = x[start : start + width]
        if not win.any():
            return []
        corr = scipy.fft.irfft(spectrum * np.conj(scipy.fft.rfft(win, size)), size)[:lags]
        sample = corr[::_STATS_STRIDE]
        median = float(np.median(sample))
        spread = 1.4826 * float(np.median(np.abs(sample - median))) + 1e-12
        z = (corr - median) / spread
        found = []
        centre = dance.start + (start + width / 2) / _RATE
        separation = int(_PEAK_SEPARATION_S * _RATE)
        for _ in range(_PEAKS_PER_WINDOW):
            i = int(np.argmax(z))
            if z[i] < _MIN_Z:
                break
            # The window's centre against the reference's matching centre; z lowered so the
            # band search's vote weights (from 3 up) apply.
            bgm_time = bgm.start + (i + width / 2) / _RATE
            found.append((centre, bgm_time, float(z[i]) - (_MIN_Z - 3.0), 1.0))
            z[max(0, i - separation) : i + separation + 1] = -np.inf
        return found

    found = pool.map(peaks, starts) if pool is not None else map(peaks, starts)
    points = np.asarray([row for rows in found for row in rows], dtype=np.float64).reshape(-1, 4)
    span = max(dance.duration, _WINDOW_S)
    return distinct_lines(hough(points, 1.0, span), span, max_lines)


def _whitened(samples: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    """``samples`` at ``_RATE`` Hz, each 64 ms frame's spectrum flattened to unit magnitude
    from ``_LOW_HZ`` up (the phase transform, frame by frame).

    What ``scipy.signal``'s ``resample_poly``, ``stft`` and ``istft`` give with their defaults
    (a periodic Hann window, half-overlapping frames, half a frame of zeros at each end), in
    NumPy: that import costs a third of a second and 50 MB, in every refusal. Frames go through
    the transforms a block at a time: only the spectra are held whole (20 MB for 10 minutes).
    """
    low = _to_rate(samples, rate)
    n, half = len(low), _FRAME // 2
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_FRAME) / _FRAME)).astype(np.float32)
    count = -(-n // half) + 1
    padded = np.zeros((count + 1) * half, np.float32)
    padded[half : half + n] = low
    del low
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::half]
    blocks = [(a, min(a + _BLOCK_FRAMES, count)) for a in range(0, count, _BLOCK_FRAMES)]
    z = np.empty((count, half + 1), np.complex64)
    total = 0.0
    for a, b in blocks:
        z[a:b] = scipy.fft.rfft(frames[a:b] * window, axis=1)
        total += float(np.abs(z[a:b]).sum(dtype=np.float64))
    del padded, frames
    floor = np.float32(1e-3 * total / z.size + 1e-20)
    low_bins = int(_LOW_HZ * _FRAME / _RATE) + 1
    # Overlap-add of the windowed inverse frames (frame k covers hops k and k + 1).
    synthesis = window * np.float32(window.sum())
    out = np.zeros((count + 1, half), np.float32)
    for a, b in blocks:
        part = z[a:b]
        part /= np.maximum(np.abs(part), floor)
        part[:, :low_bins] = 0.0
        inverse = scipy.fft.irfft(part, _FRAME, axis=1) * synthesis
        out[a:b] += inverse[:, :half]
        out[a + 1 : b + 1] += inverse[:, half:]
    # The kept samples lie in hops 1 … count − 1, each covered by two frames: the windows'
    # summed squares there are one period.
    norm = window[:half] ** 2 + window[half:] ** 2
    out[1:count] /= norm
    return out[1:count].ravel()[:n]


def _to_rate(samples: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    """``samples`` at ``_RATE`` Hz through ``scipy.signal.resample_poly``'s own filter."""
    if rate == _RATE:
        return samples
    common = math.gcd(_RATE, rate)
    up, down = _RATE // common, rate // common
    widest = max(up, down)
    taps = kaiser_lowpass(20 * widest + 1, 1.0 / widest, 5.0)
    return np.asarray(PolyphaseResampler(up, down, taps)(samples), dtype=np.float32)
