"""The BeatSync engine: probe, decode, align, trim and render; ``sync()`` runs them all.

NumPy, SciPy and PyAV only: the engine never imports the service layer, and reads no environment.
The alignment's names load on first use: SciPy takes a good part of a second to import, and a
command that fails on its input should not wait for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .alignment.span import EdgeEvidence, MusicSpan
from .cut.trim import Cut, find_cut
from .errors import (
    AlignmentError,
    BeatSyncError,
    DurationTooLongError,
    InputError,
    InvalidFormatError,
    MediaNotFoundError,
    MusicMismatchError,
    NoAudioTrackError,
    NoVideoTrackError,
    OptionsError,
    ProcessingError,
)
from .mapping import Mapping
from .media.decode import Audio, decode_audio
from .media.probe import AudioInfo, MediaInfo, VideoInfo, probe
from .output.render import RenderedOutput, RenderParams, render
from .piece import Piece
from .pipeline import STAGES, ProgressCallback, SyncOptions, sync
from .result import StageTiming, SyncResult

if TYPE_CHECKING:
    from .alignment.align import (
        Alignment,
        AlignParams,
        Candidate,
        WindowTrack,
        align_files,
        align_signals,
        assess_mapping,
    )

_LAZY = {
    "AlignParams",
    "Alignment",
    "Candidate",
    "WindowTrack",
    "align_files",
    "align_signals",
    "assess_mapping",
}

__all__ = [
    "STAGES",
    "AlignParams",
    "Alignment",
    "AlignmentError",
    "Audio",
    "AudioInfo",
    "BeatSyncError",
    "Candidate",
    "Cut",
    "DurationTooLongError",
    "EdgeEvidence",
    "InputError",
    "InvalidFormatError",
    "Mapping",
    "MediaInfo",
    "MediaNotFoundError",
    "MusicMismatchError",
    "MusicSpan",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "OptionsError",
    "Piece",
    "ProcessingError",
    "ProgressCallback",
    "RenderParams",
    "RenderedOutput",
    "StageTiming",
    "SyncOptions",
    "SyncResult",
    "VideoInfo",
    "WindowTrack",
    "align_files",
    "align_signals",
    "assess_mapping",
    "decode_audio",
    "find_cut",
    "probe",
    "render",
    "sync",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".alignment.align", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
