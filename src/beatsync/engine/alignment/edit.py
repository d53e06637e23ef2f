"""An edit's alignment from its pieces: seams fixed, the music span across the pieces, and
each piece's activity curve and windows on its own interval."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..piece import Piece
from .fine import Fit, WindowTrack
from .pieces import Stretch, join_stretches
from .presence import music_span
from .signals import Signals
from .span import EdgeEvidence, MusicSpan

__all__ = ["Edit", "assemble", "finish"]


@dataclass(frozen=True, slots=True)
class Edit:
    """The pieces of an edit and what the alignment reports of them: each piece's fit, the
    music span across all pieces, the activity curve (each piece's on its interval) and the
    windows (each piece's on its interval)."""

    pieces: tuple[Piece, ...]
    fits: tuple[Fit, ...]
    music: MusicSpan
    activity: tuple[NDArray[np.float64], NDArray[np.float64]]
    windows: WindowTrack


def assemble(
    signals: Signals,
    stretches: Sequence[Stretch],
    *,
    window: float,
    hop: float,
    pool: Executor | None = None,
) -> Edit:
    """Pieces, seams, music span, activity and windows from the stretches of several lines."""
    dance = signals.dance
    provisional, fits = join_stretches(
        signals, stretches, (dance.start, dance.end), window=window, hop=hop
    )
    first = next(s for s in stretches if s.fit is fits[0])
    last = [s for s in stretches if s.fit is fits[-1]][-1]
    return finish(
        signals, provisional, fits, (first.lo - window / 2, last.hi + window / 2), pool=pool
    )


def finish(
    signals: Signals,
    pieces: Sequence[Piece],
    fits: Sequence[Fit],
    fallback: tuple[float, float],
    *,
    pool: Executor | None = None,
) -> Edit:
    """The edit of ``pieces`` (seams fixed) with each piece's ``fits``: the first piece starts
    where its music starts and the last ends where its music ends (``fallback``, dance s, when
    its music span lies elsewhere), the activity and windows are each piece's on its interval.
    """
    curves = []
    spans = []
    times = np.zeros(0)
    for piece, fit in zip(pieces, fits, strict=True):
        own = (fit.track.times >= piece.start) & (fit.track.times <= piece.end)
        kept = dataclasses.replace(
            fit, track=dataclasses.replace(fit.track, inlier=fit.track.inlier & own)
        )
        times, score, span = music_span(signals, piece.mapping, kept, pool=pool)
        curves.append(score)
        spans.append(span)
    # The music starts where the first piece's starts and ends where the last piece's ends,
    # each edge with its own evidence.
    first, last = spans[0], spans[-1]
    lo, lo_evidence = (
        (first.start, first.start_evidence)
        if first.start < pieces[0].end
        else (fallback[0], EdgeEvidence())
    )
    hi, hi_evidence = (
        (last.end, last.end_evidence)
        if last.end > pieces[-1].start
        else (fallback[1], EdgeEvidence())
    )
    edges = [min(lo, pieces[0].end), *(p.start for p in pieces[1:]), max(hi, pieces[-1].start)]
    joined = tuple(Piece(edges[k], edges[k + 1], piece.mapping) for k, piece in enumerate(pieces))
    # All pieces share the scale, so their frame grids are the same.
    n = min(len(c) for c in curves)
    times = times[:n]
    score = curves[-1][:n]
    for piece, curve in zip(reversed(joined[:-1]), reversed(curves[:-1]), strict=True):
        score = np.where(times < piece.end, curve[:n], score)
    music = MusicSpan(joined[0].start, joined[-1].end, lo_evidence, hi_evidence)
    return Edit(joined, tuple(fits), music, (times, score), _windows(joined, fits))


def _windows(pieces: Sequence[Piece], fits: Sequence[Fit]) -> WindowTrack:
    """Each piece's windows on its own interval, in time order."""
    parts = []
    for k, (piece, fit) in enumerate(zip(pieces, fits, strict=True)):
        t = fit.track.times
        lo = -np.inf if k == 0 else piece.start
        hi = np.inf if k == len(pieces) - 1 else piece.end
        parts.append((t >= lo) & (t < hi))
    times = np.concatenate([f.track.times[m] for f, m in zip(fits, parts, strict=True)])
    order = np.argsort(times, kind="stable")

    def joined(name: str) -> NDArray[np.generic]:
        return np.concatenate(
            [getattr(f.track, name)[m] for f, m in zip(fits, parts, strict=True)]
        )[order]

    return WindowTrack(
        times=times[order],
        lags=joined("lags").astype(np.float64),
        strength=joined("strength").astype(np.float64),
        inlier=joined("inlier").astype(np.bool_),
    )
