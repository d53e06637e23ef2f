"""The BeatSync engine: probe, decode, align, trim and render; ``sync()`` runs them all.

NumPy, SciPy and PyAV only: the engine never imports the service layer, and reads no environment.
"""

from .align import (
    Alignment,
    AlignParams,
    Candidate,
    Mapping,
    WindowTrack,
    align_files,
    align_signals,
)
from .decode import Audio, decode_audio
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
from .pipeline import STAGES, ProgressCallback, StageTiming, SyncOptions, SyncResult, sync
from .probe import AudioInfo, MediaInfo, VideoInfo, probe
from .render import RenderedOutput, RenderParams, render
from .trim import Cut, find_cut

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
    "InputError",
    "InvalidFormatError",
    "Mapping",
    "MediaInfo",
    "MediaNotFoundError",
    "MusicMismatchError",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "OptionsError",
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
    "decode_audio",
    "find_cut",
    "probe",
    "render",
    "sync",
]
