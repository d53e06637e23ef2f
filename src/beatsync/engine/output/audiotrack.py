"""The output's audio track: the sources mixed and faded on the 48 kHz grid, AAC-encoded by threads.

Worker threads encode one segment of the output each (one per core), stitched at packet boundaries;
PyAV releases the GIL while coding, so they run beside the thread that copies the video. The track
starts at media time 0 and its first packet plays at 0: the encoder's priming frame is the leading
silence.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain, pairwise
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext

from ..media.audiosource import OUTPUT_RATE, Audio, ResampledSource, Source
from .stretch import StretchedSource

if TYPE_CHECKING:
    Packet = av.Packet[Any]

__all__ = ["AAC_FRAME", "AudioPlan", "AudioTrack"]

AAC_FRAME = 1024
# A later audio segment's encoder runs this many packets before its first kept one, and each
# segment is fed this many frames past its last kept packet, so stitched packets see the same
# signal around the seam (and choose the same window shapes) as one encoder would.
_PREROLL = 4
_LOOKAHEAD = 2
_SEGMENT_MIN_SECONDS = 20.0
_BLOCK = 1 << 18  # output samples synthesised per step (5.5 s): memory stays flat


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """What the track carries: the sources laid on it, its length, the fade length (samples at
    48 kHz) and the AAC bitrate (bits per second)."""

    sources: tuple[Source, ...]
    samples: int  # the output's length: the picture's span
    fade: int  # samples
    bitrate: int

    @property
    def packets(self) -> int:
        return -(-self.samples // AAC_FRAME)


def _fade(gain: Audio, n0: int, at: float, length: int, *, rising: bool) -> None:
    """Apply a raised-cosine edge to ``gain`` (output samples ``n0``…) in place.

    Rising: silent before ``at``, full from ``at + length``. Falling: full until ``at − length``,
    silent from ``at``.
    """
    n = gain.shape[0]
    if rising:
        lo, hi = math.ceil(at) - n0, math.ceil(at + length) - n0
    else:
        lo, hi = math.floor(at - length) + 1 - n0, math.floor(at) + 1 - n0
    if length > 0 and hi > 0 and lo < n:
        idx = np.arange(max(lo, 0), min(hi, n))
        x = (idx + n0 - at) / length if rising else (at - idx - n0) / length
        gain[idx] *= (np.sin(0.5 * np.pi * np.clip(x, 0.0, 1.0)) ** 2).astype(np.float32)
    if rising:
        gain[: max(0, min(lo, n))] = 0.0
    else:
        gain[max(0, hi) :] = 0.0


def _synthesise(plan: AudioPlan, start: int, stop: int, cancel: threading.Event) -> Iterator[Audio]:
    """Output samples [start, stop) in blocks: the sources mixed, faded and clipped."""
    readers: list[ResampledSource | StretchedSource] = []
    try:
        readers += [
            StretchedSource(source, start)
            if source.pitch_kept and source.scale != 1.0
            else ResampledSource(source, start)
            for source in plan.sources
        ]
        for n0 in range(start, stop, _BLOCK):
            if cancel.is_set():
                return
            n1 = min(n0 + _BLOCK, stop)
            edge = np.ones(n1 - n0, np.float32)
            # The first frame is the AAC priming (lost); the fade-in starts after it.
            _fade(edge, n0, AAC_FRAME, plan.fade, rising=True)
            _fade(edge, n0, plan.samples, plan.fade, rising=False)
            mix: Audio | None = None
            for source, reader in zip(plan.sources, readers, strict=True):
                if source.span is not None and (
                    n1 <= math.ceil(source.span[0]) or n0 > math.floor(source.span[1])
                ):
                    continue  # silent in this block (a piece of an edit heard elsewhere)
                gain = edge * np.float32(source.gain)
                if source.span is not None:
                    _fade(gain, n0, source.span[0], plan.fade, rising=True)
                    _fade(gain, n0, source.span[1], plan.fade, rising=False)
                part = reader.take(n0, n1)
                if not bool((gain == 1.0).all()):
                    part *= gain
                mix = part if mix is None else mix + part
            if mix is None:
                mix = np.zeros((2, n1 - n0), np.float32)
            yield np.clip(mix, -1.0, 1.0, out=mix)
    finally:
        for reader in readers:
            reader.close()


_DONE = object()


def _encode_segment(
    plan: AudioPlan, first: int, last: int, out: queue.Queue[object], cancel: threading.Event
) -> None:
    """Put AAC packets [first, last) of the output on ``out``, packet k with pts k·1024.

    An encoder's packet j decodes to its input delayed by one frame (the priming frame), so fed
    the signal from sample (b + 1)·1024 on, its packet j carries samples (b + j)·1024 on.
    """
    try:
        encoder = av.CodecContext.create("aac", "w")
        assert isinstance(encoder, AudioCodecContext)
        encoder.sample_rate = OUTPUT_RATE
        encoder.layout = "stereo"
        encoder.format = "fltp"
        encoder.bit_rate = plan.bitrate
        encoder.time_base = Fraction(1, OUTPUT_RATE)
        # The fast coder takes half the time of the default one, inaudibly so at 192 kb/s.
        encoder.options = {"aac_coder": "fast"}
        begin = index = max(0, first - _PREROLL)
        signal = _synthesise(
            plan, (begin + 1) * AAC_FRAME, (last + 1 + _LOOKAHEAD) * AAC_FRAME, cancel
        )
        fed = 0
        for block in chain(signal, [None]):
            frame = None
            if block is not None:
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = OUTPUT_RATE, fed
                frame.time_base = Fraction(1, OUTPUT_RATE)
                fed += block.shape[1]
            for packet in encoder.encode(frame):
                if first <= index < last:
                    packet.pts = packet.dts = index * AAC_FRAME
                    packet.time_base = Fraction(1, OUTPUT_RATE)
                    out.put(packet)
                index += 1
            if cancel.is_set():
                return
        out.put(_DONE)
    except BaseException as exc:  # raised again by the muxing thread
        out.put(exc)


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class AudioTrack:
    """Worker threads encoding consecutive segments; ``packets`` yields them all in order."""

    def __init__(self, plan: AudioPlan) -> None:
        self.plan = plan
        self.cancel = threading.Event()
        total = plan.packets
        seconds = total * AAC_FRAME / OUTPUT_RATE
        count = max(1, min(_workers(), 4, int(seconds // _SEGMENT_MIN_SECONDS)))
        bounds = [round(total * i / count) for i in range(count + 1)]
        self.queues: list[queue.Queue[object]] = [queue.Queue() for _ in range(count)]
        self.threads = [
            threading.Thread(
                target=_encode_segment,
                args=(plan, first, last, q, self.cancel),
                name="beatsync-audio",
                daemon=True,
            )
            for (first, last), q in zip(pairwise(bounds), self.queues, strict=True)
        ]
        try:
            for thread in self.threads:
                thread.start()
        except BaseException:
            self.stop()  # the ones that started
            raise
        self.packets = self._drain()

    def _drain(self) -> Iterator[Packet]:
        for q in self.queues:
            while (item := q.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, av.Packet)
                yield item

    def stop(self) -> None:
        self.cancel.set()
        for thread in self.threads:
            if thread.ident is not None:  # started
                thread.join(timeout=30)
