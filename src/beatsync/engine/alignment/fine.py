"""The fine stage: lock a coarse line onto the waveform and measure it window by window.

A slope scan on one-second windows brings the line's slope within a few hundredths of a percent;
two-second windows of frame-averaged GCC-PHAT then measure each window's lag to a fraction of a
sample, and a robust fit turns them into the mapping. A resampled change of speed is undone by
resampling the dance signal (:mod:`.signals`); clock drift is followed frame by frame. A
tempo change with the pitch kept is read from short frames' own peaks instead (:mod:`.kept`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from .gcc import FrameTrack, Windows
from .linefit import AGREE_PROMINENCE, PRECISE, fit_line, precise_line
from .search import Line
from .signals import Signals, stretch_key, stretched, stretched_length
from .spectra import ScanMemo
from .windows import REACH, window_kind

__all__ = [
    "MIN_RUN",
    "PRECISE_GAP",
    "Fit",
    "WindowTrack",
    "arrival_fit",
    "assess",
    "frame_track",
    "measure",
    "measure_mapping",
    "on_an_arrival",
    "refine",
]

# Slopes closer to 1 than this are clock drift (phones stay within a few hundred ppm).
_DRIFT_ONLY = 0.0015
# Agreeing windows must come at least this many together to count as music.
MIN_RUN = 4
# Windows that agree precisely (:data:`~.linefit.PRECISE`) are music when this many come
# together, this many windows apart at most: chance puts a window there 1 time in 800.
_PRECISE_RUN = 3
PRECISE_GAP = 6
# A room's reflection: at least this many windows off the line agree precisely on one lag, at
# least this far from it (s); nearer, they are the line's own windows a little off.
_ECHO_WINDOWS = 3
_ECHO_NEAR = 0.0005


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
class Fit:
    """A locked line: ``hits`` windows of ``windows`` agree with it, those marked ``precise``
    (one entry per window, or None for none) only precisely, outside any run of the usual
    tolerance (see :func:`assess`); of the ``stray`` strong windows off the line, ``echoes``
    land on the room's reflections (so many on each lag); ``evidence`` counts
    them weighted by prominence (is there a match at all?); ``score`` sums their whitened peak
    heights (which of two lines matches better? a repeated section is never quite identical)."""

    mapping: Mapping
    track: WindowTrack
    evidence: float
    score: float
    hits: int
    windows: int
    precise: NDArray[np.bool_] | None = None
    echoes: tuple[int, ...] = ()
    stray: int = 0

    @property
    def exact(self) -> int:
        """How many of the agreeing windows agree only precisely."""
        return 0 if self.precise is None else int(self.precise.sum())


def frame_track(
    signals: Signals, mapping: Mapping, *, frame: int, hop: int
) -> tuple[NDArray[np.float32], float, FrameTrack]:
    """The dance signal (resampled if a resampled speed differs), its ratio, and the frames of
    the reference that ``mapping`` pairs with its frames of ``frame`` samples every ``hop``."""
    if window_kind(mapping.pitch_kept).resampled:
        x, stretch = stretched(signals, mapping.scale)
    else:
        x, stretch = signals.dance.samples, 1.0
    return x, stretch, _track(signals, mapping, stretch, frame=frame, hop=hop)


def _track(
    signals: Signals, mapping: Mapping, stretch: float, *, frame: int, hop: int
) -> FrameTrack:
    dance, bgm = signals.dance, signals.bgm
    y_first = (mapping.offset + mapping.scale * dance.start - bgm.start) * dance.rate
    return FrameTrack(frame=frame, hop=hop, y_first=y_first, step=mapping.scale / stretch)


def measure(
    signals: Signals,
    mapping: Mapping,
    *,
    window: float,
    hop: float,
    max_windows: int,
    search: float,
    frame: int = 4096,
    memo: ScanMemo | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Window centres (dance s), matched reference times there (s), strengths and prominences.

    Windows of ``window`` seconds every ``hop`` seconds (spread further apart if there would be
    more than ``max_windows``) that the mapping puts wholly inside the reference. ``frame``
    (samples) is the longest frame: the mapping's kind of window may shorten it
    (:mod:`.windows`). ``memo``: what the trials of a scan share (the dance signal's frames).
    """
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    kind = window_kind(mapping.pitch_kept)
    frame = kind.frame(mapping.scale, rate, frame, search)
    frame_hop = frame // 4
    key = stretch_key(mapping.scale) if kind.resampled else None
    stretch = 1.0 if key is None else float(key)
    track = _track(signals, mapping, stretch, frame=frame, hop=frame_hop)
    n_frames = track.frame_count(stretched_length(signals, key))
    every = max(1, round(hop * rate / frame_hop))
    width = max(1, round((window * rate - frame) / frame_hop) + 1)
    if window > hop and abs(window / hop - round(window / hop)) < 1e-6:
        # A whole number of hops per window lets the windows share their frames' sums.
        width = every * round(window / hop)
    span = (width - 1) * frame_hop + frame
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
    if key is None:
        x = dance.samples
    else:
        first = starts * frame_hop
        spans = np.stack([first, first + span], axis=1)

        def make(spans: NDArray[np.int64]) -> NDArray[np.float32]:
            return stretched(signals, mapping.scale, spans=spans)[0]

        x = make(spans) if memo is None else memo.resampled(key, spans, make)
    spectra = None if memo is None else memo.frames(key, frame)
    windows = Windows(x, bgm.samples, track, starts, width, rate, search)
    result = kind.lags(windows, workers=signals.fft_workers, spectra=spectra)
    centres = dance.start + (starts * frame_hop + span / 2) / rate / stretch
    matched = mapping.offset + mapping.scale * centres + result.lag
    return centres, matched, result.strength, result.prominence


def refine(
    signals: Signals, line: Line, *, window: float, hop: float, max_windows: int
) -> Fit | None:
    """Lock a coarse line onto the waveform: scan the slope, then fit and re-measure twice.

    ``window`` and ``hop`` are the measuring windows' length and spacing in seconds.
    """
    guess = Mapping(line.offset, line.scale, line.pitch_kept)
    if abs(line.scale - 1.0) < _DRIFT_ONLY:
        # Clock drift only, and the coarse slope knows it no better than the drift itself: try
        # the drifts a phone can have on two-second windows, 300 ppm apart, then 150 ppm either
        # side of the best (the 150 ppm grid over ±450 ppm, in five trials instead of seven).
        mapping = _best_drift(signals, guess)
    else:
        mapping = _scan_slope(signals, guess, reach=0.006)
    fit: Fit | None = None
    region: tuple[float, float] | None = None
    kind = window_kind(mapping.pitch_kept)
    # Whether the line is an arrival's own (:func:`on_an_arrival`): later passes keep it so.
    arrival = False
    for gate, reach in kind.passes:
        t, beta, strength, measured = measure(
            signals, mapping, window=kind.span * window, hop=hop, max_windows=max_windows,
            search=reach,
        )  # fmt: skip
        prom = measured
        if region is not None:
            # Refit only where the music was found: stray chance agreements elsewhere would
            # tilt the line.
            prom = np.where((t >= region[0]) & (t <= region[1]), measured, 0.0)
        if arrival:
            # The usual fit would tilt the line between arrivals again.
            mapping = precise_line(t, beta, prom, mapping, gate=gate) or mapping
            fit = arrival_fit(mapping, t, beta, strength, prom)
        else:
            fitted = fit_line(t, beta, prom, mapping, gate=gate)
            if fitted is None:
                return fit
            mapping, inlier = fitted
            fit = assess(mapping, t, beta, strength, prom, inlier)
            if kind.coherent and fit.hits < 2 * MIN_RUN:
                # Few windows agree: they may be spread over the room's arrivals.
                other = on_an_arrival(fit, t, beta, strength, prom, gate=gate)
                arrival = other is not fit
                fit, mapping = other, other.mapping
        agreed = fit.track.times[fit.track.inlier]
        if len(agreed) == 0:
            return fit
        if kind.regrow is not None:
            # Where the music is found is judged afresh under the new line, over every window.
            near = np.abs(beta - mapping.bgm_time_array(t)) <= kind.regrow
            wider = _in_runs(near & (measured >= AGREE_PROMINENCE))
            agreed = t[wider | fit.track.inlier]
        region = (float(agreed.min()) - window, float(agreed.max()) + window)
    return fit


def on_an_arrival(
    fit: Fit,
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    strength: NDArray[np.float64],
    prom: NDArray[np.float64],
    *,
    gate: float,
    scale: float | None = None,
) -> Fit:
    """``fit``, or the line of the arrival its windows agree with most precisely
    (:func:`~.linefit.precise_line`, at ``scale`` when the scale is known) if more windows
    agree with that."""
    line = precise_line(t, beta, prom, fit.mapping, gate=gate, scale=scale)
    if line is None:
        return fit
    other = arrival_fit(line, t, beta, strength, prom)
    return other if other.hits > fit.hits else fit


def arrival_fit(
    line: Mapping,
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    strength: NDArray[np.float64],
    prom: NDArray[np.float64],
) -> Fit:
    """An arrival's line assessed: its inliers are the strong windows within the tightest
    tolerance of the usual fit."""
    least = window_kind(line.pitch_kept).agree[0]
    inlier = (np.abs(beta - line.bgm_time_array(t)) <= least) & (prom >= AGREE_PROMINENCE)
    return assess(line, t, beta, strength, prom, inlier)


def assess(
    mapping: Mapping,
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    strength: NDArray[np.float64],
    prom: NDArray[np.float64],
    inlier: NDArray[np.bool_],
) -> Fit:
    """Score a fitted line: its agreeing windows are the strong inliers that come in runs.

    Music is heard for seconds at a time, so its windows agree in runs; a window of unrelated
    sound agrees by chance (1 in 40) and alone. Only windows in runs of at least ``MIN_RUN``
    strong inliers (a gap of one window allowed) count. In a room where the direct sound is no
    louder than its reflections the windows' peaks spread over the arrivals and those on the
    line come apart; but each lands on its arrival to a few microseconds, where chance brings a
    window 1 time in 800: where the other windows show the room's reflections (``_ECHO_WINDOWS``
    on one lag), strong windows within :data:`~.linefit.PRECISE` of an in-phase line count too,
    ``_PRECISE_RUN`` of them within ``PRECISE_GAP`` windows of each other.
    """
    heard = prom >= AGREE_PROMINENCE
    runs = _in_runs(inlier & heard)
    precise = np.zeros_like(runs)
    echoes: tuple[int, ...] = ()
    stray = 0
    if window_kind(mapping.pitch_kept).coherent:
        residual = beta - mapping.bgm_time_array(t)
        close = np.abs(residual) <= PRECISE
        apart = _in_runs(close & heard, least=_PRECISE_RUN, gap=PRECISE_GAP) & ~runs
        off = residual[heard & ~runs & ~apart & (np.abs(residual) <= REACH)]
        echoes, stray = _echoes(off[np.abs(off) >= _ECHO_NEAR]), len(off)
        if echoes:
            # The windows apart on the line are the room's spread over its arrivals, which
            # the other windows show; without reflections, music's windows come in runs.
            precise = apart
    strong = runs | precise
    evidence = float(np.minimum(1.0, (prom[strong] - 3.0) / 6.0).sum())
    track = WindowTrack(times=t, lags=beta - t, strength=strength, inlier=strong)
    score = float(strength[strong].sum())
    hits = int(strong.sum())
    kept = precise if precise.any() else None
    return Fit(mapping, track, evidence, score, hits, len(t), kept, echoes, stray)


def _echoes(lags: NDArray[np.float64]) -> tuple[int, ...]:
    """How many of ``lags`` (s) agree precisely on each lag that at least ``_ECHO_WINDOWS``
    share, the most shared first: the reflections the windows off the line landed on."""
    rest = np.sort(lags)
    out: list[int] = []
    while len(rest) >= _ECHO_WINDOWS:
        # For each lag, how many lie within 2 × PRECISE above it.
        ends = np.searchsorted(rest, rest + 2.0 * PRECISE, side="right")
        counts = ends - np.arange(len(rest))
        i = int(np.argmax(counts))
        if counts[i] < _ECHO_WINDOWS:
            break
        out.append(int(counts[i]))
        rest = np.concatenate([rest[:i], rest[ends[i] :]])
    return tuple(out)


def measure_mapping(
    signals: Signals, mapping: Mapping, *, window: float, hop: float, max_windows: int
) -> Fit:
    """How well a given mapping (not searched for) is supported, window by window."""
    t, beta, strength, prom = measure(
        signals, mapping, window=window, hop=hop, max_windows=max_windows, search=REACH
    )
    inlier = np.abs(beta - mapping.bgm_time_array(t)) <= 0.002
    return assess(mapping, t, beta, strength, prom, inlier)


def _in_runs(mask: NDArray[np.bool_], *, least: int = MIN_RUN, gap: int = 2) -> NDArray[np.bool_]:
    """``mask`` keeping only runs of at least ``least`` set entries, each at most ``gap``
    entries after the previous one (by default one-entry gaps allowed)."""
    out = np.zeros_like(mask)
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) > gap) + 1
    for run in np.split(idx, breaks):
        if len(run) >= least:
            out[run] = True
    return out


def _scan_slope(signals: Signals, guess: Mapping, *, reach: float) -> Mapping:
    """The slope within ``reach`` (relative) of the coarse guess under which one-second windows
    match best, in steps of 0.05 %.

    The coarse search knows the speed to a few tenths of a percent at worst; the fine
    correlation needs it to a few hundredths, or the frames of a window stop adding up in phase.
    Every other step is tried first, then the two steps either side of the best of those: the
    windows' match falls off over several steps either side of the true slope, so the best
    step lies next to the best of every other one.
    """
    steps = max(1, round(reach / 0.0005))
    scales = guess.scale * (1.0 + np.linspace(-reach, reach, 2 * steps + 1))
    memo = ScanMemo()
    scores = _slope_scores(signals, guess, scales[::2], 1.0, memo)
    best = 2 * int(np.argmax([scores[trial] for trial in sorted(scores, key=lambda m: m.scale)]))
    sides = [i for i in (best - 1, best + 1) if 0 <= i < len(scales)]
    scores |= _slope_scores(signals, guess, scales[sides], 1.0, memo)
    return _best_of(scores)


def _best_drift(signals: Signals, guess: Mapping) -> Mapping:
    """The clock drift, to 150 ppm within ±450 ppm, whose two-second windows match best."""
    # Five trials share little: their frames' spectra (tens of megabytes of long frames, in
    # every run) are not held.
    scores = _slope_scores(signals, guess, 1.0 + np.array([-300e-6, 0.0, 300e-6]), 2.0, None)
    centre = max(scores, key=lambda trial: scores[trial]).scale
    scores |= _slope_scores(signals, guess, centre + np.array([-150e-6, 150e-6]), 2.0, None)
    return _best_of(scores)


def _best_of(scores: dict[Mapping, float]) -> Mapping:
    """The best-scoring line; of equal ones, the one with the lowest slope."""
    return max(sorted(scores, key=lambda trial: trial.scale), key=lambda trial: scores[trial])


def _slope_scores(
    signals: Signals,
    guess: Mapping,
    scales: NDArray[np.float64],
    window: float,
    memo: ScanMemo | None,
) -> dict[Mapping, float]:
    """How well each line through the guess's middle with these slopes is matched: the summed
    prominence of its windows' peaks. The trials share the dance signal's frames (``memo``,
    when given)."""
    mid = signals.dance.start + signals.dance.duration / 2
    frame = 4096 if window >= 2.0 else 2048
    scores: dict[Mapping, float] = {}
    for scale in scales:
        trial = Mapping(guess.bgm_time(mid) - float(scale) * mid, float(scale), guess.pitch_kept)
        *_, prom = measure(
            signals, trial, window=window, hop=window, max_windows=40, search=0.08, frame=frame,
            memo=memo,
        )  # fmt: skip
        scores[trial] = float(np.clip(prom - 4.0, 0.0, 10.0).sum())
    return scores
