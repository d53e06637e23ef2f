"""Fine lags by frame-averaged GCC-PHAT in short windows.

For each window the cross-spectra of many short frames are summed before the phase transform, so
noise and talking average out while the music's phase agrees; the transform then whitens the
spectrum so the peak is the direct sound, not the room's reverberation. The peak is refined to a
fraction of a sample by fitting a parabola.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

__all__ = ["GccResult", "gcc_windows"]

_BAND_HZ = (100.0, 7000.0)
_BATCH = 24


@dataclass(frozen=True, slots=True)
class GccResult:
    """Per window: ``lag`` (seconds; the reference matches ``lag`` later than predicted),
    ``strength`` (peak height of the whitened correlation, 0–1) and ``prominence`` (peak height
    in robust standard deviations of the correlation over the searched lags)."""

    lag: NDArray[np.float64]
    strength: NDArray[np.float64]
    prominence: NDArray[np.float64]


def gcc_windows(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    x_starts: NDArray[np.int64],
    y_starts: NDArray[np.float64],
    *,
    rate: int,
    length: int,
    step: float = 1.0,
    frame: int = 4096,
    search: float = 0.08,
) -> GccResult:
    """Residual lag of ``y`` against ``x`` in windows.

    Parameters
    ----------
    x, y
        Mono signals at ``rate`` Hz.
    x_starts
        First sample of each window in ``x``.
    y_starts
        Predicted position in ``y`` (fractional samples) of each window's first sample; windows
        running off either signal read zeros there.
    length
        Window length in samples of ``x``.
    step
        Samples of ``y`` per sample of ``x`` along the prediction: each frame of ``y`` is read
        where the prediction puts it, to a fraction of a sample, so a drifting clock does not
        smear the correlation.
    frame
        Frame length in samples (the hop is a quarter of it); lags up to ``frame / 2`` are seen.
    search
        Largest residual lag searched, seconds (at most ``frame / 2 / rate``).

    Returns
    -------
    GccResult
        ``lag[i]`` > 0 means ``y`` matches window ``i`` that many seconds later than predicted.
    """
    hop = frame // 4
    n_frames = max(1, (length - frame) // hop + 1)
    offsets = np.arange(n_frames) * hop
    window = np.hanning(frame).astype(np.float32)
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    band = (freqs >= _BAND_HZ[0]) & (freqs <= min(_BAND_HZ[1], rate * 0.45))
    reach = min(int(search * rate), frame // 2 - 2)
    lags = np.arange(-reach, reach + 1)
    out_lag = np.zeros(len(x_starts))
    out_strength = np.zeros(len(x_starts))
    out_prom = np.zeros(len(x_starts))
    xp, x_pad = _padded(x, length + frame)
    yp, y_pad = _padded(y, int(length * step) + frame)
    for first in range(0, len(x_starts), _BATCH):
        xs = x_starts[first : first + _BATCH] + x_pad
        ys = y_starts[first : first + _BATCH] + y_pad
        xi = np.clip(xs[:, None] + offsets[None, :], 0, len(xp) - frame)
        # Each frame of y where the prediction puts it; rounding to the sample costs less than
        # 0.03 ms and averages out over the frames.
        yi = np.rint(ys[:, None] + offsets[None, :] * step).astype(np.int64)
        yi = np.clip(yi, 0, len(yp) - frame)
        xf = _frames(xp, xi, frame) * window
        yf = _frames(yp, yi, frame) * window
        cross = (
            np.conj(scipy.fft.rfft(xf, axis=2, workers=-1)) * scipy.fft.rfft(yf, axis=2, workers=-1)
        ).sum(axis=1)
        cross[:, ~band] = 0.0
        mag = np.abs(cross)
        # Silent windows (zero padding) must give a flat correlation, not a division by zero.
        cross /= np.maximum(mag, 1e-6 * mag.max(axis=1, keepdims=True) + 1e-20)
        corr = scipy.fft.irfft(cross, frame, axis=1, workers=-1) * (frame / max(band.sum(), 1))
        corr = corr[:, lags % frame].astype(np.float64)
        rows = np.arange(len(corr))
        i = np.argmax(corr, axis=1)
        peak = corr[rows, i]
        left = corr[rows, np.maximum(i - 1, 0)]
        right = corr[rows, np.minimum(i + 1, len(lags) - 1)]
        denom = left - 2 * peak + right
        interior = (i > 0) & (i < len(lags) - 1) & (denom < 0)
        shift = np.where(interior, 0.5 * (left - right) / np.where(interior, denom, -1.0), 0.0)
        median = np.median(corr, axis=1)
        spread = 1.4826 * np.median(np.abs(corr - median[:, None]), axis=1) + 1e-12
        sl = slice(first, first + len(corr))
        out_lag[sl] = (lags[i] + shift) / rate
        out_strength[sl] = np.maximum(peak, 0.0) / 2.0
        out_prom[sl] = (peak - median) / spread
    return GccResult(out_lag, np.clip(out_strength, 0.0, 1.0), out_prom)


def _padded(signal: NDArray[np.float32], pad: int) -> tuple[NDArray[np.float32], int]:
    return np.pad(np.asarray(signal, dtype=np.float32), (pad, pad)), pad


def _frames(
    signal: NDArray[np.float32], starts: NDArray[np.int64], frame: int
) -> NDArray[np.float32]:
    view = np.lib.stride_tricks.sliding_window_view(signal, frame)
    return view[starts]
