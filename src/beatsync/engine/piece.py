"""A piece of an edit: one stretch of the dance recording played from one place in the reference.

A class often dances to an edit of the song: a section cut out (a jump forward), a chorus played
again (a jump back). Each piece has its own line ``bgm_time = a_k + b × dance_time`` on its own
dance interval; consecutive pieces meet at a seam. A recording of the song as it is has one
piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .mapping import Mapping

__all__ = ["Piece", "bgm_times", "piece_at"]


@dataclass(frozen=True, slots=True)
class Piece:
    """``mapping`` holds on dance times ``start``–``end`` (seconds on the dance file's timeline).

    Consecutive pieces share an edge: the seam, where the sound switches from one place of the
    reference to another (the centre of a crossfade, when the edit has one). The first piece
    starts and the last one ends where the music is heard.
    """

    start: float
    end: float
    mapping: Mapping

    @property
    def duration(self) -> float:
        """The piece's length in dance seconds."""
        return self.end - self.start

    def nudged(self, milliseconds: float) -> Piece:
        """The same piece with the reference played ``milliseconds`` later against the picture."""
        return Piece(self.start, self.end, self.mapping.nudged(milliseconds))


def piece_at(pieces: tuple[Piece, ...], dance_time: float) -> Piece:
    """The piece whose interval holds ``dance_time`` (s): before the first piece, the first;
    after the last, the last. ``pieces`` are in dance-time order and not empty."""
    for piece in pieces[:-1]:
        if dance_time < piece.end:
            return piece
    return pieces[-1]


def bgm_times(pieces: tuple[Piece, ...], dance_times: NDArray[np.float64]) -> NDArray[np.float64]:
    """The reference time (s) each dance time (s) hears under the piece that holds it (see
    :func:`piece_at`)."""
    out = pieces[-1].mapping.bgm_time_array(dance_times)
    for piece in reversed(pieces[:-1]):
        out = np.where(dance_times < piece.end, piece.mapping.bgm_time_array(dance_times), out)
    return out
