"""The answer of an alignment: the mapping, its pieces and candidates, and the curves the plot
draws from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from ..piece import Piece, bgm_times
from .features import FEATURE_RATE, onset_envelope
from .fine import WindowTrack
from .span import MusicSpan

__all__ = ["Alignment", "Candidate", "envelopes"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One answer: a mapping, how sure we are of it, and the share of windows that agree."""

    mapping: Mapping
    confidence: float
    support: float


@dataclass(frozen=True, slots=True)
class Alignment:
    """The answer of :func:`align_signals`.

    ``music`` is the dance-time span where the reference's music plays in the live recording
    (with its edges' evidence); ``activity`` is a (times, score) curve of how well each moment
    matches, score in [0, 1]; ``envelopes`` is (times, dance envelope, reference envelope mapped
    onto dance time), three arrays of one length, envelopes normalised to [0, 1], for the plot.

    ``pieces`` are the stretches of an edit in dance-time order, each with its own mapping (one
    piece, over ``music``, for a recording of the song as it is); ``mapping``
    is the main piece's, the one with the most evidence, and ``windows`` are each piece's
    windows on its own interval.

    ``significance``: how far the main line stands out of what chance gives in a search as
    broad as the one run, ``−log10`` of the number of lines expected to be held as well by
    chance (:func:`~.acceptance.significance`); NaN when not measured.
    """

    mapping: Mapping
    confidence: float
    candidates: tuple[Candidate, ...]
    windows: WindowTrack
    music: MusicSpan
    activity: tuple[NDArray[np.float64], NDArray[np.float64]] = field(repr=False)
    envelopes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] = field(
        repr=False
    )
    pieces: tuple[Piece, ...] = ()
    significance: float = math.nan

    @property
    def parts(self) -> tuple[Piece, ...]:
        """``pieces``, or the one piece ``mapping`` makes over ``music`` when none are set."""
        return self.pieces or (Piece(self.music.start, self.music.end, self.mapping),)


def envelopes(
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    dance_start: float,
    bgm_start: float,
    pieces: tuple[Piece, ...],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The plot's curves: dance times (s), the dance recording's onset envelope, and the
    reference's mapped onto dance time by ``pieces``, both normalised to [0, 1]."""
    dance_env = onset_envelope(dance_bands)
    bgm_env = onset_envelope(bgm_bands)
    times = dance_start + np.arange(len(dance_env)) / FEATURE_RATE
    where = (bgm_times(pieces, times) - bgm_start) * FEATURE_RATE
    mapped = np.interp(where, np.arange(len(bgm_env)), bgm_env, left=0.0, right=0.0)
    return times, dance_env, mapped
