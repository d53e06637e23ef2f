"""How fast, and which way: the class's speed against the reference, before any search.

A class may play the song at another speed of two kinds. A resampled version ("slowed",
"sped up", 0.75–1.35×) is faster and higher by the same factor; a practice player's tempo change
(0.5–1.5×) is faster with the pitch unchanged. Two cheap measurements tell them apart:

* the tempo ratio: the autocorrelation of the onset envelope (beats, bars) of one recording is
  the other's stretched by the ratio, so correlating them on a logarithmic lag axis finds it
  (up to the beat's own ambiguities, 2× and 1.5×, kept as runner-ups);
* the pitch ratio: the long-term spectrum on a logarithmic frequency axis (the song's key and
  instruments), whitened across frequency so the room's colouring drops out, is shifted by it.

A pitch ratio that matches a tempo ratio is a resampled version at that speed; a tempo ratio
with the pitch at 1 is a tempo change with the pitch kept. The few plausible (speed, kind)
pairs are what the coarse search then tries, each over ±1.2 %.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from .features import FEATURE_RATE

__all__ = ["SpeedGuess", "pitch_ratios", "speed_guesses", "tempo_ratios"]

RESAMPLED_RANGE = (0.72, 1.40)  # 0.75–1.35× with clock drift and a margin
PITCH_KEPT_RANGE = (0.47, 1.56)  # 0.5–1.5×
_LAGS_S = (0.25, 4.0)  # beat to bar periods compared
_LAG_STEPS = 120  # per octave of lag
_RATIO_STEPS = 240  # per octave of ratio
_SPECTRUM_FFT = 4096
_SPECTRUM_HOP_S = 0.1
_PITCH_BAND_HZ = (150.0, 5000.0)
_PITCH_STEPS = 240  # per octave of frequency: 0.29 % per step
_WHITEN_OCTAVES = 1.0 / 3.0
_DISTINCT = 0.03  # peaks closer than this (relative) are one
_SAME = 0.015  # a pitch and a tempo this close are one speed
_UNIT = 0.003  # this close to 1 is the speed the search tries first


@dataclass(frozen=True, slots=True)
class SpeedGuess:
    """A speed to search at: ``ratio`` reference seconds per dance second, ``pitch_kept`` its
    kind, ``score`` how well the measurements support it (0–1, for ordering)."""

    ratio: float
    pitch_kept: bool
    score: float


def speed_guesses(
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    dance: NDArray[np.float32],
    bgm: NDArray[np.float32],
    rate: int,
    *,
    limit: int = 4,
    pool: Executor | None = None,
) -> list[SpeedGuess]:
    """The most plausible speeds other than 1, best first.

    Parameters
    ----------
    dance_bands, bgm_bands
        :func:`~.features.band_features` at pitch 1 of each recording, shape (48, frames).
    dance, bgm
        The recordings' mono samples at ``rate`` Hz.
    limit
        How many guesses at most.
    pool
        A thread that reads the reference's long-term spectrum meanwhile.
    """
    if pool is None:
        tempos = tempo_ratios(dance_bands, bgm_bands)
        pitches = pitch_ratios(dance, bgm, rate)
    else:
        # The reference's long-term spectrum on the pool, the dance's here, then the rhythm.
        spectrum = pool.submit(_log_spectrum, bgm, rate)
        mine = _log_spectrum(dance, rate)
        pitches = _pitch_ratios(mine, spectrum.result())
        tempos = tempo_ratios(dance_bands, bgm_bands)
    guesses: list[SpeedGuess] = []
    unit_pitch = bool(pitches) and abs(np.log(pitches[0][0])) < _SAME
    for ratio, score in pitches[:2]:
        if abs(ratio - 1.0) < _UNIT or not _within(ratio, RESAMPLED_RANGE):
            continue
        # A resampled version's beats move with its pitch: a matching tempo peak confirms it.
        agree = max((s for t, s in tempos if abs(np.log(t / ratio)) < _SAME), default=0.0)
        guesses.append(SpeedGuess(ratio, False, 0.5 * (score + agree)))
    for ratio, score in tempos[:3]:
        if abs(ratio - 1.0) < _UNIT or not _within(ratio, PITCH_KEPT_RANGE):
            continue
        # With the pitch where it was, a tempo change is the likely story.
        guesses.append(SpeedGuess(ratio, True, score * (1.0 if unit_pitch else 0.6)))
    guesses.sort(key=lambda g: -g.score)
    return guesses[:limit]


def tempo_ratios(
    dance_bands: NDArray[np.float32], bgm_bands: NDArray[np.float32], *, count: int = 4
) -> list[tuple[float, float]]:
    """Tempo ratios (reference beats per dance beat) whose onset rhythms match, with their
    correlation, best first."""
    longest = int(_LAGS_S[1] * PITCH_KEPT_RANGE[1] * FEATURE_RATE) + 2
    ad = _onset_autocorrelation(dance_bands, longest)
    ar = _onset_autocorrelation(bgm_bands, longest)
    if ad is None or ar is None:
        return []
    octaves = np.log2(_LAGS_S[1] / _LAGS_S[0])
    tau = _LAGS_S[0] * FEATURE_RATE * 2 ** (np.arange(int(octaves * _LAG_STEPS)) / _LAG_STEPS)
    x = np.interp(tau, np.arange(len(ad)), ad)
    x -= x.mean()
    lo, hi = (int(np.log2(r) * _RATIO_STEPS) for r in PITCH_KEPT_RANGE)
    ratios = 2.0 ** (np.arange(lo, hi + 1) / _RATIO_STEPS)
    ys = np.interp(ratios[:, None] * tau[None, :], np.arange(len(ar)), ar)
    ys -= ys.mean(axis=1, keepdims=True)
    scores = ys @ x / (np.sqrt((ys * ys).sum(axis=1) * (x * x).sum()) + 1e-12)
    return _top(ratios, scores, count)


def pitch_ratios(
    dance: NDArray[np.float32], bgm: NDArray[np.float32], rate: int, *, count: int = 3
) -> list[tuple[float, float]]:
    """Frequency ratios (dance pitch / reference pitch) under which the long-term spectra
    match, with their correlation, best first."""
    return _pitch_ratios(_log_spectrum(dance, rate), _log_spectrum(bgm, rate), count=count)


def _pitch_ratios(
    d: NDArray[np.float64] | None, r: NDArray[np.float64] | None, *, count: int = 3
) -> list[tuple[float, float]]:
    """:func:`pitch_ratios` of the recordings' :func:`_log_spectrum`."""
    if d is None or r is None:
        return []
    lo, hi = (int(np.floor(np.log2(v) * _PITCH_STEPS)) for v in RESAMPLED_RANGE)
    shifts = np.arange(lo, hi + 2)
    scores = np.zeros(len(shifts))
    for i, s in enumerate(shifts):
        # dance(f) = reference(f / p): dance[j] pairs with reference[j − s].
        a, b = (d[s:], r[: len(r) - s]) if s >= 0 else (d[: len(d) + s], r[-s:])
        a, b = a - a.mean(), b - b.mean()
        scores[i] = float(a @ b) / (float(np.sqrt((a @ a) * (b @ b))) + 1e-12)
    return _top(2.0 ** (shifts / _PITCH_STEPS), scores, count)


def _within(ratio: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= ratio <= bounds[1]


def _top(
    ratios: NDArray[np.float64], scores: NDArray[np.float64], count: int
) -> list[tuple[float, float]]:
    """The ``count`` best local maxima, at least ``_DISTINCT`` apart, refined by a parabola."""
    found: list[tuple[float, float]] = []
    for i in np.argsort(-scores):
        if len(found) == count:
            break
        if not 0 < i < len(scores) - 1 or scores[i] < max(scores[i - 1], scores[i + 1]):
            continue
        if any(abs(np.log(ratios[i] / r)) < _DISTINCT for r, _ in found):
            continue
        left, mid, right = scores[i - 1], scores[i], scores[i + 1]
        denom = left - 2 * mid + right
        shift = 0.5 * (left - right) / denom if denom < 0 else 0.0
        step = np.log(ratios[i + 1] / ratios[i])
        found.append((float(ratios[i] * np.exp(shift * step)), float(mid)))
    return found


def _onset_autocorrelation(bands: NDArray[np.float32], lags: int) -> NDArray[np.float64] | None:
    """Autocorrelation (lags 0…``lags``−1 frames, 1 at 0) of the summed rises of the bands,
    slow changes removed."""
    if bands.shape[1] < 4 * FEATURE_RATE:
        return None
    env = np.maximum(np.diff(bands, axis=1), 0.0).sum(axis=0, dtype=np.float64)
    env -= np.convolve(env, np.ones(FEATURE_RATE) / FEATURE_RATE, mode="same")
    n = len(env)
    lags = min(lags, n - 1)
    size = scipy.fft.next_fast_len(n + lags, real=True)
    spec = scipy.fft.rfft(env, size)
    acf = scipy.fft.irfft(spec.real**2 + spec.imag**2, size)[:lags]
    acf /= n - np.arange(lags)  # unbiased: long lags are not favoured by shrinking
    if acf[0] <= 0:
        return None
    result: NDArray[np.float64] = acf / acf[0]
    return result


def _log_spectrum(samples: NDArray[np.float32], rate: int) -> NDArray[np.float64] | None:
    """The long-term log power spectrum on a log-frequency grid, whitened across frequency."""
    hop = int(_SPECTRUM_HOP_S * rate)
    n = (len(samples) - _SPECTRUM_FFT) // hop + 1
    if n < 10:
        return None
    window = np.hanning(_SPECTRUM_FFT).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, _SPECTRUM_FFT)[::hop][:n]
    power = np.zeros(_SPECTRUM_FFT // 2 + 1)
    for first in range(0, n, 256):
        spec = scipy.fft.rfft(frames[first : first + 256] * window, axis=1)
        power += (spec.real**2 + spec.imag**2).sum(axis=0)
    freqs = np.arange(len(power)) * rate / _SPECTRUM_FFT
    top = min(_PITCH_BAND_HZ[1], 0.45 * rate)
    steps = int(np.log2(top / _PITCH_BAND_HZ[0]) * _PITCH_STEPS)
    grid = _PITCH_BAND_HZ[0] * 2 ** (np.arange(steps) / _PITCH_STEPS)
    level = np.log(power / n + 1e-12 * power.max() + 1e-30)
    v = np.interp(np.log(grid), np.log(freqs[1:]), level[1:])
    width = int(_WHITEN_OCTAVES * _PITCH_STEPS)
    v -= np.convolve(v, np.ones(width) / width, mode="same")
    whitened: NDArray[np.float64] = v[width:-width]
    return whitened
