"""Write the output: the dance video's picture with the reference audio placed by the mapping.

The MP4 has no edit lists, so players that ignore them and players that honour them agree. Both
tracks start at media time 0: the first video packet decodes at 0 (its frame is shown
``first_frame_time`` later when B-frames delay it), and the first AAC packet plays at 0, encoded so
that the encoder's priming frame is the leading silence. Audio at output time ``τ`` carries
reference time ``mapping.bgm_time(video_start − first_frame_time + τ)`` in every player.

By default the picture is stream-copied from the keyframe at or before the cut. The audio is
decoded, resampled and AAC-encoded by worker threads (one segment of the output per core, stitched
at packet boundaries; PyAV releases the GIL while coding) while the main thread copies the video
packets and interleaves the two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.stream import Discard
from numpy.typing import NDArray

from .errors import (
    BeatSyncError,
    NoAudioTrackError,
    NoVideoTrackError,
    OptionsError,
    ProcessingError,
)
from .mapping import Mapping
from .probe import MediaInfo, VideoInfo, open_media
from .trim import Cut

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer, OutputContainer
    from av.video.stream import VideoStream

    Packet = av.Packet[Any]

__all__ = ["OUTPUT_RATE", "RenderParams", "RenderedOutput", "render"]

log = logging.getLogger(__name__)

OUTPUT_RATE = 48_000
_AAC_FRAME = 1024
# A later audio segment's encoder runs this many packets before its first kept one, and each
# segment is fed this many frames past its last kept packet, so stitched packets see the same
# signal around the seam (and choose the same window shapes) as one encoder would.
_PREROLL = 4
_LOOKAHEAD = 2
_SEGMENT_MIN_SECONDS = 20.0
_BLOCK = 1 << 18  # output samples synthesised per step (5.5 s): memory stays flat
_SEEK_MARGIN = 1.0  # seconds decoded before the first sample needed (decoder warm-up)
# Containers whose seeks give exact timestamps; elsewhere (MP3, raw AAC) a seek estimates the
# time from the byte position, so the audio is decoded from the start instead.
_EXACT_SEEK = ("mov", "mp4", "matroska", "webm", "ogg", "wav", "flac", "aiff", "caf")
_COPYABLE = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"})
_MP4_OPTIONS = {"movflags": "+faststart", "use_editlist": "0"}
_FAR = 2**62

Progress = Callable[[float], None]
Audio = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class RenderParams:
    """How to render.

    ``reencode`` re-encodes the picture as H.264 (scaled so the displayed height is at most
    ``max_height`` pixels, when given) instead of copying it; ``fade`` is the length of the audio
    fades at both edges (seconds); ``live_mix_db``, when set, mixes the live room sound under the
    music at that gain (dB).
    """

    reencode: bool = False
    max_height: int | None = None
    fade: float = 0.02
    audio_bitrate: int = 192_000
    live_mix_db: float | None = None


@dataclass(frozen=True, slots=True)
class RenderedOutput:
    """Facts about the written file.

    ``video_start`` and ``video_end`` are the dance-file times of the output's first frame and
    of the end of its last frame. The first frame is shown at output time ``first_frame_time``
    (the B-frame reorder delay; 0 without B-frames), so output time ``τ`` shows dance time
    ``video_start − first_frame_time + τ``. ``width``/``height`` are the coded size and
    ``rotation`` (degrees counter-clockwise) the display matrix written with it.
    """

    path: str
    size_bytes: int
    duration: float
    video_start: float
    video_end: float
    video_codec: str
    video_copied: bool
    width: int
    height: int
    rotation: int
    frames: int
    audio_codec: str
    sample_rate: int
    channels: int
    first_frame_time: float = 0.0


def render(
    dance: MediaInfo,
    bgm: MediaInfo,
    out: Path,
    *,
    mapping: Mapping,
    cut: Cut,
    params: RenderParams = RenderParams(),
    on_progress: Progress | None = None,
) -> RenderedOutput:
    """Write ``out``: the dance picture over ``cut`` with the reference audio placed by ``mapping``.

    Parameters
    ----------
    dance
        The class recording (needs a video stream; its audio is used only for ``live_mix_db``).
    bgm
        The reference; its first audio stream is decoded at its native rate.
    out
        The MP4 to write. It appears atomically, complete or not at all.
    mapping
        ``bgm_time = offset + scale × dance_time``, seconds on each file's own timeline.
    cut
        The dance-time span to keep (s). Copy mode starts at the keyframe at or before
        ``cut.start`` and may end a frame or two after ``cut.end`` (B-frame anchors); re-encoding
        starts at the first frame at or after ``cut.start``.
    params
        Copy or re-encode, fades, audio bitrate, live mix.
    on_progress
        Called with the finished fraction in [0, 1], never decreasing.

    Returns
    -------
    RenderedOutput
        What was written, with the exact dance-time span of the picture.

    Raises
    ------
    OptionsError
        The mapping, cut or params cannot be rendered (checked before any work).
    ProcessingError
        Writing failed (other engine errors, such as an input that vanished, pass through
        unchanged); no partial file is left behind either way.
    """
    video = _validate(dance, bgm, mapping, cut, params)
    out = Path(out)
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        tmp = Path(name)
        report = _Reporter(on_progress)
        result = _Job(dance, video, bgm, mapping, cut, params, report).write(tmp)
        result = dataclasses.replace(result, path=str(out), size_bytes=tmp.stat().st_size)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the output is an ordinary file
        report(1.0)
        os.replace(tmp, out)
        tmp = None
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, BeatSyncError) or not isinstance(exc, Exception):
            raise
        raise ProcessingError(f"rendering failed: {exc}", path=str(out)) from exc
    log.info("rendered %s: %.3f–%.3f s", out, result.video_start, result.video_end)
    return result


def _validate(
    dance: MediaInfo, bgm: MediaInfo, mapping: Mapping, cut: Cut, params: RenderParams
) -> VideoInfo:
    if dance.video is None:
        raise NoVideoTrackError("the dance file has no video track", path=dance.path)
    if bgm.audio is None:
        raise NoAudioTrackError("the reference has no audio track", path=bgm.path)
    if not (math.isfinite(mapping.offset) and 0.5 <= mapping.scale <= 2.0):
        raise OptionsError(f"cannot render with {mapping}: scale must be within 0.5–2")
    if not (math.isfinite(cut.start) and math.isfinite(cut.end)) or cut.end <= cut.start:
        raise OptionsError(f"the cut {cut.start}–{cut.end} s is empty")
    first = dance.video.start_time
    last = first + (dance.video.duration or dance.duration)
    if cut.end <= first or cut.start >= last:
        raise OptionsError(f"the cut {cut.start}–{cut.end} s misses the video ({first}–{last} s)")
    if not (math.isfinite(params.fade) and 0.0 <= params.fade <= 5.0):
        raise OptionsError(f"fade {params.fade} s is outside 0–5 s")
    if not 32_000 <= params.audio_bitrate <= 512_000:
        raise OptionsError(f"audio bitrate {params.audio_bitrate} is outside 32–512 kb/s")
    if params.max_height is not None and params.max_height < 16:
        raise OptionsError(f"max height {params.max_height} px is too small")
    if params.live_mix_db is not None and not -60.0 <= params.live_mix_db <= 12.0:
        raise OptionsError(f"live mix gain {params.live_mix_db} dB is outside −60–12 dB")
    return dance.video


class _Reporter:
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


# --- which video packets -----------------------------------------------------------------------


def _pts(packet: Packet) -> int:
    if packet.pts is not None:
        return packet.pts
    return _dts(packet)


def _dts(packet: Packet) -> int:
    if packet.dts is None:
        raise ProcessingError("a video packet carries no decode timestamp; re-encode instead")
    return packet.dts


def _video_stream(container: InputContainer, index: int) -> VideoStream:
    for stream in container.streams.video:
        if stream.index == index:
            return stream
    raise ProcessingError(f"the file has no video stream #{index}")


def _audio_stream(container: InputContainer, index: int) -> AudioStream:
    for stream in container.streams.audio:
        if stream.index == index:
            return stream
    raise ProcessingError(f"the file has no audio stream #{index}")


def _from_keyframe(path: str, index: int, ts: int) -> tuple[InputContainer, Iterator[Packet]]:
    """Video packets in decode order from the last keyframe shown at or before tick ``ts``.

    The first packet is that keyframe (the first keyframe, if ``ts`` precedes it). A seek finds
    keyframes by decode time, which with B-frames can land on one shown after ``ts``: then seek
    further back, and at last read from the beginning.
    """
    for back in (0.0, 3.0, None):
        container = open_media(path)
        stream = _video_stream(container, index)
        try:
            if back is not None:
                tb = stream.time_base or Fraction(1, 90_000)
                container.seek(ts - math.ceil(back / tb), backward=True, stream=stream)
            found = _scan_keyframe(container.demux(stream), ts, from_start=back is None)
        except av.error.FFmpegError:
            found = None
        if found is not None:
            return container, found
        container.close()
    raise ProcessingError("the video has no keyframe to start from", path=path)


def _scan_keyframe(
    packets: Iterator[Packet], ts: int, *, from_start: bool
) -> Iterator[Packet] | None:
    run: list[Packet] = []
    for packet in packets:
        if not packet.size:
            continue
        if packet.is_keyframe and _pts(packet) <= ts:
            run = [packet]
        elif run:
            run.append(packet)
            if _dts(packet) > ts:  # later packets have pts ≥ dts > ts: no later keyframe fits
                break
        elif packet.is_keyframe:  # the first keyframe read is shown after ts
            return chain([packet], packets) if from_start else None
    return chain(run, packets) if run else None


class _RunSelector:
    """Which packets of a decode-order run from a keyframe are copied.

    Every packet up to the last one shown before ``end`` goes in, then any held packet shown
    before the latest frame already in, so the copied frames are gapless (B-frames need their
    anchors; a frame or two past ``end`` comes along). Packets shown before ``floor``, the leading
    pictures of an open GOP that reference the previous GOP, are dropped.
    """

    def __init__(self, floor: int, end: int) -> None:
        self.floor, self.end = floor, end
        self.held: list[Packet] = []
        self.bound = -_FAR  # latest pts read
        self.top = -_FAR  # latest pts kept

    def feed(self, packet: Packet) -> list[Packet] | None:
        """The packets to write now; None when the run is complete (``packet`` is not in it)."""
        if not packet.size or _pts(packet) < self.floor:
            return []
        if _dts(packet) >= max(self.end, self.bound):
            return None  # this and every later packet is shown after every frame read so far
        self.bound = max(self.bound, _pts(packet))
        if _pts(packet) >= self.end:
            self.held.append(packet)
            return []
        out, self.held = [*self.held, packet], []
        self.top = max(self.top, *(_pts(p) for p in out))
        return out

    def finish(self) -> list[Packet]:
        out: list[Packet] = []
        while True:
            last = max((i for i, p in enumerate(self.held) if _pts(p) < self.top), default=-1)
            if last < 0:
                return out
            out += self.held[: last + 1]
            self.held = self.held[last + 1 :]
            self.top = max(self.top, *(_pts(p) for p in out))


def _end_of_run(path: str, index: int, floor: int, end: int, *, copy: bool) -> int:
    """The tick at which the last written frame ends: the next frame's pts, or its own duration.

    Reads from the keyframe shown at or before ``end``: every packet decoded before that keyframe
    is shown before it, so the run's last frames all come after it.
    """
    container, packets = _from_keyframe(path, index, end)
    with container:
        durations: dict[int, int] = {}
        later: list[int] = []
        selector = _RunSelector(floor, end)
        top = -_FAR
        for packet in packets:
            if not packet.size:
                continue
            if (selector.feed(packet) is None) if copy else _pts(packet) >= end:
                later.append(_pts(packet))
                break
            if _pts(packet) >= floor:
                durations[_pts(packet)] = packet.duration or 0
                top = max(top, _pts(packet))
        if copy:
            selector.finish()
            top = selector.top
            later += [_pts(p) for p in selector.held]
        if later:
            following = min(later)
            for packet in packets:  # a packet decoded later may still be shown sooner
                if packet.size and _dts(packet) >= following:
                    break
                if packet.size:
                    following = min(following, _pts(packet))
            return following
        if durations.get(top):
            return top + durations[top]
        stream = _video_stream(container, index)
        tb = stream.time_base or Fraction(1, 90_000)
        return top + max(1, round(1 / (float(stream.average_rate or 30) * tb)))


# --- the audio ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """An audio stream laid on the output: output sample n is source time t0 + scale·n/48000 s.

    ``span`` (output samples) is where the source has sound; its edges are faded.
    """

    path: str
    index: int
    t0: float
    scale: float
    gain: float = 1.0
    span: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class _AudioPlan:
    sources: tuple[_Source, ...]
    samples: int  # the output's length: the picture's span
    fade: int  # samples
    bitrate: int

    @property
    def packets(self) -> int:
        return -(-self.samples // _AAC_FRAME)


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


_FULL_SCALE = {
    np.dtype(np.int16): 2.0**-15,
    np.dtype(np.int32): 2.0**-31,
    np.dtype(np.uint8): 2.0**-7,
}


def _as_stereo(frame: av.AudioFrame) -> Audio:
    """A decoded frame as float32 (2, samples): mono duplicated, more channels folded down."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
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


class _Resampled:
    """One source decoded at its native rate and resampled, block by block, onto the output grid.

    ``up/down`` approximates 48 kHz / (scale × source rate) to 1 ppm; output sample n sits at
    ``origin + n·down`` on the source grid upsampled ``up`` times. Each block is cut from the
    source where its ``resample_poly`` output lands exactly on those positions, so blocks join
    without seams and the start is placed to 1/``up`` of a source sample.
    """

    def __init__(self, source: _Source, first: int) -> None:
        self.source = source
        self.container = open_media(source.path)
        self.stream = _audio_stream(self.container, source.index)
        for other in self.container.streams:
            if other.index != source.index:
                other.discard = Discard.all  # an MP4 demuxer then skips their bytes
        self.rate = rate = self.stream.codec_context.sample_rate
        if not rate:
            raise ProcessingError("the audio stream has no sample rate", path=source.path)
        target = OUTPUT_RATE / (source.scale * rate)
        for limit in (64, 256, 1024, 4096, 16384):
            ratio = Fraction(target).limit_denominator(limit)
            if abs(float(ratio) / target - 1) <= 1e-6:
                break
        self.up, self.down = ratio.numerator, ratio.denominator
        widest = max(self.up, self.down)
        self.half = 10 * widest if widest > 1 else 0  # scipy's own choice of filter length
        # scipy.signal takes most of a second to import; the pipeline loads it in the background.
        from scipy.signal import firwin

        taps = firwin(2 * self.half + 1, 1 / widest, window=("kaiser", 5.0)) if self.half else 1
        self.taps = np.asarray(taps, np.float32)
        self.origin = round(source.t0 * rate * self.up)
        self.phase = int(self.origin * pow(self.up, -1, self.down)) % self.down
        self.blocks: list[tuple[int, Audio]] = []
        start = (self.origin + first * self.down) // self.up - int(_SEEK_MARGIN * rate)
        self.frames = self._decode(start)

    def _decode(self, start: int) -> Iterator[tuple[int, Audio]]:
        """(first sample index, samples) per frame, indices on the source's own timeline."""
        tb = self.stream.time_base or Fraction(1, self.rate)
        scale = Fraction(tb) * self.rate
        exact = any(name in self.container.format.name for name in _EXACT_SEEK)
        if exact and start / self.rate > float((self.stream.start_time or 0) * tb):
            target = math.floor(Fraction(start, self.rate) / tb)
            self.container.seek(target, backward=True, stream=self.stream)
        tolerance = math.ceil(1.5 * scale) + 2  # timestamps rounded to a coarse tick jitter
        expected: int | None = None
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                log.warning("skipping an undecodable audio packet in %s", self.source.path)
                continue
            for frame in frames:
                if frame.sample_rate != self.rate:
                    raise ProcessingError("the sample rate changes", path=self.source.path)
                if frame.pts is None:
                    position = expected or 0
                else:
                    position = round(frame.pts * scale)
                    if expected is not None and abs(position - expected) <= tolerance:
                        position = expected
                expected = position + frame.samples
                yield position, _as_stereo(frame)

    def _fetch(self, start: int, stop: int) -> Audio:
        """Source samples [start, stop); silence where the source has none."""
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
        if self.up == self.down == 1:
            return data[:, skip : skip + n1 - n0]
        from scipy.signal import resample_poly

        out = resample_poly(data, self.up, self.down, axis=1, window=self.taps)
        return np.ascontiguousarray(out[:, skip : skip + n1 - n0], dtype=np.float32)

    def close(self) -> None:
        self.container.close()


def _synthesise(
    plan: _AudioPlan, start: int, stop: int, cancel: threading.Event
) -> Iterator[Audio]:
    """Output samples [start, stop) in blocks: the sources mixed, faded and clipped."""
    readers: list[_Resampled] = []
    try:
        readers += [_Resampled(source, start) for source in plan.sources]
        for n0 in range(start, stop, _BLOCK):
            if cancel.is_set():
                return
            n1 = min(n0 + _BLOCK, stop)
            edge = np.ones(n1 - n0, np.float32)
            # The first frame is the AAC priming (lost); the fade-in starts after it.
            _fade(edge, n0, _AAC_FRAME, plan.fade, rising=True)
            _fade(edge, n0, plan.samples, plan.fade, rising=False)
            mix = np.zeros((2, n1 - n0), np.float32)
            for source, reader in zip(plan.sources, readers, strict=True):
                gain = edge * np.float32(source.gain)
                if source.span is not None:
                    _fade(gain, n0, source.span[0], plan.fade, rising=True)
                    _fade(gain, n0, source.span[1], plan.fade, rising=False)
                mix += reader.take(n0, n1) * gain
            yield np.clip(mix, -1.0, 1.0, out=mix)
    finally:
        for reader in readers:
            reader.close()


_DONE = object()


def _encode_segment(
    plan: _AudioPlan, first: int, last: int, out: queue.Queue[object], cancel: threading.Event
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
            plan, (begin + 1) * _AAC_FRAME, (last + 1 + _LOOKAHEAD) * _AAC_FRAME, cancel
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
                    packet.pts = packet.dts = index * _AAC_FRAME
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


class _AudioTrack:
    """Worker threads encoding consecutive segments; ``packets`` yields them all in order."""

    def __init__(self, plan: _AudioPlan) -> None:
        self.plan = plan
        self.cancel = threading.Event()
        total = plan.packets
        seconds = total * _AAC_FRAME / OUTPUT_RATE
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
        for thread in self.threads:
            thread.start()
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
            thread.join(timeout=30)


# --- writing -----------------------------------------------------------------------------------


class _Muxer:
    """Writes each video packet after the audio packets up to its decode time (interleaving)."""

    def __init__(self, dst: OutputContainer, report: _Reporter) -> None:
        self.dst, self.report = dst, report
        self.span = 1.0
        self.audio: _AudioTrack | None = None
        self.audio_stream: AudioStream | None = None
        self.pending: Packet | None = None

    def start_audio(self, plan: _AudioPlan) -> None:
        # Added after the video stream and before the first packet. Its own encoder only
        # describes the track; the packets come from the workers' encoders.
        self.audio_stream = self.dst.add_stream("aac", rate=OUTPUT_RATE)
        self.audio_stream.layout = "stereo"
        self.audio_stream.bit_rate = plan.bitrate
        self.span = plan.samples / OUTPUT_RATE
        self.audio = _AudioTrack(plan)

    @property
    def audio_seconds(self) -> float:
        return 0.0 if self.audio is None else self.audio.plan.packets * _AAC_FRAME / OUTPUT_RATE

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


class _VideoOut:
    """Rebases video packets so the first decodes at 0; the last one ends at ``close(end)``.

    One packet is held back so the last one's duration (the final ``stts`` entry) can be set.
    """

    def __init__(self, muxer: _Muxer, stream: VideoStream, tb: Fraction) -> None:
        self.muxer, self.stream, self.tb = muxer, stream, tb
        self.origin: int | None = None
        self.held: Packet | None = None
        self.frames = 0
        self.top = -_FAR

    def put(self, packet: Packet) -> None:
        if self.origin is None:
            self.origin = _dts(packet)
        if self.held is not None:
            self._write(self.held)
        packet.stream = self.stream
        self.held = packet
        self.frames += 1
        self.top = max(self.top, _pts(packet))

    def close(self, end: int) -> int:
        """Write the held packet so the picture lasts until tick ``end``; the end used."""
        if self.held is None:
            raise ProcessingError("no video frame was written")
        if end <= self.top:
            log.warning("the last frame would end before it starts; giving it one tick")
            end = self.top + 1
        self.held.duration = end - _dts(self.held)
        self._write(self.held)
        self.held = None
        return end

    def _write(self, packet: Packet) -> None:
        assert self.origin is not None
        packet.pts, packet.dts = _pts(packet) - self.origin, _dts(packet) - self.origin
        self.muxer.video(packet, float(packet.dts * self.tb))


class _Job:
    def __init__(
        self,
        dance: MediaInfo,
        video: VideoInfo,
        bgm: MediaInfo,
        mapping: Mapping,
        cut: Cut,
        params: RenderParams,
        report: _Reporter,
    ) -> None:
        self.dance, self.video, self.bgm = dance, video, bgm
        self.mapping, self.cut, self.params, self.report = mapping, cut, params, report
        self.tb = video.time_base

    def ticks(self, seconds: float, *, up: bool = False) -> int:
        value = seconds / self.tb
        return math.ceil(value - 1e-6) if up else math.floor(value + 1e-6)

    def seconds(self, ticks: int) -> float:
        return float(ticks * self.tb)

    def write(self, tmp: Path) -> RenderedOutput:
        dst = av.open(str(tmp), "w", format="mp4", options=_MP4_OPTIONS)
        muxer = _Muxer(dst, self.report)
        try:
            copy = not self.params.reencode and self.video.codec in _COPYABLE
            if not copy and not self.params.reencode:
                log.warning("%s video cannot be copied into MP4; re-encoding", self.video.codec)
            result = self._copy(dst, muxer) if copy else self._reencode(dst, muxer)
            muxer.finish()
            self.report(0.98)
            dst.close()  # writes the index and moves it to the front (faststart)
            return result
        except BaseException:
            with contextlib.suppress(Exception):  # the original error matters, not this one
                dst.close()
            raise
        finally:
            muxer.stop()

    def _plan(self, origin: float, end: float) -> _AudioPlan:
        """The audio for output time 0 = dance time ``origin`` through dance time ``end`` (s)."""
        m, reference = self.mapping, self.bgm.audio
        assert reference is not None
        ref_start = reference.start_time
        ref_end = ref_start + (reference.duration or self.bgm.duration)
        edges = (
            (m.dance_time(ref_start) - origin) * OUTPUT_RATE,
            (m.dance_time(ref_end) - origin) * OUTPUT_RATE,
        )
        sources = [_Source(self.bgm.path, reference.index, m.bgm_time(origin), m.scale, span=edges)]
        live = self.params.live_mix_db
        if live is not None and self.dance.audio is not None:
            gain = 10 ** (live / 20)
            sources.append(_Source(self.dance.path, self.dance.audio.index, origin, 1.0, gain))
        elif live is not None:
            log.warning("the dance file has no audio to mix in")
        return _AudioPlan(
            sources=tuple(sources),
            samples=max(_AAC_FRAME, round((end - origin) * OUTPUT_RATE)),
            fade=round(self.params.fade * OUTPUT_RATE),
            bitrate=self.params.audio_bitrate,
        )

    def _result(
        self, out: _VideoOut, span: tuple[int, int, int], size: tuple[int, int], *, copied: bool
    ) -> RenderedOutput:
        """``span``: dance ticks of the first decode time, the first frame and the end."""
        origin, start, end = span
        return RenderedOutput(
            path="",
            size_bytes=0,
            duration=max(self.seconds(end - origin), out.muxer.audio_seconds),
            video_start=self.seconds(start),
            video_end=self.seconds(end),
            video_codec=self.video.codec if copied else "h264",
            video_copied=copied,
            width=size[0],
            height=size[1],
            rotation=self.video.rotation,
            frames=out.frames,
            audio_codec="aac",
            sample_rate=OUTPUT_RATE,
            channels=2,
            first_frame_time=self.seconds(start - origin),
        )

    def _copy(self, dst: OutputContainer, muxer: _Muxer) -> RenderedOutput:
        path, index = self.dance.path, self.video.index
        container, packets = _from_keyframe(path, index, self.ticks(self.cut.start))
        with container:
            source = _video_stream(container, index)
            stream = dst.add_stream_from_template(source)
            if self.video.codec == "hevc":
                stream.codec_tag = "hvc1"  # Apple players refuse hev1
            key = next(packets)
            origin, start, end = _dts(key), _pts(key), self.ticks(self.cut.end)
            end_pts = _end_of_run(path, index, start, end, copy=True)
            out = _VideoOut(muxer, stream, self.tb)
            out.origin = origin
            muxer.start_audio(self._plan(self.seconds(origin), self.seconds(end_pts)))
            selector = _RunSelector(start, end)
            for packet in chain([key], packets):
                chosen = selector.feed(packet)
                if chosen is None:
                    break
                for p in chosen:
                    out.put(p)
            for p in selector.finish():
                out.put(p)
            end_pts = out.close(end_pts)
            size = (source.codec_context.width, source.codec_context.height)
        return self._result(out, (origin, start, end_pts), size, copied=True)

    def _scaled(self, width: int, height: int) -> tuple[int, int]:
        shown = width if self.video.rotation % 180 else height
        limit = self.params.max_height
        factor = min(1.0, limit / shown) if limit else 1.0
        return max(2, 2 * int(width * factor / 2)), max(2, 2 * int(height * factor / 2))

    def _reencode(self, dst: OutputContainer, muxer: _Muxer) -> RenderedOutput:
        path, index = self.dance.path, self.video.index
        start, end = self.ticks(self.cut.start, up=True), self.ticks(self.cut.end, up=True)
        container, packets = _from_keyframe(path, index, start)
        with container:
            source = _video_stream(container, index)
            source.thread_type = "AUTO"
            decoder = source.codec_context
            width, height = self._scaled(decoder.width, decoder.height)
            stream = dst.add_stream(
                "libx264", rate=source.average_rate or source.guessed_rate or Fraction(30)
            )
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = stream.codec_context.time_base = self.tb
            stream.options = {"preset": "veryfast", "crf": "23"}
            for tag in ("color_range", "color_primaries", "color_trc", "colorspace"):
                setattr(stream.codec_context, tag, getattr(decoder, tag))
            if self.video.rotation:
                stream.set_display_rotation(self.video.rotation)
            end_pts = _end_of_run(path, index, start, end, copy=False)
            out = _VideoOut(muxer, stream, self.tb)
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
                picture.pts, picture.time_base = frame.pts - first, self.tb
                self._put_encoded(out, stream.encode(picture), first, end_pts)
            if first is None:
                raise ProcessingError("no frame of the cut could be decoded", path=path)
            self._put_encoded(out, stream.encode(None), first, end_pts)
            end_pts = first + out.close(end_pts - first)
            assert out.origin is not None
        return self._result(
            out, (first + out.origin, first, end_pts), (width, height), copied=False
        )

    def _put_encoded(self, out: _VideoOut, packets: list[Packet], first: int, end: int) -> None:
        for packet in packets:
            if out.origin is None:  # the encoder's first decode time: its B-frame delay
                out.origin = _dts(packet)
                origin = self.seconds(first + out.origin)
                out.muxer.start_audio(self._plan(origin, self.seconds(end)))
            out.put(packet)


def _decoded(stream: VideoStream, packets: Iterator[Packet]) -> Iterator[av.VideoFrame]:
    for packet in packets:
        try:
            yield from stream.decode(packet)
        except av.error.InvalidDataError:
            log.warning("skipping an undecodable video packet")
    yield from stream.decode(None)
