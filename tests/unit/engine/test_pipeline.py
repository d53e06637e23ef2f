"""sync(): stages and progress, options that change the answer, and nothing left on failure."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import av
import pytest

from beatsync.engine import (
    STAGES,
    MusicMismatchError,
    OptionsError,
    RenderParams,
    SyncOptions,
    sync,
)
from beatsync.engine.output.report import report_dict
from beatsync.testkit import sync_errors
from truth_checks import MAX_SYNC_MS, assert_cut_matches


def test_progress_runs_through_every_stage_once_and_never_backwards(
    small_case, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    seen: list[tuple[str, float]] = []
    result = sync(
        case.dance,
        case.bgm,
        tmp_path / "out.mp4",
        on_progress=lambda stage, fraction, message: seen.append((stage, fraction)),
        report=tmp_path / "report.json",
        plot=tmp_path / "plot.png",
        poster=tmp_path / "poster.jpg",
    )
    stages = [s for i, (s, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s]
    assert stages == list(STAGES)
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert [t.stage for t in result.timings] == list(STAGES[:-1])
    assert result.report_path == tmp_path / "report.json"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mapping"]["offset_s"] == pytest.approx(case.truth.offset, abs=1e-3)
    with av.open(str(tmp_path / "plot.png")) as png:
        assert next(png.decode(video=0)).width > 600
    with av.open(str(tmp_path / "poster.jpg")) as jpg:
        poster = next(jpg.decode(video=0))
        assert (poster.width, poster.height) == (case.truth.width, case.truth.height)


def test_nudge_moves_the_music_against_the_picture(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    result = sync(case.dance, case.bgm, tmp_path / "out.mp4", options=SyncOptions(nudge_ms=12.0))
    assert result.mapping.offset == pytest.approx(result.alignment.mapping.offset - 0.012)
    first = result.output.video_start
    middle = (result.cut.start + result.cut.end) / 2 - first
    (error,) = sync_errors(tmp_path / "out.mp4", case, times=[middle])
    assert error == pytest.approx(12.0, abs=0.5)


def test_another_candidate_mapping_is_used_as_given(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    chosen = case.truth.mapping.nudged(-40.0)
    result = sync(case.dance, case.bgm, tmp_path / "out.mp4", options=SyncOptions(mapping=chosen))
    assert result.mapping == chosen
    middle = (result.cut.start + result.cut.end) / 2 - result.output.video_start
    (error,) = sync_errors(tmp_path / "out.mp4", case, times=[middle])
    assert error == pytest.approx(-40.0, abs=0.5)


def test_reencode(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    options = SyncOptions(render=RenderParams(reencode=True))
    result = sync(case.dance, case.bgm, tmp_path / "out.mp4", options=options)
    assert not result.output.video_copied
    middle = (result.cut.start + result.cut.end) / 2 - result.output.video_start
    (error,) = sync_errors(tmp_path / "out.mp4", case, times=[middle])
    assert abs(error) < 1.0
    # Smaller: the frame code no longer reads at this size, so only the picture is checked.
    small = SyncOptions(render=RenderParams(reencode=True, max_height=120))
    result = sync(case.dance, case.bgm, tmp_path / "small.mp4", options=small)
    assert (result.output.width, result.output.height) == (160, 120)
    with av.open(str(tmp_path / "small.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.height == 120


def test_mismatch_leaves_nothing(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-mismatch")
    with pytest.raises(MusicMismatchError):
        sync(
            case.dance,
            case.bgm,
            tmp_path / "out.mp4",
            report=tmp_path / "r.json",
            plot=tmp_path / "p.png",
            poster=tmp_path / "p.jpg",
        )
    assert list(tmp_path.iterdir()) == []


def test_contradictory_edges_are_refused_before_any_work(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    with pytest.raises(OptionsError):
        sync(case.dance, case.bgm, tmp_path / "out.mp4", options=SyncOptions(start=5.0, end=4.0))
    assert list(tmp_path.iterdir()) == []


def test_from_a_worker_thread_the_same_answer_comes_without_helper_processes(
    small_case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A host calling sync() from its own threads gets no forks (other threads may be inside
    FFmpeg at the moment of a fork); the result is the one the main thread gets."""
    case = small_case("small-clean")
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counted_fork)
    main = sync(case.dance, case.bgm, tmp_path / "main.mp4")
    assert len(forks) == 1  # the reference decodes beside the dance recording
    forks.clear()
    results: list[object] = []
    worker = threading.Thread(
        target=lambda: results.append(sync(case.dance, case.bgm, tmp_path / "thread.mp4"))
    )
    worker.start()
    worker.join()
    assert forks == []
    (threaded,) = results
    assert isinstance(threaded, type(main))
    assert threaded.mapping == main.mapping
    assert threaded.cut == main.cut
    assert_cut_matches(case, threaded.cut.start, threaded.cut.end)
    # Output time τ shows dance time video_start − first_frame_time + τ.
    shift = threaded.output.first_frame_time - threaded.output.video_start
    start, end = threaded.cut.start + 0.6, threaded.cut.end - 0.6
    times = [t + shift for t in (start, (start + end) / 2, end)]
    errors = sync_errors(tmp_path / "thread.mp4", case, times=times)
    assert all(abs(e) <= MAX_SYNC_MS for e in errors), errors


@pytest.mark.parametrize(
    ("name", "pitch_kept", "tolerance_ms"),
    # Measured: resampled 0.8× within 0.01 ms; pitch kept 0.75× within 0.8 ms (the onset
    # measurement's own spread on a stretched output is a few tenths of a millisecond).
    [("small-resampled-080", False, 0.1), ("small-tempo-075", True, 1.5)],
)
def test_a_class_at_another_speed_is_synced_with_the_speed_and_kind_found(  # type: ignore[no-untyped-def]
    small_case, tmp_path: Path, name: str, pitch_kept: bool, tolerance_ms: float
) -> None:
    case = small_case(name)
    result = sync(case.dance, case.bgm, tmp_path / "out.mp4")
    assert result.mapping.pitch_kept is pitch_kept
    # The pitch-kept scale is found within 2e-5 (23 ppm) on this short clip, the resampled one's
    # within 2e-7.
    assert result.mapping.scale == pytest.approx(case.truth.scale, abs=4e-5 if pitch_kept else 5e-6)
    assert case.truth.cut is not None
    assert result.cut.start == pytest.approx(case.truth.cut[0], abs=0.35)
    assert result.cut.end == pytest.approx(case.truth.cut[1], abs=0.35)
    assert report_dict(result)["mapping"]["pitch_kept"] is pitch_kept
    shift = result.output.first_frame_time - result.output.video_start
    inner = (result.cut.start + 0.7, result.cut.end - 0.7)
    times = [inner[0] + f * (inner[1] - inner[0]) + shift for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    errors = sync_errors(tmp_path / "out.mp4", case, times=times)
    assert all(abs(e) <= tolerance_ms for e in errors), errors
