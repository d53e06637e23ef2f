"""The span of a recording where the music plays, and how sure each of its edges is."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EdgeEvidence", "MusicSpan"]


@dataclass(frozen=True, slots=True)
class EdgeEvidence:
    """How sure one edge of the music is.

    ``certainty``: probability in [0, 1] that the music does not reach more than
    :data:`EDGE_SLACK_S` beyond the edge, from how loud the reference is beyond it and how
    little of it the room hears there (1 for an edge that is a fact: the file's, the
    reference's, the picture's or a person's). ``unheard``: seconds just inside the edge that
    were kept although the room could not tell whether the music played there (the reference
    too quiet for the room's noise: a quiet intro or outro); 0 when the room heard the music
    right from the edge.
    """

    certainty: float = 1.0
    unheard: float = 0.0


EDGE_SLACK_S = 0.3
"""Seconds of music beyond an edge that :attr:`EdgeEvidence.certainty` tolerates."""

CERTAIN = 0.9
"""An edge at least this certain is the music's own; below it, the edge is a guess that kept
the doubtful part."""


@dataclass(frozen=True, slots=True)
class MusicSpan:
    """Where the music plays in a recording, in its seconds, with the evidence at either edge.

    The span keeps the music whenever the room cannot tell: its edges lie where the reference is
    loud and the room does not hear it, or at the recording's (or the reference's) own ends.
    """

    start: float
    end: float
    start_evidence: EdgeEvidence = field(default_factory=EdgeEvidence)
    end_evidence: EdgeEvidence = field(default_factory=EdgeEvidence)

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.end - self.start
