"""Onset features: per-band spectral flux at 100 frames per second.

Onsets survive what the room does to music (reverb smears their tails, not their attacks) and are
cheap to correlate over minutes, so the coarse search runs on them; the fine search uses the
waveform itself.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.typing import NDArray

__all__ = ["FEATURE_RATE", "onset_bands", "onset_envelope"]

FEATURE_RATE = 100  # frames per second
_N_FFT = 1024
_BAND_EDGES_HZ = (100.0, 6000.0)
_N_BANDS = 8
_BLOCK_FRAMES = 4096


def onset_bands(samples: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    """Per-band positive spectral flux, each band centred and scaled to unit variance.

    Parameters
    ----------
    samples
        Mono audio, shape (n,).
    rate
        Sample rate in Hz; the hop is ``rate / FEATURE_RATE`` samples.

    Returns
    -------
    ndarray, shape (8, n // hop)
        Frame ``k`` describes the audio around time ``k / FEATURE_RATE`` seconds.
    """
    hop = rate // FEATURE_RATE
    n_frames = max(0, (len(samples) - _N_FFT) // hop + 1)
    if n_frames < 2:
        return np.zeros((_N_BANDS, max(n_frames, 0)), dtype=np.float32)
    weights = _band_matrix(rate)
    window = np.hanning(_N_FFT).astype(np.float32)
    bands = np.empty((n_frames, _N_BANDS), dtype=np.float32)
    padded = np.asarray(samples, dtype=np.float32)
    for first in range(0, n_frames, _BLOCK_FRAMES):
        count = min(_BLOCK_FRAMES, n_frames - first)
        span = padded[first * hop : (first + count - 1) * hop + _N_FFT]
        frames = np.lib.stride_tricks.sliding_window_view(span, _N_FFT)[::hop][:count]
        power = np.abs(scipy.fft.rfft(frames * window, axis=1, workers=-1)) ** 2
        bands[first : first + count] = power @ weights
    # Log compression relative to the loudest band level, so gain does not matter.
    ref = float(np.percentile(bands, 99)) + 1e-12
    logb = np.log1p(1000.0 * bands / ref)
    flux = np.maximum(np.diff(logb, axis=0, prepend=logb[:1]), 0.0)
    # Remove the slowly varying level per band, then scale to unit variance.
    flux -= scipy.ndimage.uniform_filter1d(flux, size=FEATURE_RATE, axis=0, mode="nearest")
    flux /= flux.std(axis=0, keepdims=True) + 1e-6
    return np.ascontiguousarray(flux.T, dtype=np.float32)


def onset_envelope(bands: NDArray[np.float32]) -> NDArray[np.float64]:
    """A single onset-strength curve in [0, 1] from :func:`onset_bands`, for plotting."""
    if bands.shape[1] == 0:
        return np.zeros(0)
    env = np.maximum(bands, 0.0).sum(axis=0).astype(np.float64)
    env = scipy.ndimage.uniform_filter1d(env, size=5)
    top = float(np.percentile(env, 99.5)) or 1.0
    return np.asarray(np.clip(env / top, 0.0, 1.0), dtype=np.float64)


def _band_matrix(rate: int) -> NDArray[np.float32]:
    """Triangular, log-spaced band weights, shape (n_fft // 2 + 1, n_bands)."""
    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / rate)
    lo, hi = _BAND_EDGES_HZ
    hi = min(hi, rate / 2 * 0.95)
    edges = np.geomspace(lo, hi, _N_BANDS + 2)
    weights = np.zeros((len(freqs), _N_BANDS), dtype=np.float32)
    for b in range(_N_BANDS):
        left, centre, right = edges[b], edges[b + 1], edges[b + 2]
        rise = (freqs - left) / (centre - left)
        fall = (right - freqs) / (right - centre)
        weights[:, b] = np.clip(np.minimum(rise, fall), 0.0, None)
    return weights
