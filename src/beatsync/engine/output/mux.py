"""Writing the MP4: video packets interleaved with the audio track's, and progress reports.

Both tracks start at media time 0: the first video packet decodes at 0 and the audio's first packet
plays at 0. Each video packet goes in after the audio packets up to its decode time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..errors import ProcessingError
from ..media.audiosource import OUTPUT_RATE
from .audiotrack import AAC_FRAME, AudioPlan, AudioTrack
from .videocopy import FAR, dts_of, pts_of

if TYPE_CHECKING:
    import av
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

    Packet = av.Packet[Any]

__all__ = ["Muxer", "Progress", "Reporter", "VideoOut", "WrittenVideo"]

log = logging.getLogger(__name__)

Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class WrittenVideo:
    """The picture as written, in dance-file ticks: the first packet's decode time (output time
    0), the first frame's presentation time and the end of the last frame; its coded size."""

    origin: int
    start: int
    end: int
    width: int
    height: int
    frames: int


class Reporter:
    """Forwards progress, never backwards and at most every half percent."""

    def __init__(self, callback: Progress | None) -> None:
        self._callback = callback
        self._last = -1.0

    def __call__(self, fraction: float) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        if self._callback is None or fraction <= self._last:
            return
        if fraction < 1.0 and fraction - self._last < 0.005:
            return
        self._last = fraction
        self._callback(fraction)


class Muxer:
    """Writes each video packet after the audio packets up to its decode time (interleaving)."""

    def __init__(self, dst: OutputContainer, report: Reporter) -> None:
        self.dst, self.report = dst, report
        self.span = 1.0
        self.audio: AudioTrack | None = None
        self.audio_stream: AudioStream | None = None
        self.pending: Packet | None = None

    def start_audio(self, plan: AudioPlan, track: AudioTrack | None = None) -> None:
        """Add the audio stream and start ``plan``'s encoders, or adopt ``track``, which was
        started for this same plan."""
        # Added after the video stream and before the first packet. Its own encoder only
        # describes the track; the packets come from the workers' encoders.
        self.audio_stream = self.dst.add_stream("aac", rate=OUTPUT_RATE)
        self.audio_stream.layout = "stereo"
        self.audio_stream.bit_rate = plan.bitrate
        self.span = plan.samples / OUTPUT_RATE
        self.audio = track if track is not None else AudioTrack(plan)

    @property
    def audio_seconds(self) -> float:
        return 0.0 if self.audio is None else self.audio.plan.packets * AAC_FRAME / OUTPUT_RATE

    def _audio_until(self, seconds: float) -> None:
        if self.audio is None or self.audio_stream is None:
            raise ProcessingError("video was written before the audio was planned")
        while True:
            if self.pending is None:
                self.pending = next(self.audio.packets, None)
                if self.pending is None:
                    return
            if (self.pending.pts or 0) / OUTPUT_RATE > seconds:
                return
            self.pending.stream = self.audio_stream
            self.dst.mux(self.pending)
            self.pending = None

    def video(self, packet: Packet, seconds: float) -> None:
        self._audio_until(seconds)
        self.dst.mux(packet)
        self.report(0.97 * seconds / self.span)

    def finish(self) -> None:
        self._audio_until(math.inf)

    def stop(self) -> None:
        if self.audio is not None:
            self.audio.stop()


class VideoOut:
    """Rebases video packets so the first decodes at 0; the last one ends at ``close(end)``.

    One packet is held back so the last one's duration (the final ``stts`` entry) can be set.
    """

    def __init__(self, muxer: Muxer, stream: VideoStream, tb: Fraction) -> None:
        self.muxer, self.stream, self.tb = muxer, stream, tb
        self.tick = float(tb)  # seconds: interleaving and progress need no exact fractions
        self.origin: int | None = None
        self.held: Packet | None = None
        self.frames = 0
        self.top = -FAR

    def put(self, packet: Packet) -> None:
        if self.origin is None:
            self.origin = dts_of(packet)
        if self.held is not None:
            self._write(self.held)
        packet.stream = self.stream
        self.held = packet
        self.frames += 1
        self.top = max(self.top, pts_of(packet))

    def close(self, end: int) -> int:
        """Write the held packet so the picture lasts until tick ``end``; the end used."""
        if self.held is None:
            raise ProcessingError("no video frame was written")
        if end <= self.top:
            log.warning("the last frame would end before it starts; giving it one tick")
            end = self.top + 1
        self.held.duration = end - dts_of(self.held)
        self._write(self.held)
        self.held = None
        return end

    def _write(self, packet: Packet) -> None:
        assert self.origin is not None
        packet.pts, packet.dts = pts_of(packet) - self.origin, dts_of(packet) - self.origin
        self.muxer.video(packet, packet.dts * self.tick)
