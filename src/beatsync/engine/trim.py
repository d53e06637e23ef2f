"""Choose the span of the dance video to keep."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cut"]


@dataclass(frozen=True, slots=True)
class Cut:
    """The kept span in dance-file seconds and why each edge is where it is.

    Reasons: ``music`` (the music starts or stops), ``reference`` (the reference ends there),
    ``black`` or ``frozen`` (picture), ``video`` (the file's own edge), ``user`` (given).
    """

    start: float
    end: float
    start_reason: str
    end_reason: str

    @property
    def duration(self) -> float:
        return self.end - self.start
