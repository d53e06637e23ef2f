"""Where in the dance recording the reference's music plays.

The music is taken to play until the room shows that it does not. Where the reference, mapped
onto the recording, is loud against the room's own level and the room does not hear it (its
frames' phase does not agree with the reference's), the music is absent; where the reference is
too quiet for the room to tell (a quiet intro or outro in a noisy room), nothing is known either
way and the span goes on through it. Each 32 ms frame weighs in by a likelihood ratio between
"the music plays here" and "it does not", and each edge is the change point that the evidence
beyond it supports, the earliest start and the latest end among the plausible ones.

:func:`music_edges` works on per-frame arrays, so any mapping (a line, or pieces of an edit)
can feed it the reference's level at the reference time it puts against each frame.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from .fine import Fit, frame_track
from .signals import Signals
from .span import EDGE_SLACK_S, EdgeEvidence, MusicSpan
from .windows import window_kind

__all__ = ["band_power", "music_edges", "music_span"]

_FRAME = 1024
_CHUNK_BLOCKS = 2048
# Frames over which both recordings' powers are averaged: a few beats' worth of a 32 ms grid
# would blur the edges, single frames swing with every drum hit.
_POWER_FRAMES = 7
# The share of music frames the room may fail to hear (a shout, a door), and of frames without
# the music that agree with it by chance.
_STRAY = 0.1
# Neighbouring frames overlap by half and share the music's slow swings: their evidence is
# counted this many times over, so the sums are divided by it.
_CORRELATED = 2.0
# Change points whose evidence is within this many nats of the best one are all plausible.
_PLAUSIBLE = 3.0
# A recording whose frames may show less agreement than its level predicts (a pitch-kept one:
# :attr:`~.windows.WindowKind.share`) shows the music's absence all the same where the room is
# this much quieter against the reference than where the music surely plays: then the room does
# not hear the music, whatever little the frames agree.
_QUIET_ROOM = 4.0
# The spread of a frame's agreement without music: at least this, and this when too few frames
# disagree to measure it (a clean room where the music plays throughout).
_MIN_SPREAD = 0.1
_SPREAD = 0.2


def music_span(
    signals: Signals,
    mapping: Mapping,
    fit: Fit,
    *,
    reach: float = 1.0,
    pool: Executor | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], MusicSpan]:
    """How well each moment of the dance recording matches the mapped reference, and the span
    where the music plays.

    Per 32 ms frame: the phase agreement with the recording's average cross-spectrum, the
    reference's power at the time ``mapping`` puts against it and the room's own. The
    windows that agree with ``fit`` hold music, and a window agrees with music in only part of
    it: the music surely plays from ``reach`` seconds (half a window) inside the first agreeing
    window's centre to as far inside the last one's. :func:`music_edges` decides how far the
    music goes beyond. ``pool``: threads that share the frames.

    Returns
    -------
    times, score, span
        Frame centres (dance s), a [0, 1] score of how well each is matched (for the plot), and
        the span with the evidence at its edges.
    """
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    x, stretch, track = frame_track(signals, mapping, frame=_FRAME, hop=_FRAME // 2)
    count = track.frame_count(len(x))
    kind = window_kind(mapping.pitch_kept)
    agree = kind.agreement(x, bgm.samples, track, count, rate=rate, pool=pool)
    centres = dance.start + (np.arange(count) * track.hop + _FRAME / 2) / rate / stretch
    # Each recording's power on its own thread: NumPy lets go of the interpreter lock.
    where = (mapping.bgm_time_array(centres) - bgm.start) * rate
    played_job = pool.submit(band_power, bgm.samples, rate, where, _FRAME) if pool else None
    heard = band_power(dance.samples, rate, (centres - dance.start) * rate, _FRAME / stretch)
    played = played_job.result() if played_job else band_power(bgm.samples, rate, where, _FRAME)
    smooth = np.convolve(agree, np.ones(5) / 5, mode="same")
    agreed = fit.track.times[fit.track.inlier]
    core = None
    if len(agreed):
        first, last = float(agreed.min()), float(agreed.max())
        middle = 0.5 * (first + last)
        core = (min(first + reach, middle), max(last - reach, middle))
    else:
        # A mapping a person chose may be a few milliseconds off, too far for the windows to
        # agree but not for the frames: their longest stretch above half the typical level.
        level = float(np.median(smooth)) if len(smooth) else 0.0
        lo, hi = _largest_run(smooth - 0.5 * max(level, 0.0))
        if hi > lo and level > 0.0:
            core = (float(centres[lo]), float(centres[hi - 1]))
    span = music_edges(
        centres, agree, played, heard, core=core, bounds=(dance.start, dance.end),
        share=kind.share,
    )  # fmt: skip
    inside = (centres >= span.start) & (centres <= span.end)
    level = float(np.median(smooth[inside])) if inside.any() else 0.0
    score = np.clip(smooth / max(level, 1e-9), 0.0, 1.0)
    return centres, score, span


def band_power(
    samples: NDArray[np.float32], rate: int, centres: NDArray[np.float64], length: float
) -> NDArray[np.float64]:
    """Mean power of ``samples`` above the bass over about ``length`` samples around each of
    ``centres`` (fractional sample indices, placed to within 8 ms); NaN where that reaches
    outside the signal.

    The high-pass is each 8 ms block less its straight-line fit, the cheapest there is (three
    sums per block): the speaker's rumble, the dancers' thumps and any offset drop out (-22 dB
    at 30 Hz, -13 dB at 50 Hz, -4 dB at 100 Hz, flat from 150 Hz), the music's body and the
    voices stay, as in the agreement's band. It goes a chunk at a time, so a long recording
    costs a few hundred kilobytes.
    """
    block = max(1, round(0.008 * rate))
    n_blocks = len(samples) // block
    if n_blocks <= 0 or len(centres) == 0:
        return np.full(len(centres), np.nan)
    ramp = np.arange(block) - (block - 1) / 2.0
    ramp /= np.sqrt(np.sum(ramp * ramp))
    blocks = np.empty(n_blocks)
    for first in range(0, n_blocks, _CHUNK_BLOCKS):
        last = min(first + _CHUNK_BLOCKS, n_blocks)
        part = samples[first * block : last * block].reshape(-1, block).astype(np.float64)
        # The block's power less that of its straight-line fit (mean and slope, orthogonal).
        sums, slopes = part.sum(axis=1), part @ ramp
        blocks[first:last] = np.einsum("ij,ij->i", part, part) - sums * sums / block - slopes**2
    energy = np.concatenate([[0.0], np.cumsum(np.maximum(blocks, 0.0))])
    width = max(1, round(length / block))
    first_block = np.rint(centres / block - width / 2)
    ok = np.isfinite(first_block) & (first_block >= 0) & (first_block + width <= n_blocks)
    at = np.where(ok, first_block, 0).astype(np.int64)
    power = (energy[at + width] - energy[at]) / (width * block)
    return np.where(ok, power, np.nan)


def music_edges(
    times: NDArray[np.float64],
    agree: NDArray[np.float64],
    played: NDArray[np.float64],
    heard: NDArray[np.float64],
    *,
    core: tuple[float, float] | None,
    bounds: tuple[float, float],
    share: float = 1.0,
) -> MusicSpan:
    """The span where the music plays, from per-frame evidence of its absence.

    Parameters
    ----------
    times
        Frame centres, seconds, increasing, evenly spaced; shape (n,).
    agree
        Each frame's phase agreement with the mapped reference, [-1, 1] (about 0 without music).
    played
        The reference's high-passed power (:func:`band_power`) at the reference time mapped
        against each frame (any unit); NaN where the mapping leaves the reference (nothing can
        be told there).
    heard
        The room's, in each frame, same unit.
    core
        Dance seconds known to hold the music (the agreeing windows' span); None when nothing
        agrees, and then the whole recording is kept as doubtful.
    bounds
        The recording's start and end, seconds: the span's widest reach.
    share
        The least share of its expected agreement the music may show (see
        :func:`frame_evidence`).

    Returns
    -------
    MusicSpan
        Edges at the change points between absence and music that keep the music whenever the
        evidence allows (the earliest plausible start, the latest plausible end).
    """
    n = len(times)
    if core is None or n == 0:
        doubt = EdgeEvidence(certainty=0.0, unheard=0.0)
        return MusicSpan(bounds[0], bounds[1], doubt, doubt)
    inside = (times >= core[0]) & (times <= core[1])
    if not inside.any():
        inside = np.abs(times - 0.5 * (core[0] + core[1])) <= 0.5 * _step(times)
    lo, hi = int(np.argmax(inside)), n - int(np.argmax(inside[::-1]))
    llr = frame_evidence(agree, played, heard, inside, share=share)
    start, start_evidence = _edge(llr[:lo][::-1], times[:lo][::-1], times[lo], bounds[0])
    end, end_evidence = _edge(llr[hi:], times[hi:], times[hi - 1], bounds[1])
    return MusicSpan(start, end, start_evidence, end_evidence)


def frame_evidence(
    agree: NDArray[np.float64],
    played: NDArray[np.float64],
    heard: NDArray[np.float64],
    core: NDArray[np.bool_],
    *,
    share: float = 1.0,
) -> NDArray[np.float64]:
    """Each frame's log-likelihood ratio (nats, already divided for the frames' overlap) of the
    music playing there against its absence.

    The room hears the music with the agreement ``A`` typical of the ``core`` frames, scaled
    down where the reference is quieter against the room than there (``played / heard`` below
    its typical value: a quiet passage, a noise burst); never scaled up, so a quiet passage is
    never taken for one that should be heard. Agreement without music is centred on 0 with the
    spread of the negative agreements seen. Either way a few frames stray (:data:`_STRAY`: music
    masked by a shout, a chance agreement), which bounds what one frame can say. With ``share``
    below 1 the music may agree less than expected, down to that share of it: each frame is
    judged by the level in that range that explains it best (its own agreement, clipped),
    unless the room is :data:`_QUIET_ROOM` times quieter against the reference than typical.
    """
    played_s = _moving_mean(played)
    heard_s = _moving_mean(heard)
    known = np.isfinite(played_s) & np.isfinite(heard_s)
    tiny = 1e-12 * float(np.nanmax(heard_s, initial=0.0)) + 1e-30
    ratio = np.where(known, played_s / np.maximum(np.nan_to_num(heard_s), tiny), 0.0)
    typical_ratio = float(np.median(ratio[core & known])) if (core & known).any() else 0.0
    typical = max(float(np.median(agree[core])), 0.0)
    if typical_ratio <= 0.0 or typical <= 0.0:
        return np.zeros(len(agree))
    expected = typical * np.minimum(ratio / typical_ratio, 1.0)
    negative = agree[known & (agree < 0.0)]
    spread = float(np.sqrt(np.mean(negative**2))) if len(negative) >= 20 else _SPREAD
    spread = max(spread, _MIN_SPREAD)
    least = np.where(ratio <= _QUIET_ROOM * typical_ratio, share, 1.0) * expected
    likely = np.clip(agree, least, expected)
    matched = likely * (2.0 * agree - likely) / (2.0 * spread**2)
    # Each side keeps a share of the other's frames (music masked; a chance agreement), so one
    # frame says at most log(9) either way.
    keep, other = np.log1p(-_STRAY), np.log(_STRAY)
    llr = (np.logaddexp(keep + matched, other) - np.logaddexp(keep, other + matched)) / _CORRELATED
    return np.where(known, llr, 0.0)


def _edge(
    llr: NDArray[np.float64], times: NDArray[np.float64], inner: float, outer: float
) -> tuple[float, EdgeEvidence]:
    """One edge of the span, walking outward from the music known at ``inner`` (s) over frames
    ``times`` (ordered outward) with evidence ``llr``; ``outer`` is the recording's own edge.

    A change point after ``k`` frames has the evidence of those frames being music, the rest
    not. The plausible change points are within :data:`_PLAUSIBLE` nats of the best; the edge is
    the outermost (the music is kept), and the frames between it and the innermost are the ones
    kept unheard.
    """
    if len(llr) == 0:
        return outer, EdgeEvidence()
    support = np.concatenate([[0.0], np.cumsum(llr)])  # support[k]: the first k frames music
    plausible = np.flatnonzero(support >= support.max() - _PLAUSIBLE)
    k_out, k_in = int(plausible.max()), int(plausible.min())
    # boundary[k]: between the k-th frame out and the next; past the last one, the recording's
    # own edge.
    boundary = np.concatenate([[0.5 * (inner + times[0])], 0.5 * (times[:-1] + times[1:]), [outer]])
    edge = float(boundary[k_out])
    unheard = abs(edge - float(boundary[k_in]))
    weight = np.exp(support - support.max())
    beyond = np.abs(boundary - inner) > abs(edge - inner) + EDGE_SLACK_S
    certainty = 1.0 - float(weight[beyond].sum() / weight.sum())
    return edge, EdgeEvidence(certainty=round(certainty, 4), unheard=round(unheard, 3))


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


def _moving_mean(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Centred mean over :data:`_POWER_FRAMES` frames; NaN where any of them is."""
    kernel = np.ones(_POWER_FRAMES) / _POWER_FRAMES
    out: NDArray[np.float64] = np.convolve(values, kernel, mode="same")
    return out


def _step(times: NDArray[np.float64]) -> float:
    return float(times[1] - times[0]) if len(times) > 1 else 1.0
