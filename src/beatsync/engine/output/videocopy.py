"""Which video packets a stream copy takes: a decode-order run from a keyframe, gapless on screen.

A copy starts at the last keyframe shown at or before the cut and takes every packet up to the last
one shown before the cut's end, plus what B-frames need to decode, so the copied pictures follow
each other without a hole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from itertools import chain
from typing import TYPE_CHECKING, Any

import av

from ..errors import ProcessingError
from ..media.probe import open_media

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

    Packet = av.Packet[Any]

__all__ = [
    "FAR",
    "RunSelector",
    "dts_of",
    "end_of_run",
    "from_keyframe",
    "pts_of",
    "run_end",
    "scan_keyframe",
    "video_stream",
]

FAR = 2**62  # beyond every timestamp


def pts_of(packet: Packet) -> int:
    """When the packet's frame is shown (stream ticks); its decode time if it carries none."""
    if packet.pts is not None:
        return packet.pts
    return dts_of(packet)


def dts_of(packet: Packet) -> int:
    """When the packet is decoded (stream ticks)."""
    if packet.dts is None:
        raise ProcessingError("a video packet carries no decode timestamp; re-encode instead")
    return packet.dts


def video_stream(container: InputContainer, index: int) -> VideoStream:
    """The video stream ``index`` of an open file."""
    for stream in container.streams.video:
        if stream.index == index:
            return stream
    raise ProcessingError(f"the file has no video stream #{index}")


def from_keyframe(path: str, index: int, ts: int) -> tuple[InputContainer, Iterator[Packet]]:
    """Video packets in decode order from the last keyframe shown at or before tick ``ts``.

    The first packet is that keyframe (the first keyframe, if ``ts`` precedes it). A seek finds
    keyframes by decode time, which with B-frames can land on one shown after ``ts``: then seek
    further back, and at last read from the beginning.
    """
    for back in (0.0, 3.0, None):
        container = open_media(path)
        stream = video_stream(container, index)
        try:
            if back is not None:
                tb = stream.time_base or Fraction(1, 90_000)
                container.seek(ts - math.ceil(back / tb), backward=True, stream=stream)
            found = scan_keyframe(container.demux(stream), ts, from_start=back is None)
        except av.error.FFmpegError:
            found = None
        if found is not None:
            return container, found
        container.close()
    raise ProcessingError("the video has no keyframe to start from", path=path)


def scan_keyframe(
    packets: Iterator[Packet], ts: int, *, from_start: bool
) -> Iterator[Packet] | None:
    run: list[Packet] = []
    for packet in packets:
        if not packet.size:
            continue
        if packet.is_keyframe and pts_of(packet) <= ts:
            run = [packet]
        elif run:
            run.append(packet)
            if dts_of(packet) > ts:  # later packets have pts ≥ dts > ts: no later keyframe fits
                break
        elif packet.is_keyframe:  # the first keyframe read is shown after ts
            return chain([packet], packets) if from_start else None
    return chain(run, packets) if run else None


class RunSelector:
    """Which packets of a decode-order run from a keyframe are copied.

    Every packet up to the last one shown before ``end`` goes in, then any held packet shown
    before the latest frame already in, so the copied frames are gapless (B-frames need their
    anchors; a frame or two past ``end`` comes along). Packets shown before ``floor``, the leading
    pictures of an open GOP that reference the previous GOP, are dropped.
    """

    def __init__(self, floor: int, end: int) -> None:
        self.floor, self.end = floor, end
        self.held: list[Packet] = []
        self.bound = -FAR  # latest pts read
        self.top = -FAR  # latest pts kept

    def feed(self, packet: Packet) -> list[Packet] | None:
        """The packets to write now; None when the run is complete (``packet`` is not in it)."""
        if not packet.size or pts_of(packet) < self.floor:
            return []
        if dts_of(packet) >= max(self.end, self.bound):
            return None  # this and every later packet is shown after every frame read so far
        self.bound = max(self.bound, pts_of(packet))
        if pts_of(packet) >= self.end:
            self.held.append(packet)
            return []
        out, self.held = [*self.held, packet], []
        self.top = max(self.top, *(pts_of(p) for p in out))
        return out

    def finish(self) -> list[Packet]:
        out: list[Packet] = []
        while True:
            last = max((i for i, p in enumerate(self.held) if pts_of(p) < self.top), default=-1)
            if last < 0:
                return out
            out += self.held[: last + 1]
            self.held = self.held[last + 1 :]
            self.top = max(self.top, *(pts_of(p) for p in out))


def end_of_run(path: str, index: int, floor: int, end: int, *, copy: bool) -> int:
    """The tick at which the last written frame ends: the next frame's pts, or its own duration.

    Reads from the keyframe shown at or before ``end``: every packet decoded before that keyframe
    is shown before it, so the run's last frames all come after it.
    """
    container, packets = from_keyframe(path, index, end)
    with container:
        stream = video_stream(container, index)
        tb = stream.time_base or Fraction(1, 90_000)
        frame = max(1, round(1 / (float(stream.average_rate or 30) * tb)))
        return run_end(packets, floor, end, copy=copy, frame_ticks=frame)


def run_end(
    packets: Iterator[Packet], floor: int, end: int, *, copy: bool, frame_ticks: int
) -> int:
    """:func:`end_of_run` over decode-order ``packets`` from the keyframe shown at or before
    ``end``; ``frame_ticks`` is the last frame's length when no packet says it."""
    durations: dict[int, int] = {}
    later: list[int] = []
    selector = RunSelector(floor, end)
    top = -FAR
    for packet in packets:
        if not packet.size:
            continue
        if (selector.feed(packet) is None) if copy else pts_of(packet) >= end:
            later.append(pts_of(packet))
            break
        if pts_of(packet) >= floor:
            durations[pts_of(packet)] = packet.duration or 0
            top = max(top, pts_of(packet))
    if copy:
        selector.finish()
        top = selector.top
        later += [pts_of(p) for p in selector.held]
    if later:
        following = min(later)
        for packet in packets:  # a packet decoded later may still be shown sooner
            if packet.size and dts_of(packet) >= following:
                break
            if packet.size:
                following = min(following, pts_of(packet))
        return following
    if durations.get(top):
        return top + durations[top]
    return top + frame_ticks
