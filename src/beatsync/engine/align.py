"""Align a live recording to its reference: ``bgm_time = offset + scale × dance_time``.

The recipe: onset features at 100 Hz find candidate lines (:mod:`.search`); frame-averaged
GCC-PHAT in 2-second windows measures the residual lag of each window to a fraction of a sample
(:mod:`.gcc`); a robust line fit over the windows gives offset and scale; the count and strength
of agreeing windows give the confidence. When no line is supported the recordings do not share
the music and :class:`MusicMismatchError` is raised: there is no fallback to offset 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from .decode import Audio, decode_audio
from .errors import MusicMismatchError
from .features import FEATURE_RATE, onset_bands, onset_envelope
from .gcc import FrameTrack, frame_agreement, window_lags
from .search import Line, coarse_lines

__all__ = [
    "AlignParams",
    "Alignment",
    "Candidate",
    "Mapping",
    "WindowTrack",
    "align_files",
    "align_signals",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mapping:
    """A linear map from dance-file time to reference-file time, both in seconds.

    ``offset`` is the reference time at dance time 0; ``scale`` is reference seconds per dance
    second (1 + drift; 0.9–1.1 for a practice version played slower or faster).
    """

    offset: float
    scale: float = 1.0

    def bgm_time(self, dance_time: float) -> float:
        return self.offset + self.scale * dance_time

    def bgm_time_array(self, dance_time: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.offset + self.scale * dance_time

    def dance_time(self, bgm_time: float) -> float:
        return (bgm_time - self.offset) / self.scale

    @property
    def drift_ppm(self) -> float:
        return (self.scale - 1.0) * 1e6

    def nudged(self, milliseconds: float) -> Mapping:
        """The same map with the reference played ``milliseconds`` later against the picture."""
        return Mapping(self.offset - milliseconds / 1000.0, self.scale)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One answer: a mapping, how sure we are of it, and the share of windows that agree."""

    mapping: Mapping
    confidence: float
    support: float


@dataclass(frozen=True, slots=True)
class WindowTrack:
    """The fine lags measured in short windows, for the line fit and the plot.

    All arrays have one entry per window: ``times`` (dance seconds, window centres),
    ``lags`` (reference time − dance time, seconds), ``strength`` (peak strength, 0–1),
    ``inlier`` (whether the window agrees with the fitted mapping).
    """

    times: NDArray[np.float64]
    lags: NDArray[np.float64]
    strength: NDArray[np.float64]
    inlier: NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Alignment:
    """The answer of :func:`align_signals`.

    ``music`` is the dance-time span (start, end) where the reference's music is heard in the
    live recording; ``activity`` is a (times, score) curve of how well each moment matches, score
    in [0, 1]; ``envelopes`` is (times, dance envelope, reference envelope mapped onto dance time),
    three arrays of one length, envelopes normalised to [0, 1], for the plot.
    """

    mapping: Mapping
    confidence: float
    candidates: tuple[Candidate, ...]
    windows: WindowTrack
    music: tuple[float, float]
    activity: tuple[NDArray[np.float64], NDArray[np.float64]] = field(repr=False)
    envelopes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] = field(
        repr=False
    )


_AGREE_PROMINENCE = 4.0
_STRETCH_GRID = 0.001
DEFAULT_SPEEDS = (0.90, 0.92, 0.94, 0.96, 0.98, 1.02, 1.04, 1.06, 1.08, 1.10)


@dataclass(frozen=True, slots=True)
class AlignParams:
    """Knobs of the alignment; the defaults are the tested ones.

    ``speeds``: speed ratios tried when the recording is not at the reference's speed (1.0 is
    always tried first). ``offset_hint``: a reference time (s) at dance time 0 given by a person;
    only lines within ``hint_radius`` seconds of it are considered. ``min_windows``: agreeing
    windows needed to accept an answer. ``min_confidence``: below this, refuse.
    """

    speeds: tuple[float, ...] = DEFAULT_SPEEDS
    window: float = 2.0
    hop: float = 1.0
    max_windows: int = 400
    offset_hint: float | None = None
    hint_radius: float = 1.0
    min_windows: int = 5
    min_confidence: float = 0.5
    candidates: int = 3


@dataclass(frozen=True, slots=True)
class _Fit:
    """A locked line: ``hits`` windows of ``windows`` agree with it; ``evidence`` counts them
    weighted by prominence (is there a match at all?); ``score`` sums their whitened peak
    heights (which of two lines matches better? a repeated section is never quite identical)."""

    mapping: Mapping
    track: WindowTrack
    evidence: float
    score: float
    hits: int
    windows: int


@dataclass(slots=True)
class _Signals:
    dance: Audio
    bgm: Audio
    stretched: dict[Fraction, NDArray[np.float32]] = field(default_factory=dict)


def align_files(
    dance: str | os.PathLike[str],
    bgm: str | os.PathLike[str],
    *,
    params: AlignParams | None = None,
) -> Alignment:
    """Decode both files' audio at 16 kHz mono and align them with :func:`align_signals`."""
    return align_signals(decode_audio(dance), decode_audio(bgm), params=params)


def align_signals(dance: Audio, bgm: Audio, *, params: AlignParams | None = None) -> Alignment:
    """Find ``bgm_time = offset + scale × dance_time``.

    Parameters
    ----------
    dance, bgm
        Mono audio at the same rate (16 kHz is plenty), each with its start time on its file's
        timeline.
    params
        Search settings.

    Returns
    -------
    Alignment
        The mapping, a confidence in [0, 1], runner-up candidates, the per-window lags, the span
        of the dance recording where the music is heard, and curves for the plot.

    Raises
    ------
    MusicMismatchError
        When no mapping is supported by enough of the recording.
    """
    p = params or AlignParams()
    if dance.rate != bgm.rate:
        raise ValueError("both signals must have the same sample rate")
    signals = _Signals(dance, bgm)
    dance_bands = onset_bands(dance.samples, dance.rate)
    bgm_bands = onset_bands(bgm.samples, bgm.rate)

    def search(speeds: tuple[float, ...]) -> list[_Fit]:
        lines = coarse_lines(
            dance_bands,
            bgm_bands,
            speeds=speeds,
            dance_start=dance.start,
            bgm_start=bgm.start,
            max_lines=p.candidates + 1,
        )
        if p.offset_hint is not None:
            hint = p.offset_hint
            lines = [ln for ln in lines if abs(ln.offset - hint) <= p.hint_radius]
            lines = lines or [Line(hint, 1.0, 0.0)]
        # Runner-up lines with a fraction of the best one's votes are not worth locking.
        top = lines[0].votes if lines else 0.0
        worth = [ln for ln in lines[: p.candidates] if ln.votes >= 0.3 * top]
        fits = [_refine(signals, line, p) for line in worth]
        return [f for f in fits if f is not None]

    fits = search((1.0,))
    if not _accepted(_best(fits), p) and p.offset_hint is None:
        fits += search(tuple(s for s in p.speeds if s != 1.0))
    fits = _distinct(sorted(fits, key=lambda f: -f.score))
    best = _best(fits)
    if best is None or not _accepted(best, p):
        found = (
            f"{best.hits} of {best.windows} windows agree, "
            f"{max(p.min_windows, _chance_hits(best.windows)):.0f} needed"
            if best
            else "no candidate line"
        )
        raise MusicMismatchError(f"the recordings do not share the music ({found})")
    runner_up = fits[1].score if len(fits) > 1 else 0.0
    confidence = _confidence(best) * _distinctness(best.score, runner_up)
    candidates = tuple(
        Candidate(
            f.mapping,
            round(_confidence(f) * _distinctness(f.score, best.score), 4),
            f.hits / max(f.windows, 1),
        )
        for f in fits[1:]
    )
    times, score, music = _activity(signals, best.mapping, best)
    log.debug(
        "aligned: offset %.4f s, drift %.1f ppm, %d/%d windows, confidence %.3f",
        best.mapping.offset,
        best.mapping.drift_ppm,
        best.hits,
        best.windows,
        confidence,
    )
    return Alignment(
        mapping=best.mapping,
        confidence=round(confidence, 4),
        candidates=candidates,
        windows=best.track,
        music=music,
        activity=(times, score),
        envelopes=_envelopes(dance_bands, bgm_bands, dance.start, bgm.start, best.mapping),
    )


def _best(fits: list[_Fit]) -> _Fit | None:
    return max(fits, key=lambda f: f.score, default=None)


def _accepted(fit: _Fit | None, p: AlignParams) -> bool:
    return (
        fit is not None
        and fit.hits >= max(p.min_windows, _chance_hits(fit.windows))
        and _confidence(fit) >= p.min_confidence
    )


def _chance_hits(windows: int) -> float:
    """Agreeing windows that two unrelated recordings reach by chance, with a wide margin.

    A window agrees by chance with probability about 1/40 (±2 ms of ±80 ms searched); the fitted
    line is chosen to maximise agreement, so four standard deviations and three more are added.
    """
    expected = windows / 40.0
    return expected + 4.0 * float(np.sqrt(expected)) + 3.0


def _confidence(fit: _Fit) -> float:
    """Evidence beyond chance to [0, 1]: 3 strong windows more than chance ≈ 0.63, 9 ≈ 0.95."""
    excess = fit.evidence - _chance_hits(fit.windows) / 2.0
    return float(1.0 - np.exp(-max(excess, 0.0) / 3.0))


def _distinctness(score: float, other: float) -> float:
    """1 when the runner-up matches nowhere, 0 when it matches as well as the answer."""
    if score <= 0:
        return 0.0
    ratio = min(other / score, 1.0)
    return float(np.sqrt(1.0 - ratio**2))


def _distinct(fits: list[_Fit]) -> list[_Fit]:
    kept: list[_Fit] = []
    for fit in fits:
        if all(not _close(fit, k) for k in kept):
            kept.append(fit)
    return kept


def _close(a: _Fit, b: _Fit) -> bool:
    t = a.track.times
    mid = float(np.median(t)) if len(t) else 0.0
    return abs(a.mapping.bgm_time(mid) - b.mapping.bgm_time(mid)) < 0.02


def _stretch(signals: _Signals, scale: float) -> tuple[NDArray[np.float32], float]:
    """The dance signal resampled so one of its seconds spans about one reference second, and
    the ratio used (a multiple of 0.1 %, so lines and slope trials share a few resamplings).

    Only a change of speed needs it: clock drift, and what is left of the speed after the
    resampling, is followed frame by frame.
    """
    ratio = round(scale / _STRETCH_GRID) * _STRETCH_GRID
    if abs(ratio - 1.0) < 1.5 * _STRETCH_GRID:
        return signals.dance.samples, 1.0
    key = Fraction(ratio).limit_denominator(10_000)
    if key not in signals.stretched:
        signals.stretched[key] = _cubic_resample(signals.dance.samples, float(key))
    return signals.stretched[key], float(key)


def _cubic_resample(x: NDArray[np.float32], ratio: float) -> NDArray[np.float32]:
    """``out[k] = x(k / ratio)`` by Catmull-Rom interpolation (phase-true, mild treble loss)."""
    pos = np.arange(int(len(x) * ratio), dtype=np.float64) / ratio
    i = np.floor(pos).astype(np.int64)
    f = (pos - i).astype(np.float32)
    xp = np.pad(x, (1, 3))
    p0, p1, p2, p3 = xp[i], xp[i + 1], xp[i + 2], xp[i + 3]
    return (
        p1
        + 0.5 * f * (p2 - p0 + f * (2 * p0 - 5 * p1 + 4 * p2 - p3 + f * (3 * (p1 - p2) + p3 - p0)))
    ).astype(np.float32)


def _measure(
    signals: _Signals,
    mapping: Mapping,
    *,
    window: float,
    hop: float,
    max_windows: int,
    search: float,
    frame: int = 4096,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Window centres (dance s), matched reference times there (s), strengths and prominences.

    Windows of ``window`` seconds every ``hop`` seconds (spread further apart if there would be
    more than ``max_windows``) that the mapping puts wholly inside the reference.
    """
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    x, stretch = _stretch(signals, mapping.scale)
    frame_hop = frame // 4
    step = mapping.scale / stretch
    y_first = (mapping.offset + mapping.scale * dance.start - bgm.start) * rate
    track = FrameTrack(frame=frame, hop=frame_hop, y_first=y_first, step=step)
    n_frames = track.frame_count(len(x))
    width = max(1, round((window * rate - frame) / frame_hop) + 1)
    span = (width - 1) * frame_hop + frame
    every = max(1, round(hop * rate / frame_hop))
    count = (n_frames - width) // every + 1 if n_frames >= width else 0
    if count > max_windows:
        every = max(1, (n_frames - width) // max(max_windows - 1, 1))
        count = (n_frames - width) // every + 1
    starts = np.arange(count, dtype=np.int64) * every
    y_lo = track.y_starts(starts)
    y_hi = track.y_starts(starts + width - 1) + frame
    starts = starts[(y_lo >= 0) & (y_hi <= len(bgm.samples))]
    if len(starts) == 0:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    result = window_lags(x, bgm.samples, track, starts, width, rate=rate, search=search)
    centres = dance.start + (starts * frame_hop + span / 2) / rate / stretch
    matched = mapping.offset + mapping.scale * centres + result.lag
    return centres, matched, result.strength, result.prominence


def _refine(signals: _Signals, line: Line, p: AlignParams) -> _Fit | None:
    """Lock a coarse line onto the waveform: scan the slope, then fit and re-measure twice."""
    # At speed 1 only clock drift is possible; a practice version's speed is known less well.
    reach = 0.0015 if abs(line.scale - 1.0) < 0.0015 else 0.006
    mapping = _scan_slope(signals, Mapping(line.offset, line.scale), reach=reach)
    fit: _Fit | None = None
    # The search stays wide in both passes: a window that lands within 2 ms of the line by
    # chance then has a 1-in-40 probability, so agreeing windows are evidence.
    for gate in (0.08, 0.01):
        t, beta, strength, prom = _measure(
            signals, mapping, window=p.window, hop=p.hop, max_windows=p.max_windows, search=0.08
        )
        fitted = _fit_line(t, beta, prom, mapping, gate=gate)
        if fitted is None:
            return fit
        mapping, inlier = fitted
        strong = inlier & (prom >= _AGREE_PROMINENCE)
        evidence = float(np.minimum(1.0, (prom[strong] - 3.0) / 6.0).sum())
        track = WindowTrack(times=t, lags=beta - t, strength=strength, inlier=strong)
        score = float(strength[strong].sum())
        fit = _Fit(mapping, track, evidence, score, int(strong.sum()), len(t))
    return fit


def _scan_slope(signals: _Signals, guess: Mapping, *, reach: float) -> Mapping:
    """The slope within ``reach`` (relative) of the coarse guess under which one-second windows
    match best, in steps of 0.05 %.

    The coarse search knows the slope to a few tenths of a percent at worst; the fine correlation
    needs it to a few hundredths, or the frames of a window stop adding up in phase.
    """
    duration = signals.dance.duration
    mid = signals.dance.start + duration / 2
    steps = max(1, round(reach / 0.0005))
    best, best_score = guess, -1.0
    for delta in np.linspace(-reach, reach, 2 * steps + 1):
        scale = guess.scale * (1.0 + delta)
        trial = Mapping(guess.bgm_time(mid) - scale * mid, scale)
        *_, prom = _measure(
            signals, trial, window=1.0, hop=1.0, max_windows=40, search=0.08, frame=2048
        )
        score = float(np.clip(prom - 5.0, 0.0, 10.0).sum())
        if score > best_score:
            best, best_score = trial, score
    return best


def _fit_line(
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
    squares then polishes it.
    """
    residual = beta - (guess.offset + guess.scale * t)
    use = (prom >= _AGREE_PROMINENCE) & (np.abs(residual) <= gate)
    if use.sum() < 2:
        return None
    seed = _consensus(t[use], beta[use], prom[use], guess.scale)
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
    if not 0.8 < b < 1.25:
        return None
    r = beta - (a + b * t)
    core = use & (np.abs(r) < scale_c)
    sigma = 1.4826 * float(np.median(np.abs(r[core]))) if core.any() else scale_c
    inlier = (np.abs(r) <= min(0.002, max(0.001, 3.0 * sigma))) & (prom >= _AGREE_PROMINENCE)
    return Mapping(a, b), inlier


def _consensus(
    t: NDArray[np.float64], beta: NDArray[np.float64], prom: NDArray[np.float64], scale: float
) -> tuple[float, float] | None:
    """The line through two windows that the most (prominence-weighted) windows agree with."""
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
        agree = np.abs(beta[None, :] - (a + b * t[None, :])) <= 0.002
        score = (agree * weight[None, :]).sum(axis=1)
        k = int(np.argmax(score))
        if score[k] > best_score:
            best_score, best = float(score[k]), (float(a[k, 0]), float(b[k, 0]))
    return best


def _activity(
    signals: _Signals, mapping: Mapping, fit: _Fit
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[float, float]]:
    """How well each moment of the dance recording matches the mapped reference, and the span
    where the music is heard.

    Per 32 ms frame, the phase agreement with the recording's average cross-spectrum; the span
    is the stretch whose agreement most exceeds half the typical in-music level (the largest
    sum of a contiguous run), so short gaps in the music do not split it.
    """
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    x, stretch = _stretch(signals, mapping.scale)
    frame = 1024
    y_first = (mapping.offset + mapping.scale * dance.start - bgm.start) * rate
    track = FrameTrack(frame=frame, hop=frame // 2, y_first=y_first, step=mapping.scale / stretch)
    count = track.frame_count(len(x))
    agree = frame_agreement(x, bgm.samples, track, count, rate=rate)
    smooth = np.convolve(agree, np.ones(5) / 5, mode="same")
    centres = dance.start + (np.arange(count) * track.hop + frame / 2) / rate / stretch
    agreed = fit.track.times[fit.track.inlier]
    core = (centres >= agreed.min()) & (centres <= agreed.max()) if len(agreed) else smooth > 0
    level = float(np.median(smooth[core])) if core.any() else float(smooth.max(initial=0.0))
    score = np.clip(smooth / max(level, 1e-9), 0.0, 1.0)
    lo, hi = _largest_run(smooth - 0.5 * level)
    if hi <= lo:
        return centres, score, (float(agreed.min()), float(agreed.max()))
    half = track.hop / rate / stretch / 2
    return centres, score, (float(centres[lo]) - half, float(centres[hi - 1]) + half)


def _largest_run(values: NDArray[np.float64]) -> tuple[int, int]:
    """``(lo, hi)`` maximising ``values[lo:hi].sum()`` (Kadane); ``(0, 0)`` if all negative."""
    best, best_lo, best_hi = 0.0, 0, 0
    running, lo = 0.0, 0
    for i, v in enumerate(values.tolist()):
        if running <= 0.0:
            running, lo = v, i
        else:
            running += v
        if running > best:
            best, best_lo, best_hi = running, lo, i + 1
    return best_lo, best_hi


def _envelopes(
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    dance_start: float,
    bgm_start: float,
    mapping: Mapping,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    dance_env = onset_envelope(dance_bands)
    bgm_env = onset_envelope(bgm_bands)
    times = dance_start + np.arange(len(dance_env)) / FEATURE_RATE
    where = (mapping.offset + mapping.scale * times - bgm_start) * FEATURE_RATE
    mapped = np.interp(where, np.arange(len(bgm_env)), bgm_env, left=0.0, right=0.0)
    return times, dance_env, mapped
