"""A poster frame: the picture shown at one dance time, turned upright, as a small JPEG."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from ..errors import BeatSyncError, NoVideoTrackError, OptionsError, ProcessingError
from ..media.decode import decoded_frames
from ..media.probe import MediaInfo, open_media
from .report import write_atomically

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

__all__ = ["write_poster"]

log = logging.getLogger(__name__)

# JPEG quantiser scale (2 = best, 31 = worst) times FFmpeg's lambda unit; 3 keeps a 640-wide
# poster near 30–60 kB.
_QUALITY = 3 * 118


def write_poster(dance: MediaInfo, out: Path, *, at: float, max_width: int = 640) -> Path:
    """Write the frame shown at dance time ``at`` as an upright JPEG.

    Parameters
    ----------
    dance
        The probed video (its first video stream is used).
    out
        The JPEG to write; it appears atomically, complete or not at all.
    at
        Dance-file time in seconds; the frame on screen then (the last one starting at or before
        it, or the first frame when ``at`` precedes the video).
    max_width
        Upper bound on the poster's width in pixels, after the display rotation is applied.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ProcessingError
        The frame could not be decoded or the file could not be written.
    """
    if dance.video is None:
        raise NoVideoTrackError("the file has no video track", path=dance.path)
    if not math.isfinite(at) or max_width < 16:
        raise OptionsError(f"cannot make a poster at {at} s no wider than {max_width} px")
    out = Path(out)
    try:
        frame = _frame_at(dance.path, dance.video.index, at)
        data = _jpeg(_upright(frame, dance.video.rotation, max_width))
    except BeatSyncError:
        raise
    except Exception as exc:
        raise ProcessingError(f"the poster could not be made: {exc}", path=str(out)) from exc
    write_atomically(out, data)
    log.info("poster %s from %.3f s", out, at)
    return out


def _frame_at(path: str, index: int, at: float) -> av.VideoFrame:
    """Decode forward from a keyframe to the frame on screen at ``at`` seconds."""
    # A seek finds keyframes by decode time; with B-frames the keyframe found can be shown after
    # `at`, so step further back, and at last decode from the beginning.
    for back in (0.0, 3.0, None):
        with open_media(path) as container:
            stream = _video(container, index)
            tb = stream.time_base or Fraction(1, 90_000)
            target = math.floor(at / tb + 1e-6)
            if back is not None:
                container.seek(math.floor((at - back) / tb), backward=True, stream=stream)
            shown: av.VideoFrame | None = None
            for frame in decoded_frames(container, stream):
                if frame.pts is None:
                    continue
                if frame.pts > target:
                    if shown is None and back is None:
                        shown = frame  # `at` precedes the first frame
                    break
                shown = frame
            if shown is not None:
                return shown
    raise ProcessingError("no frame could be decoded", path=path)


def _video(container: InputContainer, index: int) -> VideoStream:
    for stream in container.streams.video:
        if stream.index == index:
            return stream
    raise ProcessingError(f"no video stream #{index}")


def _upright(frame: av.VideoFrame, rotation: int, max_width: int) -> av.VideoFrame:
    """The frame scaled so its displayed width is at most ``max_width``, then rotated upright."""
    quarter = (rotation // 90) % 4
    width, height = frame.width, frame.height
    shown_width = height if quarter % 2 else width
    factor = min(1.0, max_width / shown_width)
    # JPEG's 4:2:0 sampling wants even sides.
    new_width = max(2, 2 * round(width * factor / 2))
    new_height = max(2, 2 * round(height * factor / 2))
    rgb = frame.to_ndarray(format="rgb24", width=new_width, height=new_height)
    # The display matrix turns the picture counter-clockwise, as np.rot90 does.
    upright = np.ascontiguousarray(np.rot90(rgb, quarter), dtype=np.uint8)
    return av.VideoFrame.from_ndarray(upright, format="rgb24")


def _jpeg(picture: av.VideoFrame) -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.video.codeccontext.VideoCodecContext)
    encoder.width, encoder.height = picture.width, picture.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.qscale = True
    encoder.global_quality = _QUALITY
    packets = encoder.encode(picture.reformat(format="yuvj420p"))
    packets += encoder.encode(None)
    if not packets:
        raise ProcessingError("the JPEG encoder produced nothing")
    return bytes(packets[0])
