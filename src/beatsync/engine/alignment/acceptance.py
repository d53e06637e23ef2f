"""Whether a locked line is the answer, and how sure it is.

A line is accepted when enough windows agree with it and their evidence gives a confidence
above the threshold (:func:`accepted`); a line found by a second look (the wide lock, the
waveform search) must also be held by a share of the windows that chance does not give
(:func:`plausible`). Answers that match about equally well divide the confidence between them
(:func:`shares`).
"""

from __future__ import annotations

import numpy as np

from ..media.decode import Audio
from .answer import Candidate
from .fine import Fit
from .params import AlignParams

__all__ = ["accepted", "confidence", "plausible", "ranked", "refusal", "shares"]

# Share of the windows a line found by a second look must hold (:func:`plausible`).
_SECOND_LOOK_SHARE = 0.2


def accepted(fit: Fit | None, p: AlignParams) -> bool:
    """Whether ``fit`` is an answer: enough agreeing windows, and evidence enough."""
    return fit is not None and fit.hits >= p.min_windows and confidence(fit) >= p.min_confidence


def plausible(fit: Fit) -> bool:
    """Whether a line found by a second look (the wide lock, the waveform search) is held by a
    share of the windows that chance does not give. Those searches try many lags or lines, so
    in a long recording of another song a few windows agree with one of them by chance (8 of
    448 in a 10-minute pair); a true line in a hard room holds most of them (two thirds and
    more in the hardest rooms of the test kit)."""
    return fit.hits >= _SECOND_LOOK_SHARE * fit.windows


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


def refusal(best: Fit | None, dance: Audio, bgm: Audio, p: AlignParams) -> str:
    """Why no answer was accepted, in words, for :class:`~beatsync.engine.MusicMismatchError`."""
    shortest = min(dance.duration, bgm.duration)
    if shortest < 2 * p.window + p.hop * (p.min_windows - 1):
        return f"the recordings are too short to compare ({shortest:.1f} s)"
    if best is None or best.hits == 0:
        return "the recordings do not share the music (no stretch of one matches the other)"
    return (
        "the recordings do not share the music "
        f"({best.hits} of {best.windows} windows agree with the best candidate, too few "
        "or too faint to be sure)"
    )
