"""Coarse features: log energy in 48 narrow bands at 100 frames per second.

Band energies keep what makes one bar of a song unlike the next (melody, chords, instruments) and
lose the phase the room scrambles; high-passed over time and normalised per band, stationary noise
and the room's colouring drop out. They are cheap to correlate over minutes, so the coarse search
runs on them; the fine search uses the waveform itself. A practice version played faster is also
higher in pitch (a tempo change with the pitch kept is not), so the dance's bands can be read
at a frequency scale.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor

import numpy as np
import scipy.fft
from numpy.typing import NDArray

__all__ = [
    "FEATURE_RATE",
    "band_features",
    "onset_envelope",
    "pitched_band_features",
    "power_spectrogram",
    "signal_band_features",
]

FEATURE_RATE = 100  # frames per second
_N_FFT = 1024
_BAND_EDGES_HZ = (100.0, 6000.0)
_N_BANDS = 48
_HIGHPASS_FRAMES = FEATURE_RATE  # one second
_BLOCK_FRAMES = 1024
_MAX_PITCH = 1.4  # the highest pitch scale bands are read at (a version sped up 1.35×)


def power_spectrogram(samples: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    """Power spectrum of 64 ms Hann frames every ``rate / FEATURE_RATE`` samples.

    Returns
    -------
    ndarray, shape (frames, bins)
        Frame ``k`` describes the audio around ``k / FEATURE_RATE`` seconds; only the bins up to
        the highest band edge at the largest pitch scale are kept.
    """
    out = np.zeros((_frame_count(samples, rate), _bins(rate, _MAX_PITCH)), dtype=np.float32)
    for first, power in _power_blocks(samples, rate, bins=_bins(rate, _MAX_PITCH)):
        out[first : first + len(power)] = power
    return out


def band_features(
    power: NDArray[np.float32], rate: int, *, pitch: float = 1.0
) -> NDArray[np.float32]:
    """Log band energies, high-passed over time, each band scaled to unit variance.

    Parameters
    ----------
    power
        From :func:`power_spectrogram`, shape (frames, bins).
    rate
        Sample rate of the audio the spectrogram was made from, Hz.
    pitch
        Read the bands at frequencies scaled by this factor (a recording played ``pitch`` times
        faster on a varispeed player is that much higher).

    Returns
    -------
    ndarray, shape (48, frames)
    """
    return _normalised(power @ _band_matrix(rate, power.shape[1], pitch))


def signal_band_features(
    samples: NDArray[np.float32], rate: int, *, workers: int = -1
) -> NDArray[np.float32]:
    """:func:`band_features` of :func:`power_spectrogram` at pitch 1, a block of frames at a
    time: the spectrogram (tens of megabytes for a song) is never held whole.

    Parameters
    ----------
    samples
        Mono audio.
    rate
        Its sample rate, Hz.
    workers
        Threads per FFT, as for :func:`scipy.fft.rfft`.

    Returns
    -------
    ndarray, shape (48, frames)
        The same features as ``band_features(power_spectrogram(samples, rate), rate)``.
    """
    bands = np.zeros((_frame_count(samples, rate), _N_BANDS), dtype=np.float32)
    bins = _bins(rate, 1.0)
    matrix = _band_matrix(rate, bins, 1.0)
    for first, power in _power_blocks(samples, rate, workers, bins=bins):
        bands[first : first + len(power)] = power @ matrix
    return _normalised(bands)


def pitched_band_features(
    samples: NDArray[np.float32],
    rate: int,
    pitches: Sequence[float],
    *,
    workers: int = -1,
    pool: Executor | None = None,
) -> list[NDArray[np.float32]]:
    """:func:`band_features` of :func:`power_spectrogram` at each of ``pitches`` (in their
    order), in one pass a block of frames at a time: the spectrogram (over a hundred megabytes
    for a long class) is never held whole. ``workers`` as for :func:`scipy.fft.rfft`;
    ``pool``: two threads that take half the blocks each (then one FFT worker each).

    The features equal the whole spectrogram's to float32 rounding (the band sums are added
    up in another order); with a pool or without, they are the same.
    """
    bins = _bins(rate, _MAX_PITCH)
    matrices = [_band_matrix(rate, bins, pitch) for pitch in pitches]
    n_frames = _frame_count(samples, rate)
    bands = [np.zeros((n_frames, _N_BANDS), dtype=np.float32) for _ in pitches]

    def fill(frames: range) -> None:
        for first, power in _power_blocks(samples, rate, workers, bins=bins, only=frames):
            for out, matrix in zip(bands, matrices, strict=True):
                out[first : first + len(power)] = power @ matrix

    if bands and pool is not None:
        # Halves on a block boundary: every block is what one pass would make.
        half = -(-n_frames // (2 * _BLOCK_FRAMES)) * _BLOCK_FRAMES
        workers = 1
        list(pool.map(fill, (range(0, half), range(half, n_frames))))
    elif bands:
        fill(range(n_frames))
    return [_normalised(b) for b in bands]


def _frame_count(samples: NDArray[np.float32], rate: int) -> int:
    return max(0, (len(samples) - _N_FFT) // (rate // FEATURE_RATE) + 1)


def _bins(rate: int, pitch: float) -> int:
    """Bins up to the highest band edge at pitch scales up to ``pitch`` (and a little more)."""
    return min(_N_FFT // 2 + 1, int(_BAND_EDGES_HZ[1] * max(pitch, 1.15) * _N_FFT / rate) + 2)


def _power_blocks(
    samples: NDArray[np.float32],
    rate: int,
    workers: int = -1,
    *,
    bins: int,
    only: range | None = None,
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """(first frame, power of its first ``bins`` bins…) for blocks of frames; only those of
    the frames ``only`` (which starts on a block boundary) when given."""
    hop = rate // FEATURE_RATE
    n_frames = _frame_count(samples, rate)
    window = np.hanning(_N_FFT).astype(np.float32)
    signal = np.asarray(samples, dtype=np.float32)
    wanted = range(n_frames) if only is None else only
    for first in range(wanted.start, min(wanted.stop, n_frames), _BLOCK_FRAMES):
        count = min(_BLOCK_FRAMES, n_frames - first)
        span = signal[first * hop : (first + count - 1) * hop + _N_FFT]
        frames = np.lib.stride_tricks.sliding_window_view(span, _N_FFT)[::hop][:count]
        spectrum = scipy.fft.rfft(frames * window, axis=1, workers=workers)[:, :bins]
        yield first, spectrum.real**2 + spectrum.imag**2


def _normalised(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    """Band energies (frames, bands) to log, high-passed, unit-variance features (bands, frames)."""
    if bands.shape[0] == 0:
        return np.zeros((_N_BANDS, 0), dtype=np.float32)
    ref = float(np.percentile(bands, 99)) + 1e-20
    logb = np.log1p(1000.0 * bands / ref)
    logb -= _moving_average(logb, _HIGHPASS_FRAMES)
    logb /= logb.std(axis=0, keepdims=True) + 1e-6
    return np.ascontiguousarray(logb.T, dtype=np.float32)


def onset_envelope(bands: NDArray[np.float32]) -> NDArray[np.float64]:
    """An onset-strength curve in [0, 1] (summed rises of the bands), for plotting."""
    if bands.shape[1] < 2:
        return np.zeros(bands.shape[1])
    rises = np.maximum(np.diff(bands, axis=1, prepend=bands[:, :1]), 0.0).sum(axis=0)
    env = _moving_average(rises.astype(np.float64)[:, None], 5)[:, 0]
    top = float(np.percentile(env, 99.5)) or 1.0
    return np.asarray(np.clip(env / top, 0.0, 1.0), dtype=np.float64)


def _moving_average(x: NDArray[np.floating], size: int) -> NDArray[np.floating]:
    """Centred moving average along axis 0, the edges averaging what they have."""
    n = x.shape[0]
    total = np.concatenate([np.zeros((1, *x.shape[1:]), np.float64), np.cumsum(x, 0, np.float64)])
    i = np.arange(n)
    lo = np.clip(i - size // 2, 0, n)
    hi = np.clip(i + size - size // 2, 0, n)
    shape = (n,) + (1,) * (x.ndim - 1)
    averaged: NDArray[np.floating] = ((total[hi] - total[lo]) / (hi - lo).reshape(shape)).astype(
        x.dtype
    )
    return averaged


def _band_matrix(rate: int, bins: int, pitch: float) -> NDArray[np.float32]:
    """Triangular, log-spaced band weights, shape (bins, bands), edges scaled by ``pitch``."""
    freqs = np.arange(bins) * rate / _N_FFT
    edges = np.geomspace(*_BAND_EDGES_HZ, _N_BANDS + 2) * pitch
    weights = np.zeros((bins, _N_BANDS), dtype=np.float32)
    for b in range(_N_BANDS):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        rise = (freqs - left) / (centre - left)
        fall = (right - freqs) / (right - centre)
        weights[:, b] = np.clip(np.minimum(rise, fall), 0.0, None)
    return weights
