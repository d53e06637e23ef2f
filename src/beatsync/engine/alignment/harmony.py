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
:func:`preference` says, window by window, which of two lines the bands follow: of two lines
held alike by the fine windows (a loop a whole number of bars away), the one that plays the
same bars; an edit's piece that a loop hides is found so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from ..mapping import Mapping
from .features import FEATURE_RATE
from .fine import Fit

__all__ = ["ALIKE", "HOP_S", "WINDOW_S", "Harmony", "preference", "standout"]

WINDOW_S = 4.0  # the band windows' length and spacing (s)
HOP_S = 2.0
# A line held by at least this share of the best line's fine windows is held alike: the beat
# of a song built from loops may hold lines whole bars apart.
ALIKE = 0.5
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
        width, hop = round(WINDOW_S * FEATURE_RATE), round(HOP_S * FEATURE_RATE)
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
        width = round(WINDOW_S * FEATURE_RATE)
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


def standout(
    harmony: Harmony, fit: Fit, span: tuple[float, float] = (-np.inf, np.inf)
) -> tuple[int, int]:
    """``(windows, standing out)``: how many windows are compared (those within
    :data:`_NEAR_S` of the fit's agreeing windows in ``span``, dance s), and in how many the
    bands match the reference at the fit's line better than at any other offset within
    :data:`_REACH_S` (0, 0 for a line not at speed 1, whose bands are read at another pitch)."""
    mapping = fit.mapping
    if mapping.pitch_kept or abs(mapping.scale - 1.0) >= _SAME_SPEED:
        return 0, 0
    times = fit.track.times
    agreeing = times[fit.track.inlier & (times >= span[0]) & (times <= span[1])]
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


def preference(
    harmony: Harmony, first: Mapping, second: Mapping
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Window centres (dance s) and, per window, how much better the bands match the reference
    under ``second`` than under ``first`` (the difference of their normalised correlations;
    NaN where either line leaves the reference or a line is not at speed 1)."""
    width, hop = round(WINDOW_S * FEATURE_RATE), round(HOP_S * FEATURE_RATE)
    starts = np.arange(0, max(0, harmony.dance.shape[1] - width + 1), hop, dtype=np.int64)
    centres = harmony.dance_start + (starts + width / 2) / FEATURE_RATE
    if any(m.pitch_kept or abs(m.scale - 1.0) >= _SAME_SPEED for m in (first, second)):
        return centres, np.full(len(starts), np.nan)
    return centres, _match(harmony, second, starts, width) - _match(harmony, first, starts, width)


def _match(
    harmony: Harmony, mapping: Mapping, starts: NDArray[np.int64], width: int
) -> NDArray[np.float64]:
    """Each window's normalised correlation with the reference's bands under ``mapping``."""
    first = np.round(
        (mapping.bgm_time_array(harmony.dance_start + starts / FEATURE_RATE) - harmony.bgm_start)
        * FEATURE_RATE
    ).astype(np.int64)
    out = np.full(len(starts), np.nan)
    for k, (s, f) in enumerate(zip(starts, first, strict=True)):
        if f < 0 or f + width > harmony.bgm.shape[1]:
            continue
        x = harmony.dance[:, s : s + width].astype(np.float64)
        y = harmony.bgm[:, f : f + width].astype(np.float64)
        out[k] = float(np.sum(x * y)) / (np.sqrt(np.sum(x * x) * np.sum(y * y)) + 1e-9)
    return out


def _flat(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.ascontiguousarray(bands - bands.mean(axis=0, keepdims=True), dtype=np.float32)
