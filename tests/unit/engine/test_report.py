"""The JSON report: the run's numbers, rounded, in plain JSON types, matching its schema."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import beatsync
from beatsync.engine.alignment.align import Alignment, Candidate, Mapping, WindowTrack
from beatsync.engine.alignment.span import MusicSpan
from beatsync.engine.cut.trim import REASONS, Cut, EdgeEvidence
from beatsync.engine.errors import ProcessingError
from beatsync.engine.media.probe import AudioInfo, MediaInfo, VideoInfo
from beatsync.engine.output.render import RenderedOutput
from beatsync.engine.output.report import (
    REPORT_SCHEMA_VERSION,
    Adjustment,
    describe_adjustment,
    report_dict,
    window_residuals_ms,
    write_report,
)
from beatsync.engine.piece import Piece
from beatsync.engine.pipeline import StageTiming, SyncResult

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "docs" / "report-schema.json"

OFFSET = 12.3456789
DRIFT_PPM = 23.44
FOUND = Mapping(OFFSET, 1.0 + DRIFT_PPM * 1e-6)
RUNNER_UP = Mapping(OFFSET + 16.0, 1.0 + DRIFT_PPM * 1e-6)
# Residuals planted in the window lags, ms; windows 2 and 5 are outliers.
PLANTED_MS = np.array([1.0, -2.0, 250.0, 2.0, -1.0, -900.0, 0.0, 0.0])
INLIER = np.array([True, True, False, True, True, False, True, True])


def _result(*, used: Mapping = FOUND, rotation: int = 90) -> SyncResult:
    # NumPy scalars where the engine's maths would hand them over: the report must unwrap them.
    times = np.arange(8, dtype=np.float64) * 2.0 + 5.0
    lags = FOUND.offset + (FOUND.scale - 1.0) * times + PLANTED_MS / 1000.0
    alignment = Alignment(
        mapping=FOUND,
        confidence=np.float64(0.87654),  # type: ignore[arg-type]
        candidates=(
            Candidate(FOUND, np.float64(0.87654), np.float32(0.75)),  # type: ignore[arg-type]
            Candidate(RUNNER_UP, 0.31, 0.125),
        ),
        windows=WindowTrack(times, lags, np.full(8, 0.5), INLIER),
        music=MusicSpan(np.float64(4.5), np.float64(21.0)),  # type: ignore[arg-type]
        activity=(times, np.full(8, 0.9)),
        envelopes=(times, np.zeros(8), np.zeros(8)),
        significance=np.float64(12.3456),  # type: ignore[arg-type]
    )
    dance_video = VideoInfo(
        0, "hevc", 1920, 1080, 29.97002997, True, rotation, "yuv420p10le", 1, 9, 16, 9,
        np.int64(12_000_000), Fraction(1, 600), 0.0, 30.0, True,  # type: ignore[arg-type]
    )  # fmt: skip
    dance_audio = AudioInfo(1, "aac", 44100, 1, 96_000, Fraction(1, 44100), 0.021333, 29.98)
    bgm_audio = AudioInfo(0, "opus", 48000, 2, None, Fraction(1, 1000), 0.0, None)
    return SyncResult(
        dance=MediaInfo("in/dance.mov", "mov,mp4,m4a,3gp,3g2,mj2", 45_000_000, 30.0, 0.0,
                        dance_video, dance_audio),
        bgm=MediaInfo("in/song.webm", "matroska,webm", 3_000_000, 200.0, -0.007, None, bgm_audio),
        alignment=alignment,
        mapping=used,
        cut=Cut(4.6, np.float64(20.9999996), "music", "reference"),  # type: ignore[arg-type]
        output=RenderedOutput(
            "out/synced.mp4", 20_000_000, 16.4, 4.5, 20.9, "hevc", True, 1920, 1080, rotation,
            np.int64(492), "aac", 48000, 2,  # type: ignore[arg-type]
        ),
        timings=(
            StageTiming("probe", 0.012),
            StageTiming("decode", 0.4),
            StageTiming("align", 0.25),
            StageTiming("trim", 0.01),
            StageTiming("render", 0.9),
            StageTiming("done", 0.0),
        ),
        plot_path=Path("out/plot.png"),
    )  # fmt: skip


def _leaves(value: Any, where: str = "$") -> list[tuple[str, type]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{where}[{i}]")]
    return [(where, type(value))]


def test_report_holds_the_runs_numbers_rounded() -> None:
    report = report_dict(_result())

    assert report["schema_version"] == REPORT_SCHEMA_VERSION == 1
    assert report["tool"] == {"name": "beatsync", "version": beatsync.__version__}
    assert report["mapping"] == {
        "offset_s": 12.345679, "scale": 1.0000234400, "drift_ppm": 23.4, "pitch_kept": False
    }  # fmt: skip
    assert report["alignment"]["mapping"] == report["mapping"]
    assert report["alignment"]["confidence"] == 0.8765
    assert report["alignment"]["significance"] == 12.35
    assert report["alignment"]["candidates"] == [
        {"offset_s": 12.345679, "scale": 1.00002344, "drift_ppm": 23.4,
         "pitch_kept": False, "confidence": 0.8765, "support": 0.75},
        {"offset_s": 28.345679, "scale": 1.00002344, "drift_ppm": 23.4,
         "pitch_kept": False, "confidence": 0.31, "support": 0.125},
    ]  # fmt: skip
    windows = report["alignment"]["windows"]
    assert windows["count"] == 8
    assert windows["inliers"] == 6
    assert windows["inlier_rms_ms"] == pytest.approx(np.sqrt(10.0 / 6.0), abs=1e-3)
    assert report["adjustment"] == {
        "differs": False, "kind": "none", "candidate": None, "nudge_ms": 0.0,
    }  # fmt: skip
    assert report["cut"] == {
        "start_s": 4.6, "end_s": 21.0, "duration_s": 16.4,
        "start_reason": "music", "end_reason": "reference",
        "start_certainty": 1.0, "end_certainty": 1.0, "start_unheard_s": 0.0, "end_unheard_s": 0.0,
    }  # fmt: skip
    assert report["music"] == {"start_s": 4.5, "end_s": 21.0, "duration_s": 16.5}
    assert report["timings"]["total_s"] == pytest.approx(1.572)
    assert [t["stage"] for t in report["timings"]["stages"]] == [
        "probe", "decode", "align", "trim", "render", "done",
    ]  # fmt: skip
    assert report["artifacts"] == {
        "video": "out/synced.mp4", "report": None, "plot": "out/plot.png", "poster": None,
    }  # fmt: skip


def test_report_describes_both_inputs() -> None:
    inputs = report_dict(_result())["inputs"]

    dance, bgm = inputs["dance"], inputs["bgm"]
    assert dance["format"] == "mov,mp4,m4a,3gp,3g2,mj2"
    assert dance["video"]["codec"] == "hevc"
    assert dance["video"]["fps"] == 29.97
    assert dance["video"]["vfr"] is True
    assert dance["video"]["rotation"] == 90
    assert (dance["video"]["display_width"], dance["video"]["display_height"]) == (1080, 1920)
    assert dance["audio"] == {
        "codec": "aac", "sample_rate": 44100, "channels": 1, "bit_rate": 96000,
        "start_time_s": 0.021333, "duration_s": 29.98,
    }  # fmt: skip
    assert bgm["video"] is None
    assert bgm["audio"]["sample_rate"] == 48000
    assert bgm["audio"]["duration_s"] is None
    assert bgm["start_time_s"] == -0.007


def test_report_output_carries_every_rendered_output_field() -> None:
    output = report_dict(_result())["output"]

    renamed = {
        name: f"{name}_s" for name in ("duration", "video_start", "video_end", "first_frame_time")
    }
    expected = {renamed.get(f, f) for f in RenderedOutput.__dataclass_fields__}
    assert set(output) == expected
    assert output["frames"] == 492
    assert output["video_copied"] is True


def test_report_has_only_plain_json_types() -> None:
    leaves = _leaves(report_dict(_result()))

    odd = [
        (where, kind) for where, kind in leaves if kind not in {str, int, float, bool, type(None)}
    ]
    assert odd == []


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (FOUND, Adjustment("none", None, 0.0)),
        (FOUND.nudged(35.0), Adjustment("nudge", None, 35.0)),
        (FOUND.nudged(-7.5), Adjustment("nudge", None, -7.5)),
        (RUNNER_UP, Adjustment("candidate", 1, 0.0)),
        (RUNNER_UP.nudged(20.0), Adjustment("candidate", 1, 20.0)),
        (Mapping(OFFSET, 1.0), Adjustment("manual", None, None)),
        (Mapping(OFFSET + 5.0, FOUND.scale), Adjustment("manual", None, None)),
    ],
)
def test_adjustment_names_how_the_used_mapping_was_derived(
    used: Mapping, expected: Adjustment
) -> None:
    result = _result(used=used)

    assert describe_adjustment(result.alignment, used) == expected
    report = report_dict(result)
    assert report["adjustment"]["differs"] is (expected.kind != "none")
    assert report["adjustment"]["kind"] == expected.kind
    assert report["mapping"]["offset_s"] == round(used.offset, 6)


def test_window_residuals_recover_the_planted_errors() -> None:
    result = _result()

    residuals = window_residuals_ms(result.alignment.windows, FOUND)
    np.testing.assert_allclose(residuals, PLANTED_MS, atol=1e-6)
    shifted = window_residuals_ms(result.alignment.windows, FOUND.nudged(10.0))
    np.testing.assert_allclose(shifted, PLANTED_MS + 10.0, atol=1e-6)


def test_write_report_round_trips_and_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    assert write_report(_result(), path) == path
    loaded = json.loads(path.read_text(encoding="utf-8"))
    expected = report_dict(_result())
    expected["artifacts"]["report"] = str(path)
    assert loaded == expected
    assert loaded["alignment"]["confidence"] == 0.8765
    assert loaded["mapping"]["drift_ppm"] == 23.4
    assert os.listdir(tmp_path) == ["report.json"]


def test_write_report_into_a_missing_directory_is_a_processing_error(tmp_path: Path) -> None:
    with pytest.raises(ProcessingError) as info:
        write_report(_result(), tmp_path / "nowhere" / "report.json")
    assert info.value.code == "PROCESSING_FAILED"
    assert os.listdir(tmp_path) == []


def test_non_finite_numbers_never_reach_the_json(tmp_path: Path) -> None:
    result = _result()
    broken = Alignment(
        **{name: getattr(result.alignment, name) for name in Alignment.__dataclass_fields__}
        | {"confidence": float("nan"), "significance": float("nan")}
    )
    report = report_dict(SyncResult(**_fields(result) | {"alignment": broken}))

    assert report["alignment"]["confidence"] is None
    assert report["alignment"]["significance"] is None
    json.dumps(report, allow_nan=False)


def _fields(result: SyncResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in SyncResult.__dataclass_fields__}


# --- the published schema ------------------------------------------------------------------------
# ``jsonschema`` is not a dependency; this checks the subset of draft 2020-12 the schema uses and
# refuses any keyword it does not know, so the schema cannot silently outgrow the check.

_ANNOTATIONS = {"$schema", "title", "description"}
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in {"integer", "number"}:
        return False
    return isinstance(value, _TYPES[name])


def _validate(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    errors: list[str] = []
    unknown = set(schema) - _ANNOTATIONS - {
        "$ref", "$defs", "type", "enum", "const", "properties", "required",
        "additionalProperties", "items", "minimum", "maximum", "exclusiveMinimum",
    }  # fmt: skip
    assert not unknown, f"{where}: the checker does not know {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        errors += _validate(value, root["$defs"][name], root, where)
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_is(value, n) for n in names):
            return [*errors, f"{where}: {value!r} is not {names}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        errors.append(f"{where}: {value!r} is not {schema['const']!r}")
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{where}: {value} <= {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing {k}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties", True) is False:
            errors += [f"{where}: unexpected {k}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                errors += _validate(value[key], sub, root, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _validate(item, schema["items"], root, f"{where}[{i}]")
    return errors


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def test_schema_is_draft_2020_12_for_this_version(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["schema_version"] == {"const": REPORT_SCHEMA_VERSION}


def test_schema_names_every_cut_reason(schema: dict[str, Any]) -> None:
    assert schema["$defs"]["reason"]["enum"] == list(REASONS)


def test_cut_evidence_is_reported(schema: dict[str, Any]) -> None:
    result = _result()
    doubtful = replace(
        result,
        cut=Cut(
            4.6, 21.0, "music-uncertain", "reference", EdgeEvidence(0.62, 7.25), EdgeEvidence()
        ),
    )
    report = report_dict(doubtful)
    assert {k: v for k, v in report["cut"].items() if k.startswith(("start_", "end_"))} == {
        "start_s": 4.6, "end_s": 21.0, "start_reason": "music-uncertain",
        "end_reason": "reference", "start_certainty": 0.62, "end_certainty": 1.0,
        "start_unheard_s": 7.25, "end_unheard_s": 0.0,
    }  # fmt: skip
    assert _validate(report, schema, schema, "$") == []


@pytest.mark.parametrize("used", [FOUND, FOUND.nudged(12.0), RUNNER_UP, Mapping(1.0, 1.05)])
def test_written_report_matches_the_schema(
    tmp_path: Path, schema: dict[str, Any], used: Mapping
) -> None:
    path = write_report(_result(used=used), tmp_path / "report.json")

    assert _validate(json.loads(path.read_text(encoding="utf-8")), schema, schema, "$") == []


def test_schema_check_catches_a_wrong_report(schema: dict[str, Any]) -> None:
    report = report_dict(_result())
    report["alignment"]["confidence"] = 1.5
    report["cut"]["start_reason"] = "guess"
    report["extra"] = True
    del report["music"]["end_s"]

    errors = _validate(report, schema, schema, "$")
    assert sorted(errors) == sorted(
        [
            "$: unexpected extra",
            "$.alignment.confidence: 1.5 > 1",
            "$.cut.start_reason: 'guess' not in "
            "['music', 'music-uncertain', 'reference', 'picture', 'video', 'user']",
            "$.music: missing end_s",
        ]
    )


def test_an_edit_reports_every_piece_and_reads_each_window_by_its_piece(
    tmp_path: Path, schema: dict[str, Any]
) -> None:
    one = _result()
    # The same windows, the later half of them heard 30 s further on in the reference: an
    # edit in two pieces meeting at dance time 12 s.
    times = one.alignment.windows.times
    second = Mapping(FOUND.offset + 30.0, FOUND.scale)
    lags = one.alignment.windows.lags + np.where(times >= 12.0, 30.0, 0.0)
    pieces = (Piece(4.5, 12.0, FOUND), Piece(12.0, 21.0, second))
    alignment = dataclasses.replace(
        one.alignment,
        windows=dataclasses.replace(one.alignment.windows, lags=lags),
        pieces=pieces,
    )
    result = dataclasses.replace(one, alignment=alignment, pieces=pieces)
    np.testing.assert_allclose(
        window_residuals_ms(alignment.windows, FOUND, pieces), PLANTED_MS, atol=1e-6
    )
    path = write_report(result, tmp_path / "report.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert _validate(report, schema, schema, "$") == []
    assert [(p["start_s"], p["end_s"], p["offset_s"]) for p in report["pieces"]] == [
        (4.5, 12.0, round(FOUND.offset, 6)),
        (12.0, 21.0, round(second.offset, 6)),
    ]
    assert report["alignment"]["windows"]["inlier_rms_ms"] == pytest.approx(
        float(np.sqrt(np.mean(PLANTED_MS[INLIER] ** 2))), abs=1e-3
    )
    # One piece for a recording of the song as it is: the mapping over the music.
    (only,) = report_dict(one)["pieces"]
    assert (only["start_s"], only["end_s"], only["offset_s"]) == (4.5, 21.0, round(OFFSET, 6))
