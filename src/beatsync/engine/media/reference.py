"""The reference decoded for the alignment, its own samples kept for the render on the way.

Both runs decode the reference once at the analysis rate; when a child process can do it, the
same pass keeps the stream's own samples in shared memory (:class:`~.audiosource.DecodedStream`),
and the render lays the clean track from those very numbers instead of decoding the file again.
"""

from __future__ import annotations

import av.error
from av.stream import Discard

from .audiosource import DecodedStream
from .decode import Audio, decode_audio, decoded_frames
from .forked import can_fork
from .probe import MediaInfo, open_media

__all__ = ["decode_reference", "keep_reference", "reference_memory"]


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


def keep_reference(path: str, decoded: DecodedStream) -> tuple[int, int] | None:
    """Only the reference's own samples, kept in ``decoded``: the frames of
    :func:`decode_reference`'s pass without its analysis-rate copy, for a run that aligns
    nothing. One pass from the first packet, as that one: a decoder started by a seek gives
    slightly other numbers (noise substitution draws from a generator that runs on from the
    stream's start), and the track must be made from the very same ones. Ends the filling
    (:meth:`~.audiosource.DecodedStream.end_filling`) when the memory is read meanwhile."""
    try:
        with open_media(path) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            for other in container.streams:
                if other.index != stream.index:
                    other.discard = Discard.all
            try:
                for frame in decoded_frames(container, stream):
                    decoded.collect(frame)
            except av.error.FFmpegError:
                pass  # a damaged tail: what decoded is kept, as decode_reference keeps it
    finally:
        decoded.end_filling()
    return decoded.collected
