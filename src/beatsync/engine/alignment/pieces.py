"""Find the pieces of an edit: other lines that explain stretches of the recording the best
line does not.

The best line's agreeing windows come in runs; so do those of another piece's line, on dance
intervals of their own. A runner-up line whose agreeing windows fall where the best line's
already do (a section the song repeats) is an alternative, not a piece. A line is a piece only
when at least :data:`MIN_PIECE_S` seconds of windows, in runs, agree with it where no accepted
line agrees; stretches of at least that length that no line explains are searched again on
their own. In a song built from loops the best line's windows may agree over another piece
too (the same drums whole bars away): where the band energies follow another line held alike
(:func:`~.harmony.preference`), the best line gives those windows up. All pieces share one
scale (the same clock, the same speed), fitted jointly; the seams between them come from
:mod:`.seam`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from ..media.decode import Audio
from ..piece import Piece
from .direct import direct_sound
from .features import FEATURE_RATE
from .fine import MIN_RUN, PRECISE_GAP, Fit, arrival_fit, assess, measure, on_an_arrival
from .harmony import ALIKE, Harmony, preference
from .harmony import HOP_S as _HARMONY_HOP_S
from .harmony import WINDOW_S as _HARMONY_WINDOW_S
from .linefit import AGREE_PROMINENCE, fit_line, precise_line
from .seam import find_seam
from .search import Speed, coarse_lines
from .signals import Signals
from .windows import window_kind

__all__ = ["MAX_PIECES", "MIN_PIECE_S", "Stretch", "find_stretches", "join_stretches"]

MAX_PIECES = 4
# An edit's pieces last at least this long; a line claims a piece only with runs of agreeing
# windows reaching this far (less the windows at the seams, which hear both lines).
MIN_PIECE_S = 8.0
_MIN_REACH_S = 6.5
_MIN_HITS = 5
_RUN_GAP_S = 3.0  # agreeing windows further apart than this start a new run
_CLAIM_MARGIN_S = 0.5  # a window this close to an accepted run is that run's
# Lines this close are one moment of the song: an edit's jump is a beat or more.
_SAME_LINE_S = 0.1
_NO_STRETCH = 0.003
# Band energies this much better matched under another line (normalised correlation) are that
# line's music.
_PREFERRED = 0.1


@dataclass(frozen=True, slots=True)
class Stretch:
    """A run of windows agreeing with ``fit``'s line: centres from ``lo`` to ``hi`` (dance s)."""

    fit: Fit
    lo: float
    hi: float
    hits: int


def find_stretches(
    signals: Signals,
    best: Fit,
    others: Sequence[Fit],
    *,
    dance_bands: Callable[[float], NDArray[np.float32]],
    bgm_bands: NDArray[np.float32],
    window: float,
    hop: float,
    pool: Executor | None = None,
    harmony: Harmony | None = None,
) -> list[Stretch]:
    """The runs of agreeing windows of the best line and of the lines that claim pieces, in
    dance-time order.

    ``others`` are the runner-up lines already locked; stretches of ``MIN_PIECE_S`` or more
    that no accepted line explains, where an accepted line maps inside the reference, are
    searched again (coarse lines on that stretch alone, locked at the best line's scale). One
    stretch (or several of the best line alone) means one piece. With ``harmony``, the best
    line does not keep the windows where another line that the fine windows hold alike (a loop
    whole bars away) plays the same bars as the recording and the best line does not: that
    line may claim them.
    """
    own = None if harmony is None else _own(best, others, harmony)
    accepted = _runs(best, keep=own)
    if own is not None and not own.all():
        # What another line took may leave the best line a few windows at its edges: too
        # little for a piece of its own.
        whole = [
            s for s in accepted if s.hi - s.lo + window >= _MIN_REACH_S and s.hits >= _MIN_HITS
        ]
        accepted = whole or accepted
    if not accepted:
        return []
    used: set[int] = {id(best)}
    pending = list(others)
    searched: set[tuple[float, float]] = set()
    while True:
        claims = [
            (fit, _claims(fit, accepted, window, harmony, [best, *pending]))
            for fit in pending
            if id(fit) not in used and not _same_music(fit, accepted)
        ]
        claims = [(fit, runs) for fit, runs in claims if runs]
        if claims and len({id(s.fit) for s in accepted}) < MAX_PIECES:
            fit, runs = max(claims, key=lambda c: sum(s.hits for s in c[1]))
            accepted.extend(runs)
            used.add(id(fit))
            continue
        if len({id(s.fit) for s in accepted}) >= MAX_PIECES:
            break
        # Only where a line already claimed stays inside the reference: past its ends the
        # class may play what a cut reference lacks, and a phrase the song repeats would pass
        # for a piece. A piece that jumped back (or forward) leaves the reference where the
        # pieces before it play: once another piece is claimed, its line reaches them. A
        # stretch that held two pieces is searched again once one of them is claimed.
        lo, hi = _inside_reference(signals, accepted)
        gaps = [
            g for g in _gaps(accepted, lo, hi) if (round(g[0], 3), round(g[1], 3)) not in searched
        ]
        searched.update((round(a, 3), round(b, 3)) for a, b in gaps)
        for lo, hi in gaps:
            pending.extend(
                _lines_in(signals, best.mapping, lo, hi, dance_bands, bgm_bands,
                          window=window, hop=hop, pool=pool)
            )  # fmt: skip
        if not gaps:
            break
    accepted.sort(key=lambda s: s.lo)
    return accepted


def join_stretches(
    signals: Signals,
    stretches: Sequence[Stretch],
    music: tuple[float, float],
    *,
    window: float = 2.0,
    hop: float = 1.0,
) -> tuple[tuple[Piece, ...], tuple[Fit, ...]]:
    """The pieces the stretches make, in dance-time order, and each piece's fit.

    Consecutive stretches of one line join into one piece; every piece gets the common scale,
    fitted over the agreeing windows of all pieces, then measured again at that scale on each
    piece's own stretch away from its seams (``window``/``hop`` seconds, as the alignment's),
    and fitted once more; seams are found between consecutive pieces. The first piece starts at
    ``music[0]`` and the last ends at ``music[1]`` (dance s).
    """
    groups: list[list[Stretch]] = []
    for s in sorted(stretches, key=lambda s: s.lo):
        if groups and groups[-1][-1].fit is s.fit:
            groups[-1].append(s)
        else:
            groups.append([s])
    mappings = _joint_fit([_agreeing(g) for g in groups], groups)
    # Windows longer than one measuring window (a pitch-kept recording's) are not measured
    # again: few lie wholly inside a piece, and the agreeing ones, through all the fine
    # passes, know the scale better (within 2 ppm over three pieces, against 14).
    if len(groups) > 1 and window_kind(mappings[0].pitch_kept).span == 1.0:
        mappings = _joint_fit(
            [_remeasure(signals, g, m, window, hop) for g, m in zip(groups, mappings, strict=True)],
            groups,
        )
    seams = [
        find_seam(signals, mappings[k], mappings[k + 1], groups[k][-1].hi, groups[k + 1][0].lo)
        for k in range(len(groups) - 1)
    ]
    edges = [music[0], *seams, music[1]]
    pieces = tuple(Piece(edges[k], edges[k + 1], mappings[k]) for k in range(len(groups)))
    return pieces, tuple(g[0].fit for g in groups)


def _inside_reference(signals: Signals, accepted: Sequence[Stretch]) -> tuple[float, float]:
    """The dance span (s) from the earliest to the latest moment that one of the accepted
    runs' lines maps inside the reference."""
    dance, bgm = signals.dance, signals.bgm
    lines = {id(s.fit): s.fit.mapping for s in accepted}.values()
    lo = min(m.dance_time(bgm.start) for m in lines)
    hi = max(m.dance_time(bgm.end) for m in lines)
    return max(dance.start, lo), min(dance.end, hi)


def _runs(fit: Fit, *, keep: NDArray[np.bool_] | None = None) -> list[Stretch]:
    """``fit``'s agreeing windows (those in ``keep``, when given) grouped into runs; windows
    that agree precisely (:func:`~.fine.assess`) run on across up to ``PRECISE_GAP`` windows."""
    mask = fit.track.inlier if keep is None else fit.track.inlier & keep
    times = fit.track.times[mask]
    if len(times) == 0:
        return []
    if fit.exact:
        idx = np.flatnonzero(mask)
        breaks = np.flatnonzero(np.diff(idx) > PRECISE_GAP) + 1
    else:
        breaks = np.flatnonzero(np.diff(times) > _RUN_GAP_S) + 1
    return [
        Stretch(fit, float(run[0]), float(run[-1]), len(run)) for run in np.split(times, breaks)
    ]


def _own(best: Fit, others: Sequence[Fit], harmony: Harmony) -> NDArray[np.bool_]:
    """Which of ``best``'s windows no other line held alike plays better: the band energies
    follow the other line by :data:`_PREFERRED` or more in windows running over
    :data:`MIN_PIECE_S` (a piece's worth)."""
    times = best.track.times
    own = np.ones(len(times), dtype=bool)
    for fit in others:
        if fit.hits < ALIKE * best.hits:
            continue
        centres, gain = preference(harmony, best.mapping, fit.mapping)
        better = np.nan_to_num(gain, nan=0.0) >= _PREFERRED
        idx = np.flatnonzero(better)
        if len(idx) == 0:
            continue
        for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
            lo, hi = float(centres[run[0]]), float(centres[run[-1]])
            # The windows' centres lie half a window inside what they hear.
            if hi - lo + _HARMONY_WINDOW_S >= MIN_PIECE_S:
                own &= (times < lo - _HARMONY_HOP_S / 2) | (times > hi + _HARMONY_HOP_S / 2)
    return own


def _same_music(fit: Fit, accepted: Sequence[Stretch]) -> bool:
    """Whether ``fit``'s line stays within :data:`_SAME_LINE_S` of an accepted line over the
    recording: the same moment of the song heard through another arrival (a strong reflection
    lands tens of milliseconds after the direct sound), not another piece."""
    lo, hi = fit.track.times[[0, -1]] if len(fit.track.times) else (0.0, 0.0)
    return any(
        max(abs(fit.mapping.bgm_time(t) - s.fit.mapping.bgm_time(t)) for t in (lo, hi))
        < _SAME_LINE_S
        for s in accepted
    )


def _claims(
    fit: Fit,
    accepted: Sequence[Stretch],
    window: float,
    harmony: Harmony | None = None,
    rivals: Sequence[Fit] = (),
) -> list[Stretch]:
    """The runs of ``fit``'s agreeing windows outside every accepted run that are long and
    full enough to be a piece; with ``harmony``, only those that no line of ``rivals`` held
    alike plays better (:func:`_own`)."""
    t = fit.track.times
    free = (
        np.ones(len(t), dtype=bool)
        if harmony is None
        else _own(fit, [r for r in rivals if r is not fit], harmony)
    )
    for s in accepted:
        free &= (t < s.lo - _CLAIM_MARGIN_S) | (t > s.hi + _CLAIM_MARGIN_S)
    return [
        s
        for s in _runs(fit, keep=free)
        if s.hi - s.lo + window >= _MIN_REACH_S and s.hits >= _MIN_HITS
    ]


def _gaps(accepted: Sequence[Stretch], start: float, end: float) -> list[tuple[float, float]]:
    """Dance intervals of at least ``MIN_PIECE_S`` that no accepted run covers."""
    covered = sorted((s.lo, s.hi) for s in accepted)
    gaps, at = [], start
    for lo, hi in covered:
        if lo - at >= MIN_PIECE_S:
            gaps.append((at, lo))
        at = max(at, hi)
    if end - at >= MIN_PIECE_S:
        gaps.append((at, end))
    return gaps


def _lines_in(
    signals: Signals,
    best: Mapping,
    lo: float,
    hi: float,
    dance_bands: Callable[[float], NDArray[np.float32]],
    bgm_bands: NDArray[np.float32],
    *,
    window: float,
    hop: float,
    pool: Executor | None,
) -> list[Fit]:
    """Lines found by a coarse search on dance times ``lo``–``hi`` alone, locked at ``best``'s
    scale (and kind) on that stretch (with a window's margin either side)."""
    dance = signals.dance
    scale = best.scale
    speed = Speed(1.0) if abs(scale - 1.0) < _NO_STRETCH else Speed(scale, best.pitch_kept)
    f0 = max(0, int((lo - dance.start) * FEATURE_RATE))
    f1 = int((hi - dance.start) * FEATURE_RATE)
    lines = coarse_lines(
        lambda s: dance_bands(s)[:, f0:f1],
        bgm_bands,
        speeds=(speed,),
        dance_start=dance.start + f0 / FEATURE_RATE,
        bgm_start=signals.bgm.start,
        max_lines=2,
        pool=pool,
    )
    rate = dance.rate
    i0 = max(0, int((lo - window - dance.start) * rate))
    i1 = min(dance.samples.shape[-1], int((hi + window - dance.start) * rate))
    part = Signals(Audio(dance.samples[i0:i1], rate, dance.start + i0 / rate), signals.bgm)
    fits = []
    for line in lines:
        # The same line through the stretch's middle, at the recording's scale.
        mapping = Mapping(line.offset + (line.scale - scale) * (lo + hi) / 2, scale,
                          best.pitch_kept)  # fmt: skip
        fit = _lock(part, mapping, window=window, hop=hop)
        if fit is not None and fit.exact:
            # Its windows agree precisely on the arrival most of them heard, a reflection as
            # likely as not: the line is the first arrival's, as the best line's is.
            moved = direct_sound(part, fit, window=window, hop=hop, max_windows=600)
            agreed = fit.track.times[fit.track.inlier]
            middle = float(agreed.mean())
            kept = Mapping(moved.mapping.bgm_time(middle) - scale * middle, scale,
                           best.pitch_kept)  # fmt: skip
            fit = dataclasses.replace(moved, mapping=kept)
        if fit is not None:
            fits.append(fit)
    return fits


def _lock(signals: Signals, guess: Mapping, *, window: float, hop: float) -> Fit | None:
    """Lock a line of known scale (and kind) onto the waveform: measure, fit, measure again,
    pass by pass as its kind of window is (:mod:`.windows`). Where few windows agree, they may
    be spread over the room's arrivals: as :func:`~.fine.refine` does, the line moves onto the
    arrival most windows agree with precisely (:func:`~.fine.on_an_arrival`), if more agree
    with it, and later passes keep it there."""
    mapping = guess
    fit: Fit | None = None
    kind = window_kind(guess.pitch_kept)
    arrival = False
    for gate, reach in kind.passes:
        t, beta, strength, prom = measure(
            signals, mapping, window=kind.span * window, hop=hop, max_windows=600, search=reach
        )
        if arrival:
            mapping = precise_line(t, beta, prom, mapping, gate=gate, scale=guess.scale) or mapping
            again = arrival_fit(mapping, t, beta, strength, prom)
            # The arrival's line is held to a few microseconds already; measured again, a
            # window whose peak has two arrivals near level may land on the other.
            fit = again if fit is None or again.hits >= fit.hits else fit
            continue
        fitted = fit_line(t, beta, prom, mapping, gate=gate)
        if fitted is None:
            return fit
        found, inlier = fitted
        # The scale is the recording's (one clock, one speed); only the offset is this line's.
        mapping = Mapping(_offset_at(t[inlier], beta[inlier], prom[inlier], guess.scale, found),
                          guess.scale, guess.pitch_kept)  # fmt: skip
        inlier = np.abs(beta - mapping.bgm_time_array(t)) <= kind.agree[1]
        fit = assess(mapping, t, beta, strength, prom, inlier)
        if kind.coherent and fit.hits < 2 * MIN_RUN:
            other = on_an_arrival(fit, t, beta, strength, prom, gate=gate, scale=guess.scale)
            arrival = other is not fit
            fit, mapping = other, other.mapping
    return fit


def _offset_at(
    t: NDArray[np.float64],
    beta: NDArray[np.float64],
    weight: NDArray[np.float64],
    scale: float,
    fallback: Mapping,
) -> float:
    if len(t) == 0:
        return fallback.offset
    w = np.minimum(weight, 20.0)
    return float(np.average(beta - scale * t, weights=w + 1e-9))


Windows = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def _agreeing(group: Sequence[Stretch]) -> Windows:
    """The times, matched reference times and strengths of a group's agreeing windows."""
    track = group[0].fit.track
    inside = np.zeros(len(track.times), dtype=bool)
    for s in group:
        inside |= (track.times >= s.lo) & (track.times <= s.hi)
    use = inside & track.inlier
    t = track.times[use]
    return t, track.lags[use] + t, np.maximum(track.strength[use], 1e-6)


def _remeasure(
    signals: Signals, group: Sequence[Stretch], mapping: Mapping, window: float, hop: float
) -> Windows:
    """A group's windows measured again under ``mapping`` (the common scale), only those whose
    whole span lies inside the group's agreeing stretch: none hears the other side of a seam."""
    dance = signals.dance
    rate = dance.rate
    kind = window_kind(mapping.pitch_kept)
    window *= kind.span
    lo, hi = group[0].lo, group[-1].hi
    i0 = max(0, int((lo - dance.start) * rate))
    i1 = min(dance.samples.shape[-1], int((hi - dance.start) * rate))
    if (i1 - i0) / rate < window + 2 * hop:
        return _agreeing(group)
    part = Signals(Audio(dance.samples[i0:i1], rate, dance.start + i0 / rate), signals.bgm)
    t, beta, strength, prom = measure(
        part, mapping, window=window, hop=hop, max_windows=600, search=kind.passes[-1][1]
    )
    near = np.abs(beta - mapping.bgm_time_array(t)) <= kind.agree[1]
    use = (prom >= AGREE_PROMINENCE) & near
    if use.sum() < 2:
        return _agreeing(group)
    return t[use], beta[use], np.maximum(strength[use], 1e-6)


def _joint_fit(parts: Sequence[Windows], groups: Sequence[Sequence[Stretch]]) -> list[Mapping]:
    """One mapping per group with a common scale: least squares over each group's windows
    (``parts``) with an offset per group, reweighted (Tukey, 1.5 ms) so that a window that
    heard a reflection weighs little; a single group keeps its own fit."""
    if len(groups) == 1:
        return [groups[0][0].fit.mapping]
    t = np.concatenate([p[0] for p in parts])
    beta = np.concatenate([p[1] for p in parts])
    strength = np.concatenate([p[2] for p in parts])
    which = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    first = groups[0][0].fit.mapping
    if np.bincount(which, minlength=len(groups)).min() < 2:
        return [_at_scale(g[0].fit.mapping, first.scale, g) for g in groups]
    weight = strength.copy()
    scale, offsets = first.scale, np.zeros(len(groups))
    for _ in range(4):
        sums = np.bincount(which, weights=weight, minlength=len(groups))
        tc = np.bincount(which, weights=weight * t, minlength=len(groups)) / sums
        bc = np.bincount(which, weights=weight * beta, minlength=len(groups)) / sums
        dt = t - tc[which]
        den = float(np.sum(weight * dt**2))
        if den <= 0.0:
            break
        scale = float(np.sum(weight * dt * (beta - bc[which]))) / den
        offsets = bc - scale * tc
        u = (beta - offsets[which] - scale * t) / 0.0015
        weight = strength * np.where(np.abs(u) < 1.0, (1.0 - u**2) ** 2, 0.0)
        if np.bincount(which, weights=weight, minlength=len(groups)).min() <= 0.0:
            break
    # The windows follow the loudest arrival; each piece's line is its first one, as far
    # from the loudest as the piece's own fit found it (:func:`~.direct.direct_sound`), where
    # its windows lie further from it than the fit's tightest tolerance holds its own.
    own = window_kind(first.pitch_kept).agree[0]
    for k, (part, group) in enumerate(zip(parts, groups, strict=True)):
        away = float(np.median(part[1] - group[0].fit.mapping.bgm_time_array(part[0])))
        if abs(away) > own:
            offsets[k] -= away
    return [Mapping(float(a), scale, first.pitch_kept) for a in offsets]


def _at_scale(mapping: Mapping, scale: float, group: Sequence[Stretch]) -> Mapping:
    """``mapping`` turned to ``scale`` about the middle of ``group``."""
    middle = (group[0].lo + group[-1].hi) / 2
    return Mapping(mapping.bgm_time(middle) - scale * middle, scale, mapping.pitch_kept)
