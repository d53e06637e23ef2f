"""Robust fit of ``reference_time = offset + scale × dance_time`` through window lags."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from .windows import window_kind

__all__ = ["AGREE_PROMINENCE", "PRECISE", "fit_line", "precise_line"]

# A window's peak must stand this many robust deviations above its correlation to count.
AGREE_PROMINENCE = 4.0
# A window whose peak lies this close to a line (s) agrees with it precisely: a peak of the
# music lands on its arrival to a few microseconds, chance within this 20 times less often than
# within the fit's tolerance.
PRECISE = 0.0001
# Scales a fitted line may have: a tempo change from 0.5× to 1.5× with clock drift on top.
SCALE_RANGE = (0.45, 1.6)


def fit_line(
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    prom: NDArray[np.float64],
    guess: Mapping,
    *,
    gate: float,
) -> tuple[Mapping, NDArray[np.bool_]] | None:
    """Robust fit of ``beta = a + b t`` over strong windows within ``gate`` of ``guess``.

    A consensus step picks the pair of windows whose line most others agree with (to 2 ms), so a
    coarse guess that is off by tens of milliseconds at the ends still locks; Tukey-weighted least
    squares then polishes it. The line keeps the guess's kind (``pitch_kept``).
    """
    residual = beta - (guess.offset + guess.scale * t)
    use = (prom >= AGREE_PROMINENCE) & (np.abs(residual) <= gate)
    if use.sum() < 2:
        return None
    seed = _consensus(t[use], beta[use], prom[use], guess.scale, agree=0.002)
    if seed is None:
        return None
    a, b = seed
    scale_c = 0.004
    for _ in range(6):
        r = beta - (a + b * t)
        u = r / scale_c
        w = np.where(use & (np.abs(u) < 1.0), (1.0 - u**2) ** 2, 0.0) * np.minimum(prom, 20.0)
        if (w > 0).sum() < 2 or np.ptp(t[w > 0]) < 1e-3:
            break
        centre = float(np.average(t, weights=w))
        design = np.stack([np.ones_like(t), t - centre], axis=1) * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(design, beta * np.sqrt(w), rcond=None)
        a, b = float(coef[0]) - float(coef[1]) * centre, float(coef[1])
    if not SCALE_RANGE[0] < b < SCALE_RANGE[1]:
        return None
    r = beta - (a + b * t)
    core = use & (np.abs(r) < scale_c)
    sigma = 1.4826 * float(np.median(np.abs(r[core]))) if core.any() else scale_c
    least, most = window_kind(guess.pitch_kept).agree
    inlier = (np.abs(r) <= min(most, max(least, 3.0 * sigma))) & (prom >= AGREE_PROMINENCE)
    return Mapping(a, b, guess.pitch_kept), inlier


def precise_line(
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    prom: NDArray[np.float64],
    guess: Mapping,
    *,
    gate: float,
    scale: float | None = None,
) -> Mapping | None:
    """The line most strong windows within ``gate`` of ``guess`` agree with to :data:`PRECISE`,
    fitted through them (at ``scale``, when the scale is known, only its offset); None without
    two such windows.

    In a room where the direct sound is no louder than its reflections each window's peak lands
    on one arrival or another, all of them a fixed lag from the direct sound's line: a fit
    within the usual tolerance tilts between arrivals a couple of milliseconds apart and holds
    few windows of any, where the most populated arrival's own line holds its windows to a few
    microseconds.
    """
    residual = beta - guess.bgm_time_array(t)
    use = (prom >= AGREE_PROMINENCE) & (np.abs(residual) <= gate)
    if use.sum() < 2:
        return None
    seed = _consensus(t[use], beta[use], prom[use], guess.scale, agree=PRECISE)
    if seed is None:
        return None
    a, b = seed
    on = use & (np.abs(beta - (a + b * t)) <= PRECISE)
    if scale is not None:
        b = scale
        a = float(np.median(beta[on] - scale * t[on])) if on.any() else a
    elif on.sum() >= 2 and np.ptp(t[on]) >= 1.0:
        b, a = (float(c) for c in np.polyfit(t[on], beta[on], 1))
    if not SCALE_RANGE[0] < b < SCALE_RANGE[1]:
        return None
    return Mapping(a, b, guess.pitch_kept)


def _consensus(
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    prom: NDArray[np.float64],
    scale: float,
    *,
    agree: float,
) -> tuple[float, float] | None:
    """The line through two windows that the most (prominence-weighted) windows agree with
    (within ``agree`` seconds)."""
    order = np.argsort(-prom)[:60]
    ts, bs = t[order], beta[order]
    i, j = np.triu_indices(len(order), k=1)
    dt = ts[j] - ts[i]
    ok = np.abs(dt) >= 1.0
    i, j, dt = i[ok], j[ok], dt[ok]
    if len(i) == 0:
        return (float(np.median(beta - scale * t)), scale) if len(t) else None
    slopes = (bs[j] - bs[i]) / dt
    plausible = np.abs(slopes / scale - 1.0) <= 0.01
    i, j, slopes = i[plausible], j[plausible], slopes[plausible]
    if len(i) == 0:
        return None
    offsets = bs[i] - slopes * ts[i]
    weight = np.minimum(prom, 20.0)
    # Score every pair's line on all strong windows, in chunks to bound memory.
    best_score, best = -1.0, (float(offsets[0]), float(slopes[0]))
    for first in range(0, len(i), 512):
        a = offsets[first : first + 512, None]
        b = slopes[first : first + 512, None]
        held = np.abs(beta[None, :] - (a + b * t[None, :])) <= agree
        score = (held * weight[None, :]).sum(axis=1)
        k = int(np.argmax(score))
        if score[k] > best_score:
            best_score, best = float(score[k]), (float(a[k, 0]), float(b[k, 0]))
    return best
