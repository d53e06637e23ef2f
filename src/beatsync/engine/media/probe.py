"""Probe a media file: its streams, codecs, timing and orientation, decided by reading the file.

The container format is whatever FFmpeg recognises in the bytes; the file name's extension is never
consulted. Unusable input raises an :class:`~beatsync.engine.errors.InputError` subclass.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error

from ..errors import (
    InvalidFormatError,
    MediaNotFoundError,
    NoAudioTrackError,
    NoVideoTrackError,
)

__all__ = ["AudioInfo", "MediaInfo", "VideoInfo", "open_media", "probe"]

# Packets read to judge whether the frame rate is variable; a few seconds of video.
_VFR_SAMPLE_PACKETS = 240
# Relative spread of frame durations above which the stream counts as variable rate.
_VFR_TOLERANCE = 0.02


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The first video stream of a file.

    ``width`` and ``height`` are the coded size; ``rotation`` (degrees, counter-clockwise, from the
    display matrix) says how a player turns the picture, so the displayed size of a 90° stream is
    ``height × width``.
    """

    index: int
    codec: str
    width: int
    height: int
    fps: float
    variable_frame_rate: bool
    rotation: int
    pix_fmt: str | None
    color_range: int
    color_primaries: int
    color_trc: int
    colorspace: int
    bit_rate: int | None
    time_base: Fraction
    start_time: float
    duration: float | None
    has_b_frames: bool
    frames: int = 0  # packets in the stream, as the container's index counts them (0: unknown)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows the picture, rotation applied."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """The first audio stream of a file."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None
    time_base: Fraction
    start_time: float
    duration: float | None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What :func:`probe` learned about a file. Times are seconds on the file's own timeline."""

    path: str
    format_name: str
    size_bytes: int
    duration: float
    start_time: float
    video: VideoInfo | None
    audio: AudioInfo | None


def open_media(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a coded :class:`InputError`."""
    p = Path(path)
    if not p.is_file():
        raise MediaNotFoundError("no such file", path=str(p))
    if p.stat().st_size == 0:
        raise InvalidFormatError("the file is empty", path=str(p))
    try:
        # Absolute, so that FFmpeg never reads "take:2.mp4" as the protocol "take".
        return av.open(str(p.absolute()), mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidFormatError(f"not a media file FFmpeg can read: {exc}", path=str(p)) from exc


def probe(
    path: str | os.PathLike[str],
    *,
    require_video: bool = False,
    require_audio: bool = True,
) -> MediaInfo:
    """Read the streams and timing of a media file.

    Parameters
    ----------
    path
        The file to read.
    require_video, require_audio
        Raise :class:`NoVideoTrackError` / :class:`NoAudioTrackError` when the stream is missing.

    Returns
    -------
    MediaInfo
        Frozen facts about the first video and first audio stream.
    """
    p = Path(path)
    with open_media(p) as container:
        try:
            video = _video_info(container)
            audio = _audio_info(container)
        except av.error.FFmpegError as exc:
            raise InvalidFormatError(f"the file cannot be decoded: {exc}", path=str(p)) from exc
        duration = container.duration / av.time_base if container.duration else None
        start = container.start_time / av.time_base if container.start_time else 0.0
        info = MediaInfo(
            path=str(p),
            format_name=container.format.name,
            size_bytes=p.stat().st_size,
            duration=duration or _longest(video, audio),
            start_time=start,
            video=video,
            audio=audio,
        )
    if video is None and audio is None:
        raise InvalidFormatError("the file holds neither video nor audio", path=str(p))
    if require_video and video is None:
        raise NoVideoTrackError("the file has no video track", path=str(p))
    if require_audio and audio is None:
        raise NoAudioTrackError("the file has no audio track", path=str(p))
    if info.duration <= 0:
        raise InvalidFormatError("the file has no measurable duration", path=str(p))
    return info


def _longest(video: VideoInfo | None, audio: AudioInfo | None) -> float:
    ends = [s.start_time + s.duration for s in (video, audio) if s is not None and s.duration]
    return max(ends, default=0.0)


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _video_info(container: av.container.InputContainer) -> VideoInfo | None:
    streams = [s for s in container.streams.video if not _is_cover_art(s)]
    if not streams:
        return None
    stream = streams[0]
    ctx = stream.codec_context
    if not ctx.width or not ctx.height:
        raise InvalidFormatError("the video stream has no picture size")
    time_base = stream.time_base or Fraction(1, 90000)
    durations, has_b_frames, first_pts = _frame_timing(container, stream)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    variable = False
    if durations:
        median = sorted(durations)[len(durations) // 2]
        if median > 0:
            spread = max(abs(d - median) for d in durations) / median
            variable = spread > _VFR_TOLERANCE
            if not fps:
                fps = 1.0 / float(median * time_base)
    rotation = _rotation(container, stream)
    start = _seconds(stream.start_time, time_base)
    if start is None:
        start = float(first_pts * time_base) if first_pts is not None else 0.0
    return VideoInfo(
        index=stream.index,
        codec=ctx.name,
        width=ctx.width,
        height=ctx.height,
        fps=fps,
        variable_frame_rate=variable,
        rotation=rotation,
        pix_fmt=ctx.pix_fmt,
        color_range=int(ctx.color_range),
        color_primaries=int(ctx.color_primaries),
        color_trc=int(ctx.color_trc),
        colorspace=int(ctx.colorspace),
        bit_rate=ctx.bit_rate or None,
        time_base=time_base,
        start_time=start,
        duration=_seconds(stream.duration, time_base),
        has_b_frames=has_b_frames,
        frames=max(0, stream.frames or 0),
    )


def _audio_info(container: av.container.InputContainer) -> AudioInfo | None:
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    ctx = stream.codec_context
    if not ctx.sample_rate or not ctx.channels:
        raise InvalidFormatError("the audio stream has no sample rate or channels")
    time_base = stream.time_base or Fraction(1, ctx.sample_rate)
    return AudioInfo(
        index=stream.index,
        codec=ctx.name,
        sample_rate=ctx.sample_rate,
        channels=ctx.channels,
        bit_rate=ctx.bit_rate or None,
        time_base=time_base,
        start_time=_seconds(stream.start_time, time_base) or 0.0,
        duration=_seconds(stream.duration, time_base),
    )


def _is_cover_art(stream: av.video.stream.VideoStream) -> bool:
    # An attached picture (album art in an M4A or MP3) is a video stream with one frame.
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _frame_timing(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[list[int], bool, int | None]:
    """Durations between consecutive presentation times of the first packets, in stream ticks."""
    pts: list[int] = []
    reordered = False
    last: int | None = None
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        if last is not None and packet.pts < last:
            reordered = True
        last = packet.pts
        pts.append(packet.pts)
        if len(pts) >= _VFR_SAMPLE_PACKETS:
            break
    _rewind(container)
    pts.sort()
    durations = [b - a for a, b in itertools.pairwise(pts) if b > a]
    return durations, reordered, (pts[0] if pts else None)


def _rewind(container: av.container.InputContainer) -> None:
    # An unseekable input: the caller reads what is left.
    with contextlib.suppress(av.error.FFmpegError):
        container.seek(0, backward=True, any_frame=False)


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees (0, 90, 180, 270), read from the first decoded frame."""
    try:
        for frame in container.decode(stream):
            return round(frame.rotation) % 360 if not math.isnan(frame.rotation) else 0
    except av.error.FFmpegError:
        return 0
    return 0
