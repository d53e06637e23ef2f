"""Whether a locked line is the answer, and how sure it is.

A line is accepted when enough windows agree with it, their evidence gives a confidence above
the threshold, and chance would not give as much (:func:`accepted`). Answers that match about
equally well divide the confidence between them (:func:`shares`).

Chance is measured a contrario (the number of false alarms of Desolneux, Moisan and Morel):
if the two recordings shared no music, each window's peak would fall anywhere in the lags it
was searched over, so it agrees with a given line (within the fit's tolerance ``δ``, searched
over ``±R`` by the fine stage's first pass, which locates the line; later passes only narrow
the search around it) with probability ``p = δ / R``, and ``k`` or more of ``n`` windows agree with
probability ``P[Binomial(n, p) ≥ k]``. The search could have found any of the lines it can
tell apart: every offset that lets the recordings overlap, ``(dance + reference) / 2δ``;
every slope within the 1 % a fitted line may move from the speed it was searched at, at the
resolution ``2δ / span`` its windows' span gives; at each of the speeds (and kinds) searched.
Their product ``N`` times the probability is the number of lines expected to be held as well
as this one by chance; its ``−log10`` is the line's *significance*, which must reach
:attr:`~.params.AlignParams.min_significance`. The threshold thus grows with the recording's
and the reference's length, the windows' span and the speeds tried, whichever look found the
line: the wide lock and the waveform search only choose among the same lines.

In a room whose direct sound is no louder than its reflections, the windows on the line come
apart (:func:`~.fine.assess`): those that agree with it precisely, within ``ε`` =
:data:`~.linefit.PRECISE`, count with ``p = ε / R``, among lines told apart at ``ε``; the
reflections the other windows land on, each on its lag to within ``ε`` as well, are chance's
with ``R / ε`` lags times ``P[Binomial(m, ε / R) ≥ c]`` for ``c`` of the ``m`` windows off the
line. Judged at either tolerance, the better counts as two tests.

An edit's answer is judged whole (:func:`answer_significance`): each piece's line is held only
by the windows on its own dance interval, the chances of all pieces multiply, and the search
could have found a line for each piece and put the seams between any of the windows.

Windows overlap (a two-second window every second, four seconds for a pitch-kept line), so
their chances are not independent: the significance is a scale calibrated against the test
kit's true pairs and mismatches (``bench/accuracy.py``), not an exact probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..media.decode import Audio
from ..piece import Piece
from .answer import Candidate
from .fine import Fit
from .linefit import PRECISE
from .params import AlignParams
from .windows import window_kind

__all__ = [
    "Trials",
    "accepted",
    "answer_significance",
    "confidence",
    "ranked",
    "refusal",
    "shares",
    "significance",
]

# How far a fitted line's slope may move from the speed it was searched at (relative, either
# way): the consensus of :func:`~.linefit.fit_line` takes pairs of windows within 1 %.
_SLOPE_REACH = 0.01


@dataclass(frozen=True, slots=True)
class Trials:
    """What the search tried: the recordings' lengths (s) and the (speed, kind) pairs searched."""

    dance_s: float
    bgm_s: float
    speeds: int = 1


def accepted(fit: Fit | None, p: AlignParams, trials: Trials) -> bool:
    """Whether ``fit`` is an answer: enough agreeing windows, evidence enough, and more than
    chance gives in a search of ``trials``' breadth."""
    return (
        fit is not None
        and fit.hits >= p.min_windows
        and confidence(fit) >= p.min_confidence
        and significance(fit, trials) >= p.min_significance
    )


def significance(fit: Fit, trials: Trials) -> float:
    """``−log10`` of the number of lines a search of ``trials``' breadth would find held by
    as many windows as ``fit`` is by chance (see the module's docstring): 0 is one such line
    expected, 6 one in a million searches.

    Windows that agree only precisely (:attr:`~.fine.Fit.precise`) are each that much less
    likely by chance, and the lines a search could find them on that much more numerous; the
    line is judged both ways, the better counting as two tests."""
    # The widest tolerance a window agrees within, and the reach of the first pass, which
    # located the line.
    kind = window_kind(fit.mapping.pitch_kept)
    tolerance, reach = kind.agree[1], kind.passes[0][1]
    times = fit.track.times
    span = float(np.ptp(times)) if len(times) > 1 else 0.0
    within = fit.hits - fit.exact
    echoes = _log10_echoes(fit, reach)
    usual = -(
        _log10_lines(trials, fit.mapping.scale, span, tolerance)
        + _log10_tail(fit.windows, within, tolerance / reach)
        + echoes
    )
    if fit.exact == 0:
        return usual
    precise = -(
        _log10_lines(trials, fit.mapping.scale, span, PRECISE)
        + _log10_tail(fit.windows, within, tolerance / reach)
        + _log10_tail(fit.windows - within, fit.exact, PRECISE / reach)
        + echoes
    )
    return max(usual, precise - math.log10(2.0))


def _log10_echoes(fit: Fit, reach: float) -> float:
    """``log10`` of the chance of the reflections ``fit``'s stray windows landed on
    (:attr:`~.fine.Fit.echoes`): by chance a stray window lands on a given lag, precisely, with
    probability ``PRECISE / reach``, and there are ``reach / PRECISE`` lags to choose from;
    only reflections that chance would not give count."""
    total, stray = 0.0, fit.stray
    for size in fit.echoes:
        total += min(0.0, math.log10(reach / PRECISE) + _log10_tail(stray, size, PRECISE / reach))
        stray -= size
    return total


def _log10_lines(trials: Trials, scale: float, span: float, tolerance: float) -> float:
    """``log10`` of the lines a search of ``trials``' breadth tells apart at ``tolerance``
    (s), over windows spanning ``span`` seconds at speed ``scale``."""
    offsets = (trials.dance_s + trials.bgm_s) / (2.0 * tolerance)
    slopes = 1.0 + 2.0 * _SLOPE_REACH * scale * span / (2.0 * tolerance)
    return math.log10(max(offsets, 1.0) * slopes * max(trials.speeds, 1))


def answer_significance(pieces: Sequence[Piece], fits: Sequence[Fit], trials: Trials) -> float:
    """:func:`significance` of a whole answer: an edit's ``pieces`` (dance-time order), each
    held by the windows of its ``fits`` (one per piece) on its own interval.

    The pieces share one scale, so the slopes a search could find count once and the offsets
    once per piece; the seams could fall between any two windows. One piece is :func:`significance`
    of its fit.
    """
    if len(pieces) == 1:
        return significance(fits[0], trials)
    kind = window_kind(fits[0].mapping.pitch_kept)
    tolerance, reach = kind.agree[1], kind.passes[0][1]
    tail, exact, count, first, last = 0.0, 0.0, 0, math.inf, -math.inf
    for piece, fit in zip(pieces, fits, strict=True):
        times = fit.track.times
        inside = (times >= piece.start) & (times < piece.end)
        n = int(inside.sum())
        precise = inside & (fit.precise if fit.precise is not None else False)
        within = int((fit.track.inlier & inside & ~precise).sum())
        tail += _log10_tail(n, within, tolerance / reach)
        exact += _log10_tail(n - within, int(precise.sum()), PRECISE / reach)
        count += n
        if n:
            first, last = min(first, float(times[inside][0])), max(last, float(times[inside][-1]))
    span = last - first if count > 1 else 0.0
    scale = fits[0].mapping.scale
    seams = len(pieces) - 1
    where = (
        math.lgamma(count + 1) - math.lgamma(seams + 1) - math.lgamma(count - seams + 1)
        if count > seams
        else 0.0
    ) / math.log(10.0)

    def judged(at: float, extra: float) -> float:
        # The offsets once per piece, the slopes (and speeds) once: one scale for all.
        offsets = math.log10(max((trials.dance_s + trials.bgm_s) / (2.0 * at), 1.0))
        lines = _log10_lines(trials, scale, span, at) + seams * offsets
        return -(lines + where + tail + extra)

    usual = judged(tolerance, 0.0)
    if exact == 0.0:
        return usual
    return max(usual, judged(PRECISE, exact) - math.log10(2.0))


def _log10_tail(n: int, k: int, p: float) -> float:
    """``log10 P[Binomial(n, p) ≥ k]``, in logs so that tails far below 1e-300 keep their size."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    terms = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
        + j * math.log(p) + (n - j) * math.log1p(-p)
        for j in range(k, n + 1)
    ]  # fmt: skip
    top = max(terms)
    return (top + math.log(sum(math.exp(t - top) for t in terms))) / math.log(10.0)


def confidence(fit: Fit) -> float:
    """Evidence (agreeing windows weighted by peak prominence) to [0, 1]: about 4 clear windows
    give 0.63, 8 give 0.9. One window's worth is discounted for what chance can bring."""
    return float(1.0 - np.exp(-max(fit.evidence - 1.0, 0.0) / 3.0))


def shares(scores: list[float]) -> list[float]:
    """Each answer's share of the support (by squared score): 1 for an answer alone, ½ each for
    two that match equally well (a section the song repeats exactly)."""
    squares = np.square(np.asarray(scores, dtype=np.float64))
    total = float(squares.sum())
    return [float(v / total) if total > 0 else 0.0 for v in squares]


def ranked(fits: list[Fit]) -> tuple[float, tuple[Candidate, ...]]:
    """The first of ``fits`` (best first)'s confidence, divided with the runner-ups that match
    about as well, and the runner-ups as candidates, each with its own share."""
    split = shares([f.score for f in fits])
    candidates = tuple(
        Candidate(f.mapping, round(confidence(f) * share, 4), f.hits / max(f.windows, 1))
        for f, share in zip(fits[1:], split[1:], strict=True)
    )
    return confidence(fits[0]) * split[0], candidates


def refusal(best: Fit | None, dance: Audio, bgm: Audio, p: AlignParams, trials: Trials) -> str:
    """Why no answer was accepted, in words, for :class:`~beatsync.engine.MusicMismatchError`."""
    shortest = min(dance.duration, bgm.duration)
    if shortest < 2 * p.window + p.hop * (p.min_windows - 1):
        return f"the recordings are too short to compare ({shortest:.1f} s)"
    if best is None:
        return "the recordings do not share the music (no stretch of one matches the other)"
    if best.hits == 0:
        return (
            "the recordings do not share the music (no stretch of one matches the other; "
            f"significance {significance(best, trials):.1f})"
        )
    return (
        "the recordings do not share the music "
        f"({best.hits} of {best.windows} windows agree with the best candidate, too few "
        f"or too faint to be sure; significance {significance(best, trials):.1f})"
    )
