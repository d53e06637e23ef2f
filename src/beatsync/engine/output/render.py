"""Write the output: the dance video's picture with the reference audio placed by the mapping.

The MP4 has no edit lists, so players that ignore them and players that honour them agree. Both
tracks start at media time 0: the first video packet decodes at 0 (its frame is shown
``first_frame_time`` later when B-frames delay it), and the first AAC packet plays at 0, encoded so
that the encoder's priming frame is the leading silence. Audio at output time ``τ`` carries
reference time ``mapping.bgm_time(video_start − first_frame_time + τ)`` in every player.

By default the picture is stream-copied from the keyframe at or before the cut (``videocopy``
chooses the packets); ``reencode`` writes H.264 instead. The audio (``audiotrack``) is decoded,
resampled and AAC-encoded by worker threads while the main thread copies the video packets and
``mux`` interleaves the two. The encoders can start before the cut is final
(:func:`start_audio`): the render adopts them when the final cut calls for the same audio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from ..cut.trim import Cut
from ..errors import (
    BeatSyncError,
    NoAudioTrackError,
    NoVideoTrackError,
    OptionsError,
    ProcessingError,
)
from ..mapping import Mapping
from ..media.audiosource import OUTPUT_RATE, DecodedStream, Source
from ..media.probe import MediaInfo, VideoInfo
from ..piece import Piece
from .audiotrack import AAC_FRAME, AudioPlan, AudioTrack
from .mux import Muxer, Progress, Reporter, VideoOut, WrittenVideo
from .outfile import part_path, publish
from .reencode import reencode_video
from .videocopy import RunSelector, dts_of, end_of_run, from_keyframe, pts_of, video_stream

if TYPE_CHECKING:
    from av.container import OutputContainer

    Packet = av.Packet[Any]

__all__ = [
    "OUTPUT_RATE",
    "EarlyAudio",
    "RenderParams",
    "RenderedOutput",
    "audio_plan",
    "render",
    "start_audio",
]

log = logging.getLogger(__name__)

_COPYABLE = frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"})
_MP4_OPTIONS = {"use_editlist": "0"}
# The index goes in front of the media (for playback while downloading). Copying, the space it
# needs is reserved ahead from the source's packet count, so the file is written once; without
# a count, FFmpeg's faststart moves it there afterwards, rewriting the whole file. Every table
# takes at most 45 bytes a sample (stsz, stts, ctts, stss, stsc, co64, sdtp): 80 is a margin.
_MOOV_PER_SAMPLE = 80
_MOOV_BASE = 256 << 10


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


class EarlyAudio:
    """An audio track encoding for a cut that may still change; see :func:`start_audio`.

    A context manager: leaving it stops the encoders unless a render took them over.
    """

    def __init__(self, track: AudioTrack | None = None) -> None:
        self._track = track

    def __enter__(self) -> EarlyAudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def take(self) -> AudioTrack | None:
        """The running track, handed over once."""
        track, self._track = self._track, None
        return track

    def stop(self) -> None:
        if self._track is not None:
            self._track.stop()
            self._track = None


def start_audio(
    dance: MediaInfo,
    bgm: MediaInfo,
    *,
    mapping: Mapping,
    cut: Cut,
    params: RenderParams = RenderParams(),
    decoded: DecodedStream | None = None,
    pieces: tuple[Piece, ...] | None = None,
) -> EarlyAudio:
    """Start encoding the audio a stream copy of ``cut`` would carry, before the cut is final.

    The audio depends on the cut only through the keyframe the copy starts from and the end of
    its last frame: while the picture at the edges is still being checked, the encoders can run.
    :func:`render` adopts the track when the final cut leads to the same audio and stops it
    otherwise. Nothing starts for a re-encode or for a cut that cannot be rendered (the render
    reports the problem). ``decoded`` and ``pieces`` as for :func:`render`.
    """
    try:
        video = _validate(dance, bgm, mapping, cut, params, pieces)
        if params.reencode or video.codec not in _COPYABLE:
            return EarlyAudio()
        job = _Job(
            dance, video, bgm, mapping, cut, params, Reporter(None), decoded=decoded, pieces=pieces
        )
        plan = job.copy_plan()
    except Exception as exc:  # only a head start: the render meets and reports the problem
        log.debug("the audio waits for the final cut: %s", exc)
        return EarlyAudio()
    return EarlyAudio(AudioTrack(plan))


def audio_plan(
    dance: MediaInfo,
    bgm: MediaInfo,
    *,
    mapping: Mapping,
    origin: float,
    end: float,
    params: RenderParams = RenderParams(),
    decoded: DecodedStream | None = None,
    pieces: tuple[Piece, ...] | None = None,
) -> AudioPlan:
    """The audio track a render lays under a picture whose first packet decodes at dance time
    ``origin`` and whose last frame ends at dance time ``end`` (seconds): output time 0 is
    ``origin``. What a stream copy of the same span carries, for a client that copies the
    picture itself. ``decoded`` and ``pieces`` as for :func:`render`.

    Raises
    ------
    OptionsError
        As :func:`render`, for a mapping, span or params that cannot be rendered.
    """
    cut = Cut(origin, end, "user", "user")
    video = _validate(dance, bgm, mapping, cut, params, pieces)
    job = _Job(
        dance, video, bgm, mapping, cut, params, Reporter(None), decoded=decoded, pieces=pieces
    )
    return job._plan(origin, end)


def render(
    dance: MediaInfo,
    bgm: MediaInfo,
    out: Path,
    *,
    mapping: Mapping,
    cut: Cut,
    params: RenderParams = RenderParams(),
    on_progress: Progress | None = None,
    early: EarlyAudio | None = None,
    decoded: DecodedStream | None = None,
    pieces: tuple[Piece, ...] | None = None,
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
    early
        Audio started by :func:`start_audio`; used if it fits this cut, stopped either way.
    decoded
        The reference's audio stream already decoded (:class:`~.audiosource.DecodedStream`),
        read instead of decoding the file again.
    pieces
        The pieces of an edit, in dance-time order (``mapping`` is then ignored): the reference
        is spliced at their seams, each piece resampled by its own mapping, the two sides
        crossfaded over ``params.fade`` centred on the seam. ``None`` or one piece: ``mapping``
        throughout.

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
    try:
        return _render(
            dance, bgm, Path(out), mapping, cut, params, on_progress, early, decoded, pieces
        )
    finally:
        if early is not None:
            early.stop()  # unless the render took the track over (it stops it itself)


def _render(
    dance: MediaInfo,
    bgm: MediaInfo,
    out: Path,
    mapping: Mapping,
    cut: Cut,
    params: RenderParams,
    on_progress: Progress | None,
    early: EarlyAudio | None,
    decoded: DecodedStream | None,
    pieces: tuple[Piece, ...] | None,
) -> RenderedOutput:
    video = _validate(dance, bgm, mapping, cut, params, pieces)
    tmp: Path | None = None
    try:
        tmp = part_path(out)
        report = Reporter(on_progress)
        job = _Job(
            dance, video, bgm, mapping, cut, params, report,
            early=early, decoded=decoded, pieces=pieces,
        )  # fmt: skip
        result = job.write(tmp)
        result = dataclasses.replace(result, path=str(out), size_bytes=tmp.stat().st_size)
        report(1.0)
        publish(tmp, out)
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
    dance: MediaInfo,
    bgm: MediaInfo,
    mapping: Mapping,
    cut: Cut,
    params: RenderParams,
    pieces: tuple[Piece, ...] | None = None,
) -> VideoInfo:
    if dance.video is None:
        raise NoVideoTrackError("the dance file has no video track", path=dance.path)
    if bgm.audio is None:
        raise NoAudioTrackError("the reference has no audio track", path=bgm.path)
    for m in [mapping, *(p.mapping for p in pieces or ())]:
        if not (math.isfinite(m.offset) and 0.5 <= m.scale <= 2.0):
            raise OptionsError(f"cannot render with {m}: scale must be within 0.5–2")
    seams = [p.start for p in (pieces or ())[1:]]
    if not all(math.isfinite(t) for t in seams) or seams != sorted(seams):
        raise OptionsError("the pieces' seams must be finite and in order")
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


class _Job:
    """One render: the picture copied or re-encoded, then the audio planned over its span."""

    def __init__(
        self,
        dance: MediaInfo,
        video: VideoInfo,
        bgm: MediaInfo,
        mapping: Mapping,
        cut: Cut,
        params: RenderParams,
        report: Reporter,
        *,
        early: EarlyAudio | None = None,
        decoded: DecodedStream | None = None,
        pieces: tuple[Piece, ...] | None = None,
    ) -> None:
        self.dance, self.video, self.bgm = dance, video, bgm
        self.mapping, self.cut, self.params, self.report = mapping, cut, params, report
        self.pieces = pieces if pieces and len(pieces) > 1 else None
        self.early, self.decoded = early, decoded
        self.tb = video.time_base

    def ticks(self, seconds: float, *, up: bool = False) -> int:
        value = seconds / self.tb
        return math.ceil(value - 1e-6) if up else math.floor(value + 1e-6)

    def seconds(self, ticks: int) -> float:
        return float(ticks * self.tb)

    def write(self, tmp: Path) -> RenderedOutput:
        copy = not self.params.reencode and self.video.codec in _COPYABLE
        reserve = self._index_room() if copy else None
        options = dict(_MP4_OPTIONS)
        options.update({"moov_size": str(reserve)} if reserve else {"movflags": "+faststart"})
        dst = av.open(str(tmp), "w", format="mp4", options=options)
        muxer = Muxer(dst, self.report)
        try:
            if not copy and not self.params.reencode:
                log.warning("%s video cannot be copied into MP4; re-encoding", self.video.codec)
            if copy:
                written = self._copy(dst, muxer)
            else:
                written = reencode_video(
                    dst,
                    muxer,
                    self.dance.path,
                    self.video,
                    start=self.ticks(self.cut.start, up=True),
                    end=self.ticks(self.cut.end, up=True),
                    max_height=self.params.max_height,
                    start_audio=lambda origin, end: self._start_audio(muxer, origin, end),
                )
            result = self._result(written, muxer, copied=copy)
            muxer.finish()
            self.report(0.98)
            dst.close()  # writes the index in front: in its reserved room, or by faststart
            return result
        except BaseException:
            with contextlib.suppress(Exception):  # the original error matters, not this one
                dst.close()
            raise
        finally:
            muxer.stop()

    def _index_room(self) -> int | None:
        """Bytes to reserve for the index of a copy; ``None`` when the source does not say how
        many packets it has."""
        seconds = self.video.duration or self.dance.duration
        if self.video.frames <= 0 or not math.isfinite(seconds) or seconds <= 0:
            return None
        if self.video.frames < 0.5 * seconds * self.video.fps:
            return None  # a count that cannot be the whole stream (a fragmented MP4's, say)
        audio_packets = math.ceil((seconds + 2.0) * OUTPUT_RATE / AAC_FRAME)
        return _MOOV_BASE + _MOOV_PER_SAMPLE * (self.video.frames + audio_packets)

    def _start_audio(self, muxer: Muxer, origin: int, end: int) -> None:
        """Start the audio for output time 0 = dance tick ``origin`` through dance tick ``end``."""
        plan = self._plan(self.seconds(origin), self.seconds(end))
        early = self.early.take() if self.early is not None else None
        if early is not None and early.plan != plan:
            log.debug("the cut changed after the audio started; encoding it again")
            early.stop()
            early = None
        try:
            muxer.start_audio(plan, early)
        except BaseException:
            if early is not None:  # neither the muxer nor the EarlyAudio holds it now
                early.stop()
            raise

    def copy_plan(self) -> AudioPlan:
        """The audio a stream copy of the cut carries (what :meth:`_copy` plans)."""
        path, index = self.dance.path, self.video.index
        container, packets = from_keyframe(path, index, self.ticks(self.cut.start))
        with container:
            origin, _, end_pts = self._copy_span(next(packets))
        return self._plan(self.seconds(origin), self.seconds(end_pts))

    def _copy_span(self, key: Packet) -> tuple[int, int, int]:
        """A copy from the keyframe ``key``: its decode time (output time 0), its presentation
        time, and where the last frame copied ends (dance-file ticks)."""
        start = pts_of(key)
        end = self.ticks(self.cut.end)
        return (
            dts_of(key),
            start,
            end_of_run(self.dance.path, self.video.index, start, end, copy=True),
        )

    def _plan(self, origin: float, end: float) -> AudioPlan:
        """The audio for output time 0 = dance time ``origin`` through dance time ``end`` (s).

        Each piece is a source of its own, heard from half a fade before its first seam to half
        a fade after its last: the two sides of a seam cross over the fade, their gains summing
        to one, centred on the seam.
        """
        reference = self.bgm.audio
        assert reference is not None
        ref_start = reference.start_time
        ref_end = ref_start + (reference.duration or self.bgm.duration)
        decoded = self.decoded if self.decoded and self.decoded.index == reference.index else None
        pieces = self.pieces or (Piece(-math.inf, math.inf, self.mapping),)
        half = self.params.fade * OUTPUT_RATE / 2
        sources = []
        for k, piece in enumerate(pieces):
            m = piece.mapping
            lo = (m.dance_time(ref_start) - origin) * OUTPUT_RATE
            hi = (m.dance_time(ref_end) - origin) * OUTPUT_RATE
            if k > 0:
                lo = max(lo, (piece.start - origin) * OUTPUT_RATE - half)
            if k < len(pieces) - 1:
                hi = min(hi, (piece.end - origin) * OUTPUT_RATE + half)
            sources.append(
                Source(
                    self.bgm.path,
                    reference.index,
                    m.bgm_time(origin),
                    m.scale,
                    span=(lo, hi),
                    decoded=decoded,
                    pitch_kept=m.pitch_kept,
                )
            )
        live = self.params.live_mix_db
        if live is not None and self.dance.audio is not None:
            gain = 10 ** (live / 20)
            sources.append(Source(self.dance.path, self.dance.audio.index, origin, 1.0, gain))
        elif live is not None:
            log.warning("the dance file has no audio to mix in")
        return AudioPlan(
            sources=tuple(sources),
            samples=max(AAC_FRAME, round((end - origin) * OUTPUT_RATE)),
            fade=round(self.params.fade * OUTPUT_RATE),
            bitrate=self.params.audio_bitrate,
        )

    def _result(self, written: WrittenVideo, muxer: Muxer, *, copied: bool) -> RenderedOutput:
        origin, start, end = written.origin, written.start, written.end
        return RenderedOutput(
            path="",
            size_bytes=0,
            duration=max(self.seconds(end - origin), muxer.audio_seconds),
            video_start=self.seconds(start),
            video_end=self.seconds(end),
            video_codec=self.video.codec if copied else "h264",
            video_copied=copied,
            width=written.width,
            height=written.height,
            rotation=self.video.rotation,
            frames=written.frames,
            audio_codec="aac",
            sample_rate=OUTPUT_RATE,
            channels=2,
            first_frame_time=self.seconds(start - origin),
        )

    def _copy(self, dst: OutputContainer, muxer: Muxer) -> WrittenVideo:
        path, index = self.dance.path, self.video.index
        container, packets = from_keyframe(path, index, self.ticks(self.cut.start))
        with container:
            source = video_stream(container, index)
            stream = dst.add_stream_from_template(source)
            if self.video.codec == "hevc":
                stream.codec_tag = "hvc1"  # Apple players refuse hev1
            key = next(packets)
            origin, start, end_pts = self._copy_span(key)
            out = VideoOut(muxer, stream, self.tb)
            out.origin = origin
            self._start_audio(muxer, origin, end_pts)
            selector = RunSelector(start, self.ticks(self.cut.end))
            for packet in chain([key], packets):
                chosen = selector.feed(packet)
                if chosen is None:
                    break
                for p in chosen:
                    out.put(p)
            for p in selector.finish():
                out.put(p)
            end_pts = out.close(end_pts)
            width, height = source.codec_context.width, source.codec_context.height
        return WrittenVideo(origin, start, end_pts, width, height, out.frames)
