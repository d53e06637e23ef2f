"""Whether a line is held by the song's harmony and melody, not by its beat alone.

Songs built from loops repeat the same drum samples bar after bar, and another song built from
the same samples at the same tempo shares them too. The fine windows (whitened waveforms) hear
mostly those drums: lines a whole number of bars apart are held alike, in the song and in its
same-sample neighbour. The band energies (:mod:`.features`) also keep the chords and the
melody. With each frame's mean over the bands taken out (a drum hit raises every band at once),
what is left in a window of a few seconds is what is played there, and it matches the
reference best at the line that plays the same bars.

:func:`standout` counts the windows (where the line's fine windows agree) whose bands match
the reference better at the line than at any other offset within :data:`_REACH_S`: a true line
stands out of its bar-shifted neighbours in most windows, a line of a same-sample song in few.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from ..mapping import Mapping
from .features import FEATURE_RATE
from .fine import Fit

__all__ = ["Harmony", "standout"]

_WINDOW_S = 4.0
_HOP_S = 2.0
_REACH_S = 8.0  # offsets compared either side of the line
_SAME_S = 0.3  # offsets this close are the line itself
_NEAR_S = 1.0  # windows compared lie this close to an agreeing fine window: where music plays
# Lines further than this from speed 1 read the bands at another pitch: not compared here.
_SAME_SPEED = 0.003


@dataclass(frozen=True, slots=True)
class Harmony:
    """Both recordings' band features with each frame's mean over the bands removed."""

    dance: NDArray[np.float32]
    bgm: NDArray[np.float32]
    dance_start: float
    bgm_start: float

    @classmethod
    def of(
        cls,
        dance_bands: NDArray[np.float32],
        bgm_bands: NDArray[np.float32],
        dance_start: float,
        bgm_start: float,
    ) -> Harmony:
        """From :func:`~.features.band_features` arrays, shape (bands, frames)."""
        return cls(_flat(dance_bands), _flat(bgm_bands), dance_start, bgm_start)

    def windows(self, mapping: Mapping) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Centres (dance s) and first reference frames of the windows ``mapping`` puts wholly
        inside the reference, with :data:`_REACH_S` of it either side."""
        width, hop = round(_WINDOW_S * FEATURE_RATE), round(_HOP_S * FEATURE_RATE)
        reach = round(_REACH_S * FEATURE_RATE)
        starts = np.arange(0, max(0, self.dance.shape[1] - width + 1), hop, dtype=np.int64)
        centres = self.dance_start + (starts + width / 2) / FEATURE_RATE
        first = np.round(
            (mapping.bgm_time_array(self.dance_start + starts / FEATURE_RATE) - self.bgm_start)
            * FEATURE_RATE
        ).astype(np.int64)
        inside = (first - reach >= 0) & (first + reach + width <= self.bgm.shape[1])
        return centres[inside], np.stack([starts[inside], first[inside]])

    def curves(self, mapping: Mapping) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Window centres (dance s) and, per window, the normalised correlation of its bands
        with the reference's at every offset within :data:`_REACH_S` of ``mapping`` (shape
        (windows, offsets), the line's offset in the middle column)."""
        width = round(_WINDOW_S * FEATURE_RATE)
        reach = round(_REACH_S * FEATURE_RATE)
        centres, (starts, first) = self.windows(mapping)
        lags = 2 * reach + 1
        size = scipy.fft.next_fast_len(width + lags - 1, real=True)
        out = np.zeros((len(starts), lags))
        for k, (s, f) in enumerate(zip(starts, first, strict=True)):
            x = self.dance[:, s : s + width].astype(np.float64)
            y = self.bgm[:, f - reach : f + reach + width].astype(np.float64)
            spec = np.conj(scipy.fft.rfft(x, size, axis=1)) * scipy.fft.rfft(y, size, axis=1)
            corr = scipy.fft.irfft(spec.sum(axis=0), size)[:lags]
            energy = np.concatenate([[0.0], np.cumsum((y * y).sum(axis=0))])
            norm = np.sqrt(np.maximum(energy[width:] - energy[:-width], 1e-12))[:lags]
            out[k] = corr / (norm * (np.sqrt((x * x).sum()) + 1e-9))
        return centres, out


def standout(harmony: Harmony, fit: Fit) -> tuple[int, int]:
    """``(windows, standing out)``: how many windows are compared (those within
    :data:`_NEAR_S` of the fit's agreeing windows), and in how many the bands match the
    reference at the fit's line better than at any other offset within :data:`_REACH_S` (0, 0
    for a line not at speed 1, whose bands are read at another pitch)."""
    mapping = fit.mapping
    if mapping.pitch_kept or abs(mapping.scale - 1.0) >= _SAME_SPEED:
        return 0, 0
    agreeing = fit.track.times[fit.track.inlier]
    centres, curves = harmony.curves(mapping)
    if len(curves) == 0 or len(agreeing) == 0:
        return 0, 0
    near = np.abs(centres[:, None] - agreeing[None, :]).min(axis=1) <= _NEAR_S
    curves = curves[near]
    middle = curves.shape[1] // 2
    same = round(_SAME_S * FEATURE_RATE)
    others = np.concatenate([curves[:, : middle - same], curves[:, middle + same + 1 :]], axis=1)
    at_line = curves[:, middle - same : middle + same + 1].max(axis=1)
    return len(curves), int(np.sum(at_line > others.max(axis=1)))


def _flat(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.ascontiguousarray(bands - bands.mean(axis=0, keepdims=True), dtype=np.float32)
