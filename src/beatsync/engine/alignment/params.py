"""The alignment's knobs, shared by the search (:mod:`.align`), the acceptance of its answer
(:mod:`.acceptance`) and the assessment of a chosen mapping (:mod:`.assess`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AlignParams"]


@dataclass(frozen=True, slots=True)
class AlignParams:
    """Knobs of the alignment; the defaults are the tested ones.

    ``speeds``: resampled speed ratios tried when the recording is not at the reference's speed
    (1.0 is always tried first); ``None`` (the default) tries the few speeds of either kind that
    the recordings' rhythm and pitch suggest, ``max_guesses`` of them at most. ``window`` and
    ``hop``: length and spacing of the measuring windows, seconds; ``max_windows`` caps their
    number (spreading them further apart). ``offset_hint``: a reference time (s) at dance time
    0 given by a person; only lines within ``hint_radius`` seconds of it are considered.
    ``min_windows``: agreeing windows needed to accept an answer. ``min_confidence``: refuse
    when the answer's own evidence is below this (the confidence
    reported also divides it with equally good runner-ups, and may be lower).
    ``min_significance``: refuse when chance would give a line held as well as the answer more
    often than once in 10 to this power searches (:func:`~.acceptance.significance`).
    ``candidates``: how many coarse lines are locked and compared.
    """

    speeds: tuple[float, ...] | None = None
    max_guesses: int = 4
    window: float = 2.0
    hop: float = 1.0
    max_windows: int = 600
    offset_hint: float | None = None
    hint_radius: float = 1.0
    min_windows: int = 5
    min_confidence: float = 0.5
    min_significance: float = 0.0
    candidates: int = 3
