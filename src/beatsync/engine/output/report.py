"""The JSON report of one run: what was found, what was used, what was written, how long it took.

The layout is described by ``docs/report-schema.json`` and versioned by
:data:`REPORT_SCHEMA_VERSION`; bump it whenever a field changes meaning or disappears. Times are
seconds rounded to the microsecond, drifts ppm rounded to 0.1, and every value is a plain JSON type.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from beatsync import __version__

from ..errors import ProcessingError
from ..piece import Piece, bgm_times

if TYPE_CHECKING:
    from ..alignment.align import Alignment, Mapping, WindowTrack
    from ..media.probe import MediaInfo
    from ..result import SyncResult
    from .render import RenderedOutput

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "Adjustment",
    "adjustment_between",
    "describe_adjustment",
    "mapping_json",
    "output_json",
    "report_dict",
    "window_residuals_ms",
    "write_atomically",
    "write_report",
]

logger = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1

# Two mappings closer than this are the same answer (1 µs in offset, 0.001 ppm in scale).
_SAME_OFFSET_S = 1e-6
_SAME_SCALE = 1e-9
# A used mapping this close in offset to a found one (same scale) reads as a nudge of it.
_MAX_NUDGE_S = 1.0


@dataclass(frozen=True, slots=True)
class Adjustment:
    """How the mapping used for the output relates to what the search found.

    ``kind`` is ``"none"`` (the found mapping as is), ``"nudge"`` (the found mapping shifted by
    ``nudge_ms``), ``"candidate"`` (runner-up number ``candidate`` of the found candidates, possibly
    nudged by ``nudge_ms``) or ``"manual"`` (a mapping given by a person; ``nudge_ms`` is None).
    A positive ``nudge_ms`` plays the reference later against the picture.
    """

    kind: str
    candidate: int | None
    nudge_ms: float | None

    @property
    def differs(self) -> bool:
        return self.kind != "none"


def describe_adjustment(alignment: Alignment, used: Mapping) -> Adjustment:
    """Tell how ``used`` was derived from ``alignment``'s answers.

    Parameters
    ----------
    alignment
        What the search found: the best mapping and the ranked candidates.
    used
        The mapping the output was rendered with.

    Returns
    -------
    Adjustment
        Inferred from the numbers alone: the nearest found mapping of the same scale whose offset
        lies within one second of ``used`` is taken as its base.
    """
    return adjustment_between(alignment.mapping, [c.mapping for c in alignment.candidates], used)


def adjustment_between(found: Mapping, candidates: list[Mapping], used: Mapping) -> Adjustment:
    """:func:`describe_adjustment` from the found mapping and the candidates' mappings."""
    alignment_mapping = found
    bases: list[tuple[int | None, Mapping]] = [(None, found)]
    bases += list(enumerate(candidates))
    same_scale = [(i, m) for i, m in bases if abs(m.scale - used.scale) <= _SAME_SCALE]
    if same_scale:
        # The found mapping wins ties: it is listed first and min() keeps the first minimum.
        index, base = min(same_scale, key=lambda item: abs(item[1].offset - used.offset))
        shift = base.offset - used.offset
        if abs(shift) <= _SAME_OFFSET_S:
            if index is None or _same(base, alignment_mapping):
                return Adjustment("none", None, 0.0)
            return Adjustment("candidate", index, 0.0)
        if abs(shift) <= _MAX_NUDGE_S:
            nudge_ms = _round(shift * 1000.0, 3)
            if index is None or _same(base, alignment_mapping):
                return Adjustment("nudge", None, nudge_ms)
            return Adjustment("candidate", index, nudge_ms)
    return Adjustment("manual", None, None)


def window_residuals_ms(
    windows: WindowTrack, mapping: Mapping, pieces: tuple[Piece, ...] | None = None
) -> NDArray[np.float64]:
    """Each window's lag minus the lag the mapping (the piece's, for an edit) predicts there.

    Parameters
    ----------
    windows
        Fine lags: ``times`` (dance s) and ``lags`` (reference time − dance time, s), shape (n,).
    mapping
        The line to compare against; its lag at dance time ``t`` is ``offset + (scale − 1)·t``.
    pieces
        An edit's pieces: each window is compared with the line of the piece that holds it.

    Returns
    -------
    ndarray, shape (n,)
        Residuals in milliseconds; positive when the window heard the reference later.
    """
    times = np.asarray(windows.times, dtype=np.float64)
    lags = np.asarray(windows.lags, dtype=np.float64)
    if pieces and len(pieces) > 1:
        predicted = bgm_times(pieces, times) - times
    else:
        predicted = mapping.offset + (mapping.scale - 1.0) * times
    return (lags - predicted) * 1000.0


def report_dict(result: SyncResult) -> dict[str, Any]:
    """The report of one run as plain JSON values (see ``docs/report-schema.json``).

    Parameters
    ----------
    result
        What :func:`beatsync.engine.pipeline.sync` returned.

    Returns
    -------
    dict
        Only ``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``; times in
        seconds (``*_s``), drifts in ppm, confidences and supports in [0, 1].
    """
    alignment = result.alignment
    adjustment = describe_adjustment(alignment, result.mapping)
    music, cut = alignment.music, result.cut
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool": {"name": "beatsync", "version": __version__},
        "inputs": {"dance": _media(result.dance), "bgm": _media(result.bgm)},
        "mapping": _mapping(result.mapping),
        "adjustment": {
            "differs": adjustment.differs,
            "kind": adjustment.kind,
            "candidate": adjustment.candidate,
            "nudge_ms": adjustment.nudge_ms,
        },
        "alignment": {
            "mapping": _mapping(alignment.mapping),
            "confidence": _round(alignment.confidence, 4),
            "significance": _round(alignment.significance, 2),
            "candidates": [
                {
                    **_mapping(c.mapping),
                    "confidence": _round(c.confidence, 4),
                    "support": _round(c.support, 4),
                }
                for c in alignment.candidates
            ],
            "windows": _windows(alignment),
        },
        "cut": {
            "start_s": _s(cut.start),
            "end_s": _s(cut.end),
            "duration_s": _s(cut.duration),
            "start_reason": cut.start_reason,
            "end_reason": cut.end_reason,
            "start_certainty": _round(cut.start_evidence.certainty, 4),
            "end_certainty": _round(cut.end_evidence.certainty, 4),
            "start_unheard_s": _round(cut.start_evidence.unheard, 3),
            "end_unheard_s": _round(cut.end_evidence.unheard, 3),
        },
        "music": {
            "start_s": _s(music.start),
            "end_s": _s(music.end),
            "duration_s": _s(music.duration),
        },
        "pieces": [
            {
                "start_s": _s(p.start),
                "end_s": _s(p.end),
                "duration_s": _s(p.duration),
                **_mapping(p.mapping),
            }
            for p in result.parts
        ],
        "output": _output(result),
        "timings": {
            "stages": [{"stage": t.stage, "seconds": _s(t.seconds)} for t in result.timings],
            "total_s": _s(sum(t.seconds for t in result.timings)),
        },
        "artifacts": {
            "video": result.output.path,
            "report": _path(result.report_path),
            "plot": _path(result.plot_path),
            "poster": _path(result.poster_path),
        },
    }


def write_report(result: SyncResult, path: Path) -> Path:
    """Write the report of ``result`` as UTF-8 JSON to ``path``, all at once or not at all.

    The report names ``path`` as its own location. Raises :class:`ProcessingError` when the file
    cannot be written.
    """
    path = Path(path)
    if result.report_path != path:
        result = replace(result, report_path=path)
    text = json.dumps(report_dict(result), indent=2, ensure_ascii=False, allow_nan=False)
    write_atomically(path, (text + "\n").encode("utf-8"))
    logger.debug("wrote report %s", path)
    return path


def write_atomically(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never half.

    The bytes go to a hidden file beside ``path`` that is renamed over it once flushed to disk.
    Raises :class:`ProcessingError` when the directory is missing or not writable.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open applies the umask, unlike tempfile's private 0600 files.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProcessingError(f"cannot write the file: {exc.strerror}", path=str(path)) from exc
    return path


def _round(value: float, digits: int) -> float | None:
    x = float(value)
    if not math.isfinite(x):
        return None
    return round(x, digits) + 0.0  # + 0.0 turns -0.0 into 0.0


def _s(value: float | None) -> float | None:
    return None if value is None else _round(value, 6)


def _path(path: Path | str | None) -> str | None:
    return None if path is None else str(path)


def _same(a: Mapping, b: Mapping) -> bool:
    return abs(a.offset - b.offset) <= _SAME_OFFSET_S and abs(a.scale - b.scale) <= _SAME_SCALE


def mapping_json(mapping: Mapping) -> dict[str, Any]:
    """A mapping as the report writes it."""
    return _mapping(mapping)


def _mapping(mapping: Mapping) -> dict[str, Any]:
    return {
        "offset_s": _s(mapping.offset),
        "scale": _round(mapping.scale, 10),
        "drift_ppm": _round(mapping.drift_ppm, 1),
        "pitch_kept": mapping.pitch_kept,
    }


def _windows(alignment: Alignment) -> dict[str, Any]:
    inlier = np.asarray(alignment.windows.inlier, dtype=bool)
    residuals = window_residuals_ms(alignment.windows, alignment.mapping, alignment.parts)[inlier]
    residuals = residuals[np.isfinite(residuals)]
    rms = float(np.sqrt(np.mean(residuals**2))) if residuals.size else None
    return {
        "count": int(inlier.size),
        "inliers": int(np.count_nonzero(inlier)),
        "inlier_rms_ms": None if rms is None else _round(rms, 3),
    }


def _media(info: MediaInfo) -> dict[str, Any]:
    video, audio = info.video, info.audio
    return {
        "path": info.path,
        "format": info.format_name,
        "size_bytes": int(info.size_bytes),
        "duration_s": _s(info.duration),
        "start_time_s": _s(info.start_time),
        "video": None
        if video is None
        else {
            "codec": video.codec,
            "width": int(video.width),
            "height": int(video.height),
            "display_width": int(video.display_size[0]),
            "display_height": int(video.display_size[1]),
            "fps": _round(video.fps, 3),
            "vfr": bool(video.variable_frame_rate),
            "rotation": int(video.rotation),
            "pix_fmt": video.pix_fmt,
            "bit_rate": None if video.bit_rate is None else int(video.bit_rate),
            "start_time_s": _s(video.start_time),
            "duration_s": _s(video.duration),
        },
        "audio": None
        if audio is None
        else {
            "codec": audio.codec,
            "sample_rate": int(audio.sample_rate),
            "channels": int(audio.channels),
            "bit_rate": None if audio.bit_rate is None else int(audio.bit_rate),
            "start_time_s": _s(audio.start_time),
            "duration_s": _s(audio.duration),
        },
    }


def _output(result: SyncResult) -> dict[str, Any]:
    return output_json(result.output)


def output_json(out: RenderedOutput) -> dict[str, Any]:
    """The written file's facts as the report writes them."""
    return {
        "path": out.path,
        "size_bytes": int(out.size_bytes),
        "duration_s": _s(out.duration),
        "video_start_s": _s(out.video_start),
        "video_end_s": _s(out.video_end),
        "video_codec": out.video_codec,
        "video_copied": bool(out.video_copied),
        "width": int(out.width),
        "height": int(out.height),
        "rotation": int(out.rotation),
        "frames": int(out.frames),
        "audio_codec": out.audio_codec,
        "sample_rate": int(out.sample_rate),
        "channels": int(out.channels),
        "first_frame_time_s": _s(out.first_frame_time),
    }
