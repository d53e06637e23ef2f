"""The engine's errors: one root, every class with a stable string ``code``.

::

    BeatSyncError                 PROCESSING_FAILED
    ├── InputError                (unusable input; CLI exit 3)
    │   ├── MediaNotFoundError    FILE_NOT_FOUND
    │   ├── InvalidFormatError    INVALID_FORMAT
    │   ├── NoAudioTrackError     NO_AUDIO_TRACK
    │   ├── NoVideoTrackError     NO_VIDEO_TRACK
    │   └── DurationTooLongError  DURATION_TOO_LONG
    ├── OptionsError              VALIDATION_ERROR (CLI exit 2)
    │   └── ManifestError         INVALID_MANIFEST
    ├── AlignmentError            (no confident answer; CLI exit 4)
    │   └── MusicMismatchError    MUSIC_MISMATCH
    └── ProcessingError           PROCESSING_FAILED (CLI exit 5)

Third-party errors (PyAV, NumPy) are wrapped where they enter the engine, with ``raise ... from``.
"""

from __future__ import annotations

__all__ = [
    "AlignmentError",
    "BeatSyncError",
    "DurationTooLongError",
    "InputError",
    "InvalidFormatError",
    "ManifestError",
    "MediaNotFoundError",
    "MusicMismatchError",
    "NoAudioTrackError",
    "NoVideoTrackError",
    "OptionsError",
    "ProcessingError",
]


class BeatSyncError(Exception):
    """Root of every error the engine raises on purpose."""

    code: str = "PROCESSING_FAILED"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.message} ({self.path})" if self.path else self.message


class InputError(BeatSyncError):
    """An input file that cannot be used as given."""

    code = "INVALID_FORMAT"


class MediaNotFoundError(InputError):
    code = "FILE_NOT_FOUND"


class InvalidFormatError(InputError):
    code = "INVALID_FORMAT"


class NoAudioTrackError(InputError):
    code = "NO_AUDIO_TRACK"


class NoVideoTrackError(InputError):
    code = "NO_VIDEO_TRACK"


class DurationTooLongError(InputError):
    code = "DURATION_TOO_LONG"


class OptionsError(BeatSyncError):
    """Options that contradict each other or the media (a cut outside the video, say)."""

    code = "VALIDATION_ERROR"


class ManifestError(OptionsError):
    """A video manifest (an audio-first job's picture tables) that is malformed or contradicts
    itself or the audio sent with it."""

    code = "INVALID_MANIFEST"


class AlignmentError(BeatSyncError):
    """No confident alignment between the two recordings."""

    code = "MUSIC_MISMATCH"


class MusicMismatchError(AlignmentError):
    code = "MUSIC_MISMATCH"


class ProcessingError(BeatSyncError):
    """A failure inside the engine after the inputs were accepted."""

    code = "PROCESSING_FAILED"
