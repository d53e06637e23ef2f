"""The reference decoded for the alignment, its own samples kept for the render on the way.

Both runs decode the reference once at the analysis rate; when a child process can do it, the
same pass keeps the stream's own samples in shared memory (:class:`~.audiosource.DecodedStream`),
and the render lays the clean track from those very numbers instead of decoding the file again.
"""

from __future__ import annotations

from .audiosource import DecodedStream
from .decode import Audio, decode_audio
from .forked import can_fork
from .probe import MediaInfo

__all__ = ["decode_reference", "reference_memory"]


def reference_memory(info: MediaInfo) -> DecodedStream | None:
    """Shared memory for the reference's own samples, when a child will decode it and the
    stream is short enough to hold."""
    if info.audio is None or not can_fork():
        return None
    return DecodedStream.for_stream(info.path, info.audio, info.duration)


def decode_reference(
    path: str, decoded: DecodedStream | None
) -> tuple[Audio, tuple[int, int] | None]:
    """The reference at the analysis rate, and the span of its own samples kept in ``decoded``."""
    if decoded is None:
        return decode_audio(path), None
    return decode_audio(path, on_frame=decoded.collect), decoded.collected
