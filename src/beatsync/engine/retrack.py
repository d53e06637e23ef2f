"""``retrack()``: another clean audio track for an audio-first answer already given (a nudge).

A nudge moves the music, not the picture: the earlier run's cut and the samples its client
copies stay as they were, and only the track is placed again and encoded. No search, no
assessment, no cut and no picture are needed, so the run is the reference's decode and the
encode: the track is the one :func:`~.audiofirst.sync_audio_first` writes for the same mapping
and copied samples, packet for packet.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audiofirst import CopyRun, copied_output, dance_info, write_audio_track
from .errors import OptionsError
from .mapping import Mapping
from .media.audiosource import DecodedStream
from .media.forked import ForkedCall
from .media.manifest import Manifest
from .media.movtime import video_timeline
from .media.probe import probe
from .media.reference import keep_reference, reference_memory
from .output.render import RenderedOutput, RenderParams, audio_plan
from .output.report import adjustment_between, mapping_json, output_json
from .piece import Piece
from .result import StageTiming

__all__ = ["Retracked", "retrack", "retracked_report"]


@dataclass(frozen=True, slots=True)
class Retracked:
    """The new track: the assembled file's facts (``output.path`` is the track), its length
    (s) and the stages' times."""

    output: RenderedOutput
    audio_duration: float
    timings: tuple[StageTiming, ...]


def retrack(
    audio: str | os.PathLike[str],
    bgm: str | os.PathLike[str],
    manifest: Manifest,
    out: str | os.PathLike[str],
    *,
    run: CopyRun,
    mapping: Mapping,
    pieces: tuple[Piece, ...] | None = None,
    params: RenderParams | None = None,
) -> Retracked:
    """Write the clean audio track for ``run``'s samples with the music placed by ``mapping``.

    Parameters
    ----------
    audio
        The class video's sound (as for :func:`~.audiofirst.sync_audio_first`).
    bgm
        The reference.
    manifest
        The video's sample tables.
    out
        The M4A to write: AAC-LC 48 kHz stereo, first packet at 0, no edit list.
    run
        The copied samples of the earlier answer (:func:`~.audiofirst.copy_run`).
    mapping, pieces
        The mapping (an edit's pieces) as rendered: with the nudge already in them.
    params
        Fades, bitrate and live mix; ``reencode`` does not apply.

    Raises
    ------
    ManifestError
        The manifest contradicts the sound.
    OptionsError
        A mapping, run or params that cannot be rendered.
    """
    opts = params or RenderParams()
    if opts.reencode:
        raise OptionsError("reencode does not apply to an audio-first job: the client copies")
    timings: list[StageTiming] = []
    began = time.perf_counter()
    tl = video_timeline(manifest.video, manifest.movie_timescale)
    dance = dance_info(probe(audio, require_audio=True), manifest, tl)
    bgm_info = probe(bgm, require_audio=True)
    timings.append(StageTiming("probe", round(time.perf_counter() - began, 4)))
    seconds = float(tl.time_base)
    out_path = Path(out)
    with contextlib.ExitStack() as stack:
        # The reference's own samples are read as the first run read them (one pass that keeps
        # them), so the track is made from the very same numbers; nothing is aligned, so they
        # are all the pass keeps. A child process makes the pass beside the encoders, which
        # wait for what it has not reached yet: the first segment starts at once.
        decoded = reference_memory(bgm_info)
        filling = None
        if decoded is not None:
            stack.callback(decoded.close)
            decoded.begin_filling()
            filling = stack.enter_context(ForkedCall(_keep_timed, bgm_info.path, decoded))
            if not filling.forked:  # no child to be had: the pass first, then the encoders
                decoded.span, spent = filling.result()
                timings.append(StageTiming("decode", spent))
                filling = None
        began = time.perf_counter()
        kwargs: dict[str, Any] = {
            "mapping": mapping,
            "origin": run.origin * seconds,
            "end": run.audio_end * seconds,
            "params": opts,
            "pieces": pieces if pieces and len(pieces) > 1 else None,
        }
        reference = decoded if decoded is not None and decoded.span is not None else None
        plan = audio_plan(dance, bgm_info, decoded=reference, **kwargs)
        duration = write_audio_track(plan, out_path)
        if filling is not None and decoded is not None:
            decoded.span, spent = filling.result()
            timings.insert(1, StageTiming("decode", spent))  # beside the render, in a child
            if decoded.span is None or decoded.stalled:
                # The pass gave the stream up (it runs past its stated length): a whole run
                # then decodes the file while it renders, and so does this one. Or an encoder
                # read on without it (it stalled): the memory is complete now.
                reference = decoded if decoded.span is not None else None
                plan = audio_plan(dance, bgm_info, decoded=reference, **kwargs)
                duration = write_audio_track(plan, out_path)
        timings.append(StageTiming("render", round(time.perf_counter() - began, 4)))
    assert dance.video is not None
    output = copied_output(out_path, run, dance.video, seconds=seconds, duration=duration)
    return Retracked(output, duration, tuple(timings))


def _keep_timed(path: str, decoded: DecodedStream) -> tuple[tuple[int, int] | None, float]:
    """:func:`~.reference.keep_reference`, and how long it took (s)."""
    began = time.perf_counter()
    collected = keep_reference(path, decoded)
    return collected, round(time.perf_counter() - began, 4)


def _mapping_of(entry: dict[str, Any]) -> Mapping:
    return Mapping(float(entry["offset_s"]), float(entry["scale"]), bool(entry.get("pitch_kept")))


def retracked_report(
    previous: dict[str, Any],
    done: Retracked,
    *,
    mapping: Mapping,
    pieces: tuple[Piece, ...] | None = None,
) -> dict[str, Any]:
    """The earlier run's report (:func:`~.report.report_dict`) for the new track: the same
    inputs, alignment, cut and music, with the mapping, pieces, adjustment, output and timings
    of :func:`retrack` (``mapping`` and ``pieces`` as given to it)."""
    report = copy.deepcopy(previous)
    found = previous["alignment"]
    adjustment = adjustment_between(
        _mapping_of(found["mapping"]), [_mapping_of(c) for c in found["candidates"]], mapping
    )
    report["mapping"] = mapping_json(mapping)
    report["adjustment"] = {
        "differs": adjustment.differs,
        "kind": adjustment.kind,
        "candidate": adjustment.candidate,
        "nudge_ms": adjustment.nudge_ms,
    }
    given = pieces if pieces and len(pieces) > 1 else None
    report["pieces"] = [
        {**p, **mapping_json(given[i].mapping if given else mapping)}
        for i, p in enumerate(previous["pieces"])
    ]
    report["output"] = output_json(done.output)
    report["timings"] = {
        "stages": [{"stage": t.stage, "seconds": t.seconds} for t in done.timings],
        "total_s": round(sum(t.seconds for t in done.timings), 6),
    }
    return report
