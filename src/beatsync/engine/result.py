"""What a run learned and wrote: the typed result of :func:`~.pipeline.sync`.

A module of its own so that the report, the plot and the poster, which read a result, never
import the pipeline that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cut.trim import Cut
from .mapping import Mapping
from .media.probe import MediaInfo
from .output.render import RenderedOutput
from .piece import Piece

if TYPE_CHECKING:
    from .alignment.align import Alignment

__all__ = ["StageTiming", "SyncResult"]


@dataclass(frozen=True, slots=True)
class StageTiming:
    stage: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SyncResult:
    """Everything one run learned and wrote.

    ``mapping`` is the main piece's (nudged as rendered); ``pieces`` are all of them, in
    dance-time order (one for a recording of the song as it is).
    """

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
    pieces: tuple[Piece, ...] = ()

    @property
    def parts(self) -> tuple[Piece, ...]:
        """``pieces``, or the one piece ``mapping`` makes over the music when none are set."""
        music = self.alignment.music
        return self.pieces or (Piece(music.start, music.end, self.mapping),)
