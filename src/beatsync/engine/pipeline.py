"""``sync()``: probe → decode → align → trim → render → done, with progress and a typed result."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cut.trim import find_cut
from .errors import BeatSyncError, OptionsError, ProcessingError
from .mapping import Mapping
from .media.decode import Audio, decode_audio
from .media.forked import ForkedCall
from .media.probe import probe
from .media.reference import decode_reference, reference_memory
from .output.render import RenderParams, render, start_audio
from .piece import Piece
from .progress import STAGES, Progress, ProgressCallback
from .result import StageTiming, SyncResult

if TYPE_CHECKING:
    from .alignment.align import Alignment

__all__ = ["STAGES", "ProgressCallback", "StageTiming", "SyncOptions", "SyncResult", "sync"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """What the caller may decide.

    ``offset``: a reference time (s) at dance time 0 given by a person; the search stays near it.
    ``mapping``: use this mapping as it is (another candidate), no search.
    ``pieces``: use these pieces of an edit as they are (an earlier answer), no search; their
    seams stay where they are.
    ``nudge_ms``: play the reference this much later (positive) or earlier against the picture
    (every piece of an edit alike).
    ``start``/``end``: cut edges in dance seconds; ``trim=False`` keeps the whole video.
    """

    offset: float | None = None
    mapping: Mapping | None = None
    pieces: tuple[Piece, ...] | None = None
    nudge_ms: float = 0.0
    start: float | None = None
    end: float | None = None
    trim: bool = True
    render: RenderParams = field(default_factory=RenderParams)


def sync(
    dance: str | os.PathLike[str],
    bgm: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    options: SyncOptions | None = None,
    on_progress: ProgressCallback | None = None,
    report: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    poster: str | os.PathLike[str] | None = None,
) -> SyncResult:
    """Put the reference's audio under the dance video, in sync, trimmed to the music.

    Parameters
    ----------
    dance
        The class video (needs a video and an audio stream).
    bgm
        The reference video or audio file (needs an audio stream).
    out
        Where to write the MP4. Nothing is left there if the run fails.
    options
        Overrides: a known offset, a mapping to use, a nudge, cut edges, render settings.
    on_progress
        Called as ``(stage, fraction, message)``; stages run probe → decode → align → trim →
        render → done and the fraction never decreases.
    report, plot, poster
        Optional paths for the JSON report, the alignment plot (PNG) and a poster frame (JPEG).

    Raises
    ------
    InputError
        An input cannot be used (missing, not media, no audio or video track).
    MusicMismatchError
        The two files do not share the music.
    OptionsError
        The options contradict each other or the media.
    ProcessingError
        Anything else that went wrong while rendering.
    """
    opts = options or SyncOptions()
    if opts.start is not None and opts.end is not None and opts.end <= opts.start:
        raise OptionsError(f"--end ({opts.end}) must be after --start ({opts.start})")
    progress = Progress(on_progress)
    out_path = Path(out)
    with contextlib.ExitStack() as stack:
        with progress.stage("probe", "reading the files"):
            bgm_info = probe(bgm, require_audio=True)
            # Decoding holds the interpreter lock for most of its time (two decoding threads
            # measured slower than one), so the reference decodes in a forked child on the
            # other core, from now on. In the same pass the child keeps the reference's own
            # samples in shared memory: the render reads them instead of decoding the file
            # again on its busiest cores.
            decoded = reference_memory(bgm_info)
            if decoded is not None:
                stack.callback(decoded.close)
            bgm_decoding = stack.enter_context(ForkedCall(decode_reference, bgm_info.path, decoded))
            dance_info = probe(dance, require_video=True, require_audio=True)
        with progress.stage("decode", "decoding the audio"):
            dance_audio = decode_audio(dance_info.path)
            progress.report("decode", 0.5, "decoding the audio")
            # SciPy loads while the child may still be decoding.
            importlib.import_module(".alignment.align", __package__)
            bgm_audio, collected = bgm_decoding.result()
        reference = None
        if decoded is not None and collected is not None:
            decoded.span, reference = collected, decoded
        with progress.stage("align", "finding the music in the recording"):
            alignment, mapping, pieces = align_step(dance_audio, bgm_audio, opts)
            del dance_audio, bgm_audio
        cut_for = functools.partial(
            find_cut,
            dance_info,
            bgm_info,
            mapping,
            alignment.music,
            start=opts.start,
            end=opts.end,
            trim=opts.trim,
            pieces=pieces,
        )
        with progress.stage("trim", "choosing the cut"):
            # The audio encoders start on the cut the music and the reference give, while the
            # picture at its edges is checked; unless that moves an edge, the render adopts them.
            early = stack.enter_context(
                start_audio(
                    dance_info,
                    bgm_info,
                    mapping=mapping,
                    cut=cut_for(picture=False),
                    params=opts.render,
                    decoded=reference,
                    pieces=pieces,
                )
            )
            cut = cut_for()
        with progress.stage("render", "writing the video"):
            output = render(
                dance_info,
                bgm_info,
                out_path,
                mapping=mapping,
                cut=cut,
                params=opts.render,
                on_progress=lambda f: progress.report("render", 0.9 * f, "writing the video"),
                early=early,
                decoded=reference,
                pieces=pieces,
            )
    result = SyncResult(
        dance=dance_info,
        bgm=bgm_info,
        alignment=alignment,
        mapping=mapping,
        cut=cut,
        output=output,
        timings=tuple(progress.timings),
        pieces=pieces,
    )
    result = write_artifacts(result, out_path, report=report, plot=plot, poster=poster)
    progress.report("done", 1.0, "done")
    log.info(
        "synced %s: offset %.4f s, drift %.1f ppm, confidence %.2f, cut %.3f–%.3f s",
        out_path.name,
        mapping.offset,
        mapping.drift_ppm,
        alignment.confidence,
        cut.start,
        cut.end,
    )
    return result


def align_step(
    dance: Audio, bgm: Audio, opts: SyncOptions
) -> tuple[Alignment, Mapping, tuple[Piece, ...]]:
    """The alignment the options ask for (a search, or an earlier answer assessed), with the
    main mapping and every piece nudged as they will be rendered."""
    from .alignment.align import AlignParams, align_signals, assess_mapping

    if opts.pieces:
        main = max(opts.pieces, key=lambda p: p.duration).mapping
        alignment = assess_mapping(dance, bgm, main, pieces=opts.pieces)
    elif opts.mapping is not None:
        alignment = assess_mapping(dance, bgm, opts.mapping)
    else:
        alignment = align_signals(dance, bgm, params=AlignParams(offset_hint=opts.offset))
    pieces = tuple(p.nudged(opts.nudge_ms) for p in alignment.parts)
    return alignment, alignment.mapping.nudged(opts.nudge_ms), pieces


def write_artifacts(
    result: SyncResult,
    out: Path,
    *,
    report: str | os.PathLike[str] | None,
    plot: str | os.PathLike[str] | None,
    poster: str | os.PathLike[str] | None,
) -> SyncResult:
    """Write the report, plot and poster asked for; on failure none of them, nor ``out``, is
    left behind."""
    try:
        return _write_artifacts(result, report=report, plot=plot, poster=poster)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _write_artifacts(
    result: SyncResult,
    *,
    report: str | os.PathLike[str] | None,
    plot: str | os.PathLike[str] | None,
    poster: str | os.PathLike[str] | None,
) -> SyncResult:
    from .output.plot import write_plot
    from .output.poster import write_poster
    from .output.report import write_report

    written: list[Path] = []
    try:
        if poster is not None:
            middle = (result.cut.start + result.cut.end) / 2
            written.append(write_poster(result.dance, Path(poster), at=middle))
            result = dataclasses.replace(result, poster_path=written[-1])
        if plot is not None:
            written.append(write_plot(result, Path(plot)))
            result = dataclasses.replace(result, plot_path=written[-1])
        if report is not None:
            result = dataclasses.replace(result, report_path=Path(report))
            written.append(write_report(result, Path(report)))
    except BeatSyncError:
        _remove(written)
        raise
    except Exception as exc:
        _remove(written)
        raise ProcessingError(f"writing the run's artifacts failed: {exc}") from exc
    return result


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
