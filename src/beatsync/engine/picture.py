"""Find black or frozen picture at the edges of a span (phone in a pocket, lens covered).

Only keyframes are decoded while scanning, so a check costs a few frames, not the whole video;
the exact frame where the picture turns bad is then found by decoding one group of pictures.
Thresholds follow FFmpeg's blackdetect and freezedetect: a picture is black when 98 % of it is
dark, and frozen when 98 % of it is unchanged.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from .probe import MediaInfo, open_media

__all__ = ["good_picture_span"]

_THUMB = (96, 54)
_DARK_LUMA = 32
_CHANGE_LUMA = 6
_RATIO = 0.98
_SCAN_SECONDS = 120.0


def good_picture_span(info: MediaInfo, start: float, end: float) -> tuple[float, float]:
    """Shrink ``[start, end]`` (seconds) past black or frozen picture at either edge.

    Returns the first and last-plus-one-frame times of good picture; ``(start, end)`` when the
    edges are good or the video cannot be scanned.
    """
    if info.video is None or end <= start:
        return start, end
    try:
        frames = _keyframes(info, start, min(end, start + _SCAN_SECONDS))
        new_start = _first_good(info, frames, start, end)
        frames = _keyframes(info, max(start, end - _SCAN_SECONDS), end)
        new_end = _last_good(info, frames, start, end)
    except av.error.FFmpegError:
        return start, end
    if new_end - new_start < 1.0:
        return start, end
    return new_start, new_end


def _time_base(stream: av.video.stream.VideoStream) -> Fraction:
    return stream.time_base or Fraction(1, 90000)


def _thumb(frame: av.VideoFrame) -> NDArray[np.int16]:
    small = frame.reformat(width=_THUMB[0], height=_THUMB[1], format="gray")
    return small.to_ndarray().astype(np.int16)


def _bad(thumb: NDArray[np.int16], previous: NDArray[np.int16] | None) -> bool:
    if (thumb < _DARK_LUMA).mean() >= _RATIO:
        return True
    return previous is not None and (np.abs(thumb - previous) < _CHANGE_LUMA).mean() >= _RATIO


def _keyframes(info: MediaInfo, start: float, end: float) -> list[tuple[float, NDArray[np.int16]]]:
    """(time, thumbnail) of every keyframe from the one at or before ``start`` to ``end``."""
    assert info.video is not None
    out: list[tuple[float, NDArray[np.int16]]] = []
    with open_media(info.path) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        tb = _time_base(stream)
        container.seek(int(max(start, 0.0) / tb), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * tb)
            if t > end:
                break
            out.append((t, _thumb(frame)))
    return out


def _frames(info: MediaInfo, start: float, end: float) -> list[tuple[float, NDArray[np.int16]]]:
    """(time, thumbnail) of every frame from the keyframe at or before ``start`` to ``end``."""
    out: list[tuple[float, NDArray[np.int16]]] = []
    with open_media(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = _time_base(stream)
        container.seek(int(max(start, 0.0) / tb), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * tb)
            if t > end:
                break
            out.append((t, _thumb(frame)))
    return out


def _first_good(
    info: MediaInfo, keys: list[tuple[float, NDArray[np.int16]]], start: float, end: float
) -> float:
    previous = None
    last_bad = None
    for t, thumb in keys:
        if t >= start and not _bad(thumb, previous):
            break
        if t >= start:
            last_bad = t
        previous = thumb
    else:
        return start
    if last_bad is None:
        return start
    # The picture turns good somewhere after the last bad keyframe: find the frame.
    previous = None
    for t, thumb in _frames(info, last_bad, end):
        if t >= last_bad and not _bad(thumb, previous):
            return max(start, t)
        previous = thumb
    return start


def _last_good(
    info: MediaInfo, keys: list[tuple[float, NDArray[np.int16]]], start: float, end: float
) -> float:
    inside = [(t, th) for t, th in keys if start <= t < end]
    if len(inside) < 2:
        return end
    bad_from = None
    for k in range(len(inside) - 1, 0, -1):
        t, thumb = inside[k]
        if _bad(thumb, inside[k - 1][1]):
            bad_from = k
        else:
            break
    if bad_from is None:
        return end
    # The picture goes bad between the last good keyframe and the next: find the frame.
    good_key = inside[bad_from - 1][0]
    previous = None
    frames = _frames(info, good_key, inside[bad_from][0])
    for t, thumb in frames:
        if t > good_key and _bad(thumb, previous):
            return t
        previous = thumb
    return inside[bad_from][0]
