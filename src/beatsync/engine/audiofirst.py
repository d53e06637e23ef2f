"""``sync_audio_first()``: the server path's alignment and cut for a client that keeps its video.

The client sends the class video's sound (its AAC packets re-wrapped, same timeline), a manifest
of the picture's sample tables and thumbnails of its keyframes. The run aligns and cuts exactly
as :func:`~.pipeline.sync` does, chooses the video samples a stream copy of the cut takes with
the same rules (:mod:`.videocopy` over packets built from the manifest), and writes only the
clean audio track, placed against the first copied sample as :mod:`.render` places it: the
client muxes samples ``[first_sample, end_sample)``, decode times shifted so the first is 0,
with the track's AAC packets as they are, and has the server render's file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import av

from .cut.clientframes import ClientFrames, FetchFrames, FramesUnavailableError
from .cut.picture import Thumb
from .cut.trim import Cut, find_cut
from .errors import BeatSyncError, ManifestError, OptionsError, ProcessingError
from .media.audiosource import OUTPUT_RATE
from .media.decode import decode_audio
from .media.manifest import Manifest
from .media.movtime import VideoTimeline, video_timeline
from .media.probe import MediaInfo, VideoInfo, probe
from .media.reference import decode_reference, reference_memory
from .output.audiotrack import AAC_FRAME, AudioPlan, AudioTrack
from .output.outfile import part_path, publish
from .output.render import RenderedOutput, audio_plan
from .output.videocopy import RunSelector, dts_of, pts_of, run_end, scan_keyframe
from .pipeline import SyncOptions, SyncResult, align_step, write_artifacts
from .progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from .output.videocopy import Packet

__all__ = ["AudioFirstResult", "CopyRun", "copy_run", "sync_audio_first"]

log = logging.getLogger(__name__)

# The sound and the picture tables come from one file: their lengths agree to about a frame
# or an audio packet, rarely more than a few tenths of a second on phones.
_DURATION_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class CopyRun:
    """The samples a stream copy takes, by source sample index in decode order.

    ``first_sample`` is the keyframe the copy starts from, ``end_sample`` one past the last
    sample copied; ``excluded`` lists samples in between that the copy leaves out (leading
    pictures of an open GOP shown before the keyframe; usually none). ``origin``, ``start`` and
    ``end`` are the first sample's decode time, its presentation time and the end of the last
    frame (track ticks); ``audio_end`` is where the render ends the audio (``end``, unless the
    last frame had to be lengthened).
    """

    first_sample: int
    end_sample: int
    excluded: tuple[int, ...]
    origin: int
    start: int
    end: int
    frames: int
    audio_end: int


@dataclass(frozen=True, slots=True)
class AudioFirstResult:
    """An audio-first run: the usual result (its ``output`` describes the assembled file the
    client makes, with ``path`` the audio track) and the samples to copy."""

    sync: SyncResult
    run: CopyRun
    audio_path: Path
    audio_duration: float
    thumbnails: dict[int, Thumb]


class _Packet:
    """What :mod:`.videocopy` reads of a packet, built from the manifest's tables."""

    __slots__ = ("dts", "duration", "is_keyframe", "pts", "sample", "size")

    def __init__(self, tl: VideoTimeline, i: int) -> None:
        self.dts, self.pts = int(tl.dts[i]), int(tl.pts[i])
        self.is_keyframe = bool(tl.key[i])
        self.duration = int(tl.duration_ticks[i])
        self.sample = int(tl.sample[i])
        self.size = 1


def _packets(tl: VideoTimeline, begin: int = 0) -> Iterator[Packet]:
    return (cast("Packet", _Packet(tl, i)) for i in range(begin, len(tl)))


def copy_run(tl: VideoTimeline, cut: Cut, *, fps: float) -> CopyRun:
    """The packets :func:`~.render.render`'s stream copy takes for ``cut`` (seconds)."""

    start_ts, end_ts = _ticks(cut.start, tl), _ticks(cut.end, tl)
    found = scan_keyframe(_packets(tl), start_ts, from_start=True)
    if found is None:
        raise ProcessingError("the video has no keyframe to start from")
    key = next(found)
    origin, start = dts_of(key), pts_of(key)
    # The end, as end_of_run reads it: from the keyframe shown at or before the cut's end.
    tail = scan_keyframe(_packets(tl), end_ts, from_start=True)
    frame = max(1, round(1 / (fps * float(tl.time_base)))) if fps > 0 else 1
    end = run_end(tail, start, end_ts, copy=True, frame_ticks=frame) if tail else start + frame
    selector = RunSelector(start, end_ts)
    chosen: list[int] = []
    for packet in chain([key], found):
        picked = selector.feed(packet)
        if picked is None:
            break
        chosen += [cast("_Packet", p).sample for p in picked]
    chosen += [cast("_Packet", p).sample for p in selector.finish()]
    # The render plans the audio up to ``end`` and then gives a last frame that would end
    # before it starts one tick.
    shown_end = max(end, selector.top + 1)
    first = cast("_Packet", key).sample
    inside = set(chosen)
    stop = max(chosen) + 1
    return CopyRun(
        first_sample=first,
        end_sample=stop,
        excluded=tuple(s for s in range(first, stop) if s not in inside),
        origin=origin,
        start=start,
        end=shown_end,
        frames=len(chosen),
        audio_end=end,
    )


def _ticks(seconds: float, tl: VideoTimeline) -> int:
    """Seconds to track ticks, rounded as the render rounds them."""
    return math.floor(seconds / tl.time_base + 1e-6)


def dance_info(audio: MediaInfo, manifest: Manifest, tl: VideoTimeline) -> MediaInfo:
    """The class video as :func:`~.probe.probe` would describe it: the picture from the
    manifest, the sound from the uploaded audio.

    Raises
    ------
    ManifestError
        When the manifest's durations or audio contradict the uploaded sound.
    """
    a = audio.audio
    if a is None:
        raise ManifestError("the audio upload has no audio track")
    v = manifest.video
    if a.codec == "aac" and a.sample_rate != manifest.audio.sample_rate:
        raise ManifestError(
            f"video_manifest.audio.sample_rate: {manifest.audio.sample_rate} Hz, "
            f"the audio upload has {a.sample_rate} Hz"
        )
    heard = a.start_time + (a.duration or audio.duration)
    if abs(heard - manifest.duration) > _DURATION_TOLERANCE_S:
        raise ManifestError(
            f"video_manifest.duration: {manifest.duration:.3f} s, but the audio upload lasts "
            f"{heard:.3f} s"
        )
    if tl.start + tl.duration > manifest.duration + _DURATION_TOLERANCE_S:
        raise ManifestError(
            f"video_manifest.video: the samples last until {tl.start + tl.duration:.3f} s, "
            f"past the movie's {manifest.duration:.3f} s"
        )
    has_b = bool((tl.pts[1:] < tl.pts[:-1]).any()) if len(tl) > 1 else False
    video = VideoInfo(
        index=0,
        codec=v.ffmpeg_codec,
        width=v.width,
        height=v.height,
        fps=len(tl) / tl.duration if tl.duration > 0 else 0.0,
        variable_frame_rate=len({int(d) for d in tl.duration_ticks[:-1]}) > 1,
        rotation=v.rotation,
        # Unknown here and unused: the client's copy keeps the file's own colour boxes.
        pix_fmt=None,
        color_range=0,
        color_primaries=2,
        color_trc=2,
        colorspace=2,
        bit_rate=None,
        time_base=tl.time_base,
        start_time=tl.start,
        duration=tl.duration,
        has_b_frames=has_b,
        frames=len(tl),
    )
    return MediaInfo(
        path=audio.path,
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=audio.size_bytes,
        duration=manifest.duration,
        start_time=min(tl.start, a.start_time),
        video=video,
        audio=a,
    )


def write_audio_track(plan: AudioPlan, out: Path) -> float:
    """Encode ``plan`` into an M4A (no edit list, first packet at 0); its length in seconds."""
    tmp = part_path(out)
    track = AudioTrack(plan)
    try:
        with av.open(str(tmp), "w", format="ipod", options={"use_editlist": "0"}) as dst:
            stream = dst.add_stream("aac", rate=OUTPUT_RATE)
            stream.layout = "stereo"
            stream.bit_rate = plan.bitrate
            for packet in track.packets:
                packet.stream = stream
                dst.mux(packet)
        publish(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, BeatSyncError) or not isinstance(exc, Exception):
            raise
        raise ProcessingError(f"writing the audio track failed: {exc}") from exc
    finally:
        track.stop()
    return plan.packets * AAC_FRAME / OUTPUT_RATE


def copied_output(
    out_path: Path, run: CopyRun, video: VideoInfo, *, seconds: float, duration: float
) -> RenderedOutput:
    """What the client assembles: ``run``'s pictures of ``video`` with the track at
    ``out_path`` (``duration`` s long); ``seconds`` is one tick of the picture's timeline."""
    return RenderedOutput(
        path=str(out_path),
        size_bytes=out_path.stat().st_size,
        duration=max((run.end - run.origin) * seconds, duration),
        video_start=run.start * seconds,
        video_end=run.end * seconds,
        video_codec=video.codec,
        video_copied=True,
        width=video.width,
        height=video.height,
        rotation=video.rotation,
        frames=run.frames,
        audio_codec="aac",
        sample_rate=OUTPUT_RATE,
        channels=2,
        first_frame_time=(run.start - run.origin) * seconds,
    )


def sync_audio_first(
    audio: str | os.PathLike[str],
    bgm: str | os.PathLike[str],
    manifest: Manifest,
    out: str | os.PathLike[str],
    *,
    keyframes: dict[int, Thumb],
    fetch: FetchFrames | None = None,
    options: SyncOptions | None = None,
    on_progress: ProgressCallback | None = None,
    report: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
) -> AudioFirstResult:
    """Align the class video's sound with the reference, cut, and write the clean audio track.

    Parameters
    ----------
    audio
        The class video's sound (an M4A of its AAC packets, or any audio the engine reads, on
        the video's timeline).
    bgm
        The reference.
    manifest
        The video's sample tables (:func:`~.manifest.parse_manifest`).
    out
        The M4A to write: AAC-LC 48 kHz stereo, first packet at 0, no edit list.
    keyframes
        Thumbnail of every keyframe by source sample index
        (:func:`~.clientframes.split_thumbnails`).
    fetch
        Asked for other frames' thumbnails when the picture at an edge must be checked frame by
        frame; it may raise :class:`BeatSyncError`, and then the cut ignores the picture.
    options, on_progress, report, plot
        As for :func:`~.pipeline.sync` (``render.reencode`` does not apply).

    Raises
    ------
    ManifestError
        The manifest contradicts the uploaded sound.
    InputError, MusicMismatchError, OptionsError, ProcessingError
        As :func:`~.pipeline.sync`.
    """
    opts = options or SyncOptions()
    if opts.render.reencode:
        raise OptionsError("reencode does not apply to an audio-first job: the client copies")
    if opts.start is not None and opts.end is not None and opts.end <= opts.start:
        raise OptionsError(f"--end ({opts.end}) must be after --start ({opts.start})")
    progress = Progress(on_progress)
    out_path = Path(out)
    with progress.stage("probe", "reading the files"):
        tl = video_timeline(manifest.video, manifest.movie_timescale)
        dance = dance_info(probe(audio, require_audio=True), manifest, tl)
        bgm_info = probe(bgm, require_audio=True)
    with contextlib.ExitStack() as stack:
        # The reference's own samples are kept while it is decoded, as the server path keeps
        # them, so the track is made from the very same numbers.
        decoded = reference_memory(bgm_info)
        if decoded is not None:
            stack.callback(decoded.close)
        with progress.stage("decode", "decoding the audio"):
            dance_audio = decode_audio(dance.path)
            bgm_audio, collected = decode_reference(bgm_info.path, decoded)
        reference = None
        if decoded is not None and collected is not None:
            decoded.span, reference = collected, decoded
        with progress.stage("align", "finding the music in the recording"):
            alignment, mapping, pieces = align_step(dance_audio, bgm_audio, opts)
            del dance_audio, bgm_audio
        frames = ClientFrames(tl, keyframes, fetch)
        with progress.stage("trim", "choosing the cut"):
            args: dict[str, Any] = {
                "start": opts.start,
                "end": opts.end,
                "trim": opts.trim,
                "pieces": pieces,
            }
            try:
                cut = find_cut(dance, bgm_info, mapping, alignment.music, frames=frames, **args)
            except FramesUnavailableError as exc:
                log.warning("the picture at the edges is not checked: %s", exc)
                cut = find_cut(dance, bgm_info, mapping, alignment.music, picture=False, **args)
            assert dance.video is not None
            run = copy_run(tl, cut, fps=dance.video.fps)
        with progress.stage("render", "writing the audio track"):
            seconds = float(tl.time_base)
            plan = audio_plan(
                dance,
                bgm_info,
                mapping=mapping,
                origin=run.origin * seconds,
                end=run.audio_end * seconds,
                params=opts.render,
                decoded=reference,
                pieces=pieces,
            )
            duration = write_audio_track(plan, out_path)
    output = copied_output(out_path, run, dance.video, seconds=seconds, duration=duration)
    result = SyncResult(
        dance=dance,
        bgm=bgm_info,
        alignment=alignment,
        mapping=mapping,
        cut=cut,
        output=output,
        timings=tuple(progress.timings),
        pieces=pieces,
    )
    result = write_artifacts(result, out_path, report=report, plot=plot, poster=None)
    progress.report("done", 1.0, "done")
    log.info(
        "audio track %s: offset %.4f s, confidence %.2f, samples %d–%d",
        out_path.name,
        mapping.offset,
        alignment.confidence,
        run.first_sample,
        run.end_sample,
    )
    return AudioFirstResult(result, run, out_path, duration, frames.known)
