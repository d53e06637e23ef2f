"""One audio stream decoded at its own rate and resampled, block by block, onto the output grid.

The output is 48 kHz stereo; a source is laid on it by a start time and a speed (the mapping's
scale), so each source sample lands where the mapping puts it, to a fraction of a sample. The
samples come from the file (:class:`StreamDecoder`) or from a :class:`DecodedStream` that a
forked child filled ahead of time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
from av.stream import Discard
from numpy.typing import NDArray

from ..errors import ProcessingError
from ..output.resample import PolyphaseResampler, kaiser_lowpass
from .probe import AudioInfo, open_media

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer

__all__ = ["OUTPUT_RATE", "Audio", "DecodedStream", "ResampledSource", "Source", "StreamDecoder"]

log = logging.getLogger(__name__)

OUTPUT_RATE = 48_000
_SEEK_MARGIN = 1.0  # seconds decoded before the first sample needed (decoder warm-up)
_DECODED_MARGIN = 1.0  # seconds held beyond a decoded stream's stated edges
_STALL_S = 20.0  # a decode that places nothing for this long is not waited for
# Containers whose seeks give exact timestamps; elsewhere (MP3, raw AAC) a seek estimates the
# time from the byte position, so the audio is decoded from the start instead.
_EXACT_SEEK = ("mov", "mp4", "matroska", "webm", "ogg", "wav", "flac", "aiff", "caf")

Audio = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Source:
    """An audio stream laid on the output: output sample n is source time t0 + scale·n/48000 s.

    ``span`` (output samples) is where the source has sound; its edges are faded. ``decoded``,
    when given, holds the whole stream already decoded: it is read instead of the file.
    ``pitch_kept``: the speed is a time-stretch that keeps the pitch (:mod:`.stretch`), not a
    resampling.
    """

    path: str
    index: int
    t0: float
    scale: float
    gain: float = 1.0
    span: tuple[float, float] | None = None
    decoded: DecodedStream | None = None
    pitch_kept: bool = False


_FULL_SCALE = {
    np.dtype(np.int16): 2.0**-15,
    np.dtype(np.int32): 2.0**-31,
    np.dtype(np.uint8): 2.0**-7,
}


def _as_stereo(frame: av.AudioFrame) -> Audio:
    """A decoded frame as float32 (2, samples): mono duplicated, more channels folded down."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if data.dtype == np.float32 and frame.format.is_planar and channels <= 2:
        # The common case (AAC, Opus, MP3 decode to planar float): no conversion to make.
        planar: Audio = np.asarray(data, dtype=np.float32)  # vstacked by PyAV: a fresh array
        return planar if channels == 2 else np.repeat(planar, 2, axis=0)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    full_scale = _FULL_SCALE.get(data.dtype, 1.0)
    if data.dtype == np.uint8:
        data = data.astype(np.float32) - np.float32(128)
    floats = (data * np.float32(full_scale)).astype(np.float32, copy=False)
    if channels <= 2:
        return np.repeat(floats, 2 // channels, axis=0)
    weights = np.array([[_weight(c.name, side) for c in frame.layout.channels] for side in "LR"])
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
    return (weights.astype(np.float32) @ floats).astype(np.float32)


def _weight(name: str, side: str) -> float:
    if name.startswith("LFE"):
        return 0.0
    if name == "F" + side:
        return 1.0
    if name.endswith(side):
        return 0.7071
    return 0.0 if name.endswith("R" if side == "L" else "L") else 0.7071  # centres: both


def _audio_stream(container: InputContainer, index: int) -> AudioStream:
    for stream in container.streams.audio:
        if stream.index == index:
            return stream
    raise ProcessingError(f"the file has no audio stream #{index}")


class _Placer:
    """Where each frame's first sample goes on the stream's timeline: at its timestamp, except
    that a frame stamped within a tick's rounding of where the previous one ended continues it
    exactly (timestamps rounded to a coarse tick jitter)."""

    def __init__(self, rate: int, time_base: Fraction) -> None:
        self.scale = Fraction(time_base) * rate
        self.tolerance = math.ceil(1.5 * self.scale) + 2
        self.expected: int | None = None

    def place(self, frame: av.AudioFrame) -> int:
        if frame.pts is None:
            position = self.expected or 0
        else:
            position = round(frame.pts * self.scale)
            if self.expected is not None and abs(position - self.expected) <= self.tolerance:
                position = self.expected
        self.expected = position + frame.samples
        return position


class StreamDecoder:
    """One audio stream's frames as (first sample index, stereo samples) on the stream's own
    timeline, in decode order."""

    def __init__(self, path: str, index: int) -> None:
        self.path = path
        self.container = open_media(path)
        try:
            self.stream = _audio_stream(self.container, index)
            for other in self.container.streams:
                if other.index != index:
                    other.discard = Discard.all  # an MP4 demuxer then skips their bytes
            self.rate: int = self.stream.codec_context.sample_rate
            if not self.rate:
                raise ProcessingError("the audio stream has no sample rate", path=path)
        except BaseException:
            self.container.close()
            raise

    def blocks(self, start: int) -> Iterator[tuple[int, Audio]]:
        """(first sample index, samples) per frame, from a little before sample ``start``."""
        tb = self.stream.time_base or Fraction(1, self.rate)
        exact = any(name in self.container.format.name for name in _EXACT_SEEK)
        if exact and start / self.rate > float((self.stream.start_time or 0) * tb):
            target = math.floor(Fraction(start, self.rate) / tb)
            self.container.seek(target, backward=True, stream=self.stream)
        placer = _Placer(self.rate, tb)
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                log.warning("skipping an undecodable audio packet in %s", self.path)
                continue
            for frame in frames:
                if frame.sample_rate != self.rate:
                    raise ProcessingError("the sample rate changes", path=self.path)
                yield placer.place(frame), _as_stereo(frame)

    def close(self) -> None:
        self.container.close()


class DecodedStream:
    """A whole audio stream decoded ahead into memory that a forked child can fill.

    The memory is an anonymous shared mapping made before the fork: the child that decodes the
    stream for the alignment also places every frame here (:meth:`collect`), and the renderer
    then reads samples instead of decoding the file again. Streams longer than about six
    minutes are not held (:meth:`for_stream` says ``None``) and are decoded while rendering.
    """

    MAX_BYTES = 128 << 20

    def __init__(self, path: str, index: int, rate: int, first: int, capacity: int) -> None:
        self.path, self.index, self.rate = path, index, rate
        self.first = first  # stream sample index of column 0
        self._memory = mmap.mmap(-1, 2 * capacity * 4)
        self.samples: Audio = np.frombuffer(self._memory, np.float32).reshape(2, capacity)
        self.span: tuple[int, int] | None = None  # samples decoded, once filled
        self._placer: _Placer | None = None
        self._lo: float = math.inf
        self._hi: float = -math.inf
        self._failed = False
        # While another process or thread fills the memory (begin_filling), it says here, in
        # memory shared with it, how far it has placed samples and whether it has ended.
        self._progress: NDArray[np.float64] | None = None
        self.stalled = False  # a read went on without waiting for the filler (see _wait)

    @classmethod
    def for_stream(cls, path: str, info: AudioInfo, duration: float) -> DecodedStream | None:
        """Memory for ``info``'s stream, or ``None`` when it would take too much."""
        rate = info.sample_rate
        length = info.duration or duration
        if rate <= 0 or not math.isfinite(length) or length <= 0:
            return None
        capacity = math.ceil((length + 2 * _DECODED_MARGIN) * rate)
        if 2 * capacity * 4 > cls.MAX_BYTES:
            return None
        first = math.floor((info.start_time - _DECODED_MARGIN) * rate)
        return cls(path, info.index, rate, first, capacity)

    def collect(self, frame: av.AudioFrame) -> None:
        """Place one decoded frame of the stream (frames come in decode order).

        Called for every frame of one pass over the stream, in the child that decodes it for
        the alignment. A frame that does not fit (a stream longer than it said, a change of
        sample rate) gives the whole stream up: :attr:`span` stays ``None`` and the render
        decodes the file.
        """
        if self._failed:
            return
        try:
            if frame.sample_rate != self.rate:
                raise ProcessingError("the sample rate changes", path=self.path)
            if self._placer is None:
                self._placer = _Placer(self.rate, frame.time_base or Fraction(1, self.rate))
            position = self._placer.place(frame)
            at = position - self.first
            if at < 0 or at + frame.samples > self.samples.shape[1]:
                raise ProcessingError("the stream runs past its stated length", path=self.path)
            self.samples[:, at : at + frame.samples] = _as_stereo(frame)
            self._lo = min(self._lo, position)
            self._hi = max(self._hi, position + frame.samples)
            if self._progress is not None:
                self._progress[0] = self._hi
        except ProcessingError as exc:
            log.debug("the reference will be decoded while rendering: %s", exc)
            self._failed = True
            self.end_filling()

    @property
    def collected(self) -> tuple[int, int] | None:
        """The span of samples placed so far; ``None`` if there are none or the stream was
        given up."""
        if self._failed or self._lo >= self._hi:
            return None
        return int(self._lo), int(self._hi)

    def begin_filling(self) -> None:
        """Let the memory be read while another process or thread fills it (:meth:`collect`,
        in decode order, then :meth:`end_filling`): a read waits until the decode has passed
        the samples it needs, or has ended.

        Memory not yet written holds silence, as :meth:`read` gives outside what was decoded,
        so a read of samples the decode has passed gives what it gives once all is decoded.
        Once the filler is done, :attr:`span` must be set to what it collected (``None``: the
        stream was given up, and what was read meanwhile must be thrown away).
        """
        self._progress = np.frombuffer(mmap.mmap(-1, 16), np.float64)
        self._progress[:] = (-math.inf, 0.0)
        self.span = (self.first, self.first + self.samples.shape[1])

    def end_filling(self) -> None:
        """Called by the filler when it has ended, well or not: reads wait no more."""
        if self._progress is not None:
            self._progress[1] = 1.0

    def _wait(self, stop: int) -> None:
        progress = self._progress
        if progress is None:
            return
        # A second past the samples asked for: a frame stamped a little back (a jittery
        # timestamp) may still rewrite what lies just behind the decode. The filler runs at
        # hundreds of times real time: a reader waits for it rarely and briefly.
        # A filler that stops moving (killed, or starved of CPU) is not waited for for ever:
        # the read goes on, and :attr:`stalled` tells the caller to read again once it ended.
        ahead = stop + self.rate
        reached, since = progress[0], time.monotonic()
        while progress[1] == 0.0 and progress[0] < ahead:
            if progress[0] != reached:
                reached, since = progress[0], time.monotonic()
            elif time.monotonic() - since > _STALL_S:
                self.stalled = True
                return
            time.sleep(0.002)

    def read(self, start: int, stop: int) -> Audio:
        """Stream samples [start, stop) as (2, stop − start); silence outside what was decoded."""
        self._wait(stop)
        out = np.zeros((2, stop - start), np.float32)
        if self.span is not None:
            lo, hi = max(start, self.span[0]), min(stop, self.span[1])
            if lo < hi:
                out[:, lo - start : hi - start] = self.samples[:, lo - self.first : hi - self.first]
        return out

    def close(self) -> None:
        del self.samples
        with contextlib.suppress(BufferError):  # a view still alive: the GC frees it later
            self._memory.close()


class ResampledSource:
    """A source decoded at its native rate and resampled, block by block, onto the output grid.

    ``up/down`` approximates 48 kHz / (scale × source rate) to 1 ppm; output sample n sits at
    ``origin + n·down`` on the source grid upsampled ``up`` times. Each block is cut from the
    source where its ``resample_poly`` output lands exactly on those positions, so blocks join
    without seams and the start is placed to 1/``up`` of a source sample.
    """

    def __init__(self, source: Source, first: int) -> None:
        self.source = source
        self.decoded: DecodedStream | None = None
        self.decoder: StreamDecoder | None = None
        if source.decoded is not None and source.decoded.span is not None:
            self.decoded = source.decoded
            rate = source.decoded.rate
        else:
            self.decoder = StreamDecoder(source.path, source.index)
            rate = self.decoder.rate
        self.rate = rate
        target = OUTPUT_RATE / (source.scale * rate)
        for limit in (64, 256, 1024, 4096, 16384):
            ratio = Fraction(target).limit_denominator(limit)
            if abs(float(ratio) / target - 1) <= 1e-6:
                break
        self.up, self.down = ratio.numerator, ratio.denominator
        widest = max(self.up, self.down)
        self.half = 10 * widest if widest > 1 else 0  # scipy.signal.resample_poly's own choice
        self.resampler: PolyphaseResampler | None = None
        if self.half:
            taps = kaiser_lowpass(2 * self.half + 1, 1 / widest, 5.0).astype(np.float32)
            self.resampler = PolyphaseResampler(self.up, self.down, taps)
        self.origin = round(source.t0 * rate * self.up)
        self.phase = int(self.origin * pow(self.up, -1, self.down)) % self.down
        self.blocks: list[tuple[int, Audio]] = []
        start = (self.origin + first * self.down) // self.up - int(_SEEK_MARGIN * rate)
        self.frames = iter(()) if self.decoder is None else self.decoder.blocks(start)

    def _fetch(self, start: int, stop: int) -> Audio:
        """Source samples [start, stop); silence where the source has none."""
        if self.decoded is not None:
            return self.decoded.read(start, stop)
        while not self.blocks or self.blocks[-1][0] + self.blocks[-1][1].shape[1] < stop:
            block = next(self.frames, None)
            if block is None:
                break
            self.blocks.append(block)
        self.blocks = [b for b in self.blocks if b[0] + b[1].shape[1] > start]
        out = np.zeros((2, stop - start), np.float32)
        for position, data in self.blocks:
            lo, hi = max(position, start), min(position + data.shape[1], stop)
            if lo < hi:
                out[:, lo - start : hi - start] = data[:, lo - position : hi - position]
        return out

    def take(self, n0: int, n1: int) -> Audio:
        """Output samples [n0, n1) as (2, n1 − n0); successive calls move forward."""
        first = self.origin + n0 * self.down
        last = self.origin + (n1 - 1) * self.down
        lowest = (first - self.half) // self.up - 1
        start = lowest - (lowest - self.phase) % self.down  # where the phases line up
        data = self._fetch(start, (last + self.half) // self.up + 2)
        skip = (first - start * self.up) // self.down
        if self.resampler is None:
            return data[:, skip : skip + n1 - n0]
        out = self.resampler(data, axis=1)
        return np.ascontiguousarray(out[:, skip : skip + n1 - n0], dtype=np.float32)

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()
