"""Re-encoding the picture as H.264: for codecs MP4 cannot carry, or to scale it down.

The frames of the cut are decoded from the keyframe before it, scaled (colour range kept), and
encoded with their own timestamps, so the output shows each at the time the source did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av

from ..errors import ProcessingError
from ..media.probe import VideoInfo
from .mux import Muxer, VideoOut, WrittenVideo
from .videocopy import dts_of, end_of_run, from_keyframe, video_stream

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.stream import VideoStream

    Packet = av.Packet[Any]

__all__ = ["reencode_video"]

log = logging.getLogger(__name__)


def reencode_video(
    dst: OutputContainer,
    muxer: Muxer,
    path: str,
    video: VideoInfo,
    *,
    start: int,
    end: int,
    max_height: int | None,
    start_audio: Callable[[int, int], None],
) -> WrittenVideo:
    """Write the frames of ``path`` shown from tick ``start`` until tick ``end``, as H.264.

    Parameters
    ----------
    dst, muxer
        The output and the writer interleaving its packets with the audio.
    path, video
        The dance file and its video stream.
    start, end
        The cut, in the stream's ticks: frames shown at or after ``start`` and before ``end``.
    max_height
        Scale down so the displayed height is at most this many pixels (None: keep the size).
    start_audio
        Called once, before the first packet is written, with the dance ticks at output time 0
        (the encoder's B-frame delay before the first frame) and at the picture's end.

    Returns
    -------
    WrittenVideo
        The span written, in dance ticks, and the encoded size.
    """
    tb = video.time_base
    container, packets = from_keyframe(path, video.index, start)
    with container:
        source = video_stream(container, video.index)
        source.thread_type = "AUTO"
        decoder = source.codec_context
        width, height = _scaled(decoder.width, decoder.height, video.rotation, max_height)
        stream = dst.add_stream(
            "libx264", rate=source.average_rate or source.guessed_rate or Fraction(30)
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tb
        stream.options = {"preset": "veryfast", "crf": "23"}
        for tag in ("color_range", "color_primaries", "color_trc", "colorspace"):
            setattr(stream.codec_context, tag, getattr(decoder, tag))
        if video.rotation:
            stream.set_display_rotation(video.rotation)
        run_end = end_of_run(path, video.index, start, end, copy=False)
        out = VideoOut(muxer, stream, tb)

        def put(encoded: list[Packet], first: int) -> None:
            for packet in encoded:
                if out.origin is None:  # the encoder's first decode time: its B-frame delay
                    out.origin = dts_of(packet)
                    start_audio(first + out.origin, run_end)
                out.put(packet)

        first: int | None = None
        for frame in _decoded(source, packets):
            if frame.pts is None or frame.pts < start:
                continue
            if frame.pts >= end:
                break
            first = frame.pts if first is None else first
            picture = frame.reformat(
                width,
                height,
                "yuv420p",
                interpolation="BILINEAR",
                src_color_range=decoder.color_range,
                dst_color_range=decoder.color_range,
            )
            picture.pts, picture.time_base = frame.pts - first, tb
            put(stream.encode(picture), first)
        if first is None:
            raise ProcessingError("no frame of the cut could be decoded", path=path)
        put(stream.encode(None), first)
        end_pts = first + out.close(run_end - first)
        assert out.origin is not None
    return WrittenVideo(first + out.origin, first, end_pts, width, height, out.frames)


def _scaled(width: int, height: int, rotation: int, limit: int | None) -> tuple[int, int]:
    """The coded size, even, so the displayed height is at most ``limit``."""
    shown = width if rotation % 180 else height
    factor = min(1.0, limit / shown) if limit else 1.0
    return max(2, 2 * int(width * factor / 2)), max(2, 2 * int(height * factor / 2))


def _decoded(stream: VideoStream, packets: Iterator[Packet]) -> Iterator[av.VideoFrame]:
    for packet in packets:
        if not packet.size:
            # The demuxer's empty packet at the end of the file: decoding it would flush the
            # decoder, and the flush below would then fail at its end.
            continue
        try:
            yield from stream.decode(packet)
        except av.error.InvalidDataError:
            log.warning("skipping an undecodable video packet")
    yield from stream.decode(None)
