"""``sync()``: probe → decode → align → trim → render → done, with progress and a typed result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .align import Alignment, Mapping
from .probe import MediaInfo
from .render import RenderedOutput, RenderParams
from .trim import Cut

__all__ = ["STAGES", "ProgressCallback", "StageTiming", "SyncOptions", "SyncResult"]

STAGES = ("probe", "decode", "align", "trim", "render", "done")

ProgressCallback = Callable[[str, float, str], None]
"""``(stage, fraction, message)``; ``fraction`` is overall progress in [0, 1], never decreasing."""


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What the caller may decide.

    ``offset``: a reference time (s) at dance time 0 given by a person; the search stays near it.
    ``mapping``: use this mapping as it is (another candidate), no search.
    ``nudge_ms``: play the reference this much later (positive) or earlier against the picture.
    ``start``/``end``: cut edges in dance seconds; ``trim=False`` keeps the whole video.
    """

    offset: float | None = None
    mapping: Mapping | None = None
    nudge_ms: float = 0.0
    start: float | None = None
    end: float | None = None
    trim: bool = True
    render: RenderParams = field(default_factory=RenderParams)


@dataclass(frozen=True, slots=True)
class StageTiming:
    stage: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Everything one run learned and wrote."""

    dance: MediaInfo
    bgm: MediaInfo
    alignment: Alignment
    mapping: Mapping
    cut: Cut
    output: RenderedOutput
    timings: tuple[StageTiming, ...]
    report_path: Path | None = None
    plot_path: Path | None = None
    poster_path: Path | None = None
