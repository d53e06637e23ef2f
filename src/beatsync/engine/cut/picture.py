"""Find black or frozen picture at the edges of a span (phone in a pocket, lens covered).

Only keyframes are decoded while scanning, so a check costs a few frames, not the whole video;
the exact frame where the picture turns bad is then found by decoding one group of pictures.
Thresholds follow FFmpeg's blackdetect and freezedetect: a picture is black when 98 % of it is
dark, and frozen when 98 % of it is unchanged.

The decisions read 96×54 grey thumbnails through a :class:`FrameSource`: :class:`FileFrames`
decodes them from the video file; an audio-first job's source holds thumbnails its client decoded
(:mod:`.audiofirst`). Both answer the same two questions, so both reach the same cut.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from fractions import Fraction
from typing import Protocol

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from ..media.probe import MediaInfo, open_media

__all__ = [
    "SCAN_SECONDS",
    "TAIL_SECONDS",
    "THUMB_SIZE",
    "FileFrames",
    "FrameSource",
    "Thumb",
    "good_picture_span",
]

THUMB_SIZE = (96, 54)
_THUMB = THUMB_SIZE
_DARK_LUMA = 32
_CHANGE_LUMA = 3
_RATIO = 0.98
SCAN_SECONDS = 120.0
_CHUNK_SECONDS = 6.0
_MIN_FROZEN_SECONDS = 0.5
TAIL_SECONDS = 0.5
"""How far before a span's end its last two frames are looked for."""
# Frame threads pay off on long runs only: on a group of pictures they cost more than they gain.
_THREADED_SECONDS = 5.0


Thumb = NDArray[np.int16]
"""A 54×96 grey picture (luma 0–255; int16 so differences do not wrap)."""


class FrameSource(Protocol):
    """Thumbnails of a video's frames, by presentation time (seconds on the file's timeline).

    Both methods start from the keyframe a backward seek to ``start`` lands on (the last one
    decoded at or before it) and yield ``(time, thumbnail)`` in presentation order up to the
    first frame shown after ``end``, which is not yielded.
    """

    def hint(self, start: float, end: float) -> None:
        """The edges of ``[start, end]`` are about to be checked (a source that fetches its
        pictures may get the first ones it will need in advance)."""
        ...

    def keyframes(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        """The keyframes only."""
        ...

    def frames(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        """Every frame shown."""
        ...

    def last_two(self, start: float, end: float) -> list[tuple[float, Thumb]]:
        """The last two frames :meth:`frames` yields before ``end`` (fewer when there are
        fewer), in presentation order: only they need a thumbnail."""
        ...


class FileFrames:
    """A :class:`FrameSource` decoding the first video stream of a file."""

    def __init__(self, info: MediaInfo) -> None:
        self.info = info

    def hint(self, start: float, end: float) -> None:
        """Nothing to get ahead: the file is here."""

    def keyframes(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        return _thumbnails(self.info, start, end, keyframes_only=True)

    def frames(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        return _thumbnails(self.info, start, end, keyframes_only=False)

    def last_two(self, start: float, end: float) -> list[tuple[float, Thumb]]:
        last: list[tuple[float, av.VideoFrame]] = []
        for t, frame in _frames(self.info, start, end, keyframes_only=False):
            if t < end:
                last = [*last[-1:], (t, frame)]
        return [(t, _thumb(frame)) for t, frame in last]


def good_picture_span(
    info: MediaInfo, start: float, end: float, *, source: FrameSource | None = None
) -> tuple[float, float]:
    """Shrink ``[start, end]`` (seconds) past black or frozen picture at either edge.

    Returns the time of the first good frame and the time where the picture turns bad for good
    (or ``end``); ``(start, end)`` when the edges are good or the video cannot be scanned.
    ``source`` gives the thumbnails (default: decoded from ``info``'s file).
    """
    if info.video is None or end <= start:
        return start, end
    frames = source if source is not None else FileFrames(info)
    try:
        frames.hint(start, end)
        new_start = _first_good(frames, start, end)
        new_end = _last_good(frames, new_start, end)
    except av.error.FFmpegError:
        return start, end
    if new_end - new_start < 1.0:
        return start, end
    return new_start, new_end


def _first_good(source: FrameSource, start: float, end: float) -> float:
    """The first frame at or after ``start`` that is neither black nor equal to the next one.

    When the keyframe at or before ``start`` already looks good, the start is kept: only a bad
    first keyframe calls for decoding every frame.
    """
    keys = source.keyframes(start, min(end, start + SCAN_SECONDS))
    previous: tuple[float, Thumb] | None = None
    stop: float | None = None
    for t, thumb in keys:
        if previous is not None and not _bad(previous[1], thumb):
            stop = previous[0]
            break
        previous = (t, thumb)
    if isinstance(keys, Generator):
        keys.close()
    if stop is None:
        return start
    if stop <= start:
        return start
    frames = _sorted(source.frames(start, min(end, stop + 0.5)))
    black = False
    for (t, thumb), nxt in zip(frames, [*frames[1:], None], strict=True):
        if t >= start and not _bad(thumb, None if nxt is None else nxt[1]):
            # A still picture is cut only when it lasts: a dancer pausing is not a frozen phone.
            return t if black or t - start >= _MIN_FROZEN_SECONDS else start
        black = black or (t >= start and _black(thumb))
    return start


def _last_good(source: FrameSource, start: float, end: float) -> float:
    """Where the picture turns black or stops changing until ``end``; ``end`` if it never does.

    Keyframes are read backwards in chunks until one is good (unlike the one before it); the
    frames from there to ``end`` are then decoded to find the exact one. When the last frame is
    good, nothing is cut and one group of pictures is all that is decoded.
    """
    if _ends_well(source, start, end):
        return end
    begin = start
    chunk_end = end
    while chunk_end > start:
        chunk_start = max(start, chunk_end - _CHUNK_SECONDS)
        keys = [k for k in _sorted(source.keyframes(chunk_start, chunk_end)) if k[0] < end]
        found = next(
            (
                keys[k][0]
                for k in range(len(keys) - 1, 0, -1)
                if not _bad(keys[k][1], keys[k - 1][1])
            ),
            None,
        )
        if found is not None:
            begin = found
            break
        if not keys or keys[0][0] <= start or chunk_end - start > SCAN_SECONDS:
            break
        chunk_end = keys[0][0] + 1e-6
    frames = [f for f in _sorted(source.frames(max(start, begin), end)) if f[0] < end]
    cut, black = end, False
    for k in range(len(frames) - 1, 0, -1):
        if _black(frames[k][1]):
            cut, black = frames[k][0], True
        elif _bad(frames[k][1], frames[k - 1][1]):
            # A frozen run starts with the frame that the later ones repeat.
            cut = frames[k - 1][0]
        else:
            break
    # A still picture is cut only when it lasts: a dancer pausing is not a frozen phone.
    if not black and end - cut < _MIN_FROZEN_SECONDS:
        return end
    return max(cut, start)


def _ends_well(source: FrameSource, start: float, end: float) -> bool:
    """Whether the last frame before ``end`` is neither black nor a repeat of the one before it
    (both at or after ``start``)."""
    last = source.last_two(max(start, end - TAIL_SECONDS), end)
    if len(last) < 2 or last[0][0] < start:
        return False
    return not _bad(last[1][1], last[0][1])


def _sorted(frames: Iterator[tuple[float, Thumb]]) -> list[tuple[float, Thumb]]:
    """In presentation order, whatever order the source found them in."""
    return sorted(frames, key=lambda i: i[0])


def _time_base(stream: av.video.stream.VideoStream) -> Fraction:
    return stream.time_base or Fraction(1, 90000)


def _thumb(frame: av.VideoFrame) -> Thumb:
    # Area averaging: each thumbnail pixel is the mean of its block, at half bicubic's cost.
    small = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="gray", interpolation="AREA")
    return small.to_ndarray().astype(np.int16)


def _black(thumb: Thumb) -> bool:
    return bool((thumb < _DARK_LUMA).mean() >= _RATIO)


def _bad(thumb: Thumb, other: Thumb | None) -> bool:
    """Black, or (almost) the same picture as its neighbour ``other``."""
    if _black(thumb):
        return True
    return other is not None and bool((np.abs(thumb - other) < _CHANGE_LUMA).mean() >= _RATIO)


def _thumbnails(
    info: MediaInfo, start: float, end: float, *, keyframes_only: bool
) -> Generator[tuple[float, Thumb], None, None]:
    for t, frame in _frames(info, start, end, keyframes_only=keyframes_only):
        yield t, _thumb(frame)


def _frames(
    info: MediaInfo, start: float, end: float, *, keyframes_only: bool
) -> Generator[tuple[float, av.VideoFrame], None, None]:
    """(time, frame) of the frames (or only keyframes) from the keyframe at or before ``start``
    up to ``end``, in presentation order."""
    with open_media(info.path) as container:
        stream = container.streams.video[0]
        if keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        elif end - start > _THREADED_SECONDS:
            stream.thread_type = "AUTO"
        tb = _time_base(stream)
        container.seek(int(max(start, 0.0) / tb), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * tb)
            if t > end:
                return
            yield t, frame
