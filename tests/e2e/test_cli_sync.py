"""`beatsync sync` end to end: generated pairs with a known truth, measured on the output file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from beatsync.testkit.cases import BuiltCase, CaseSpec, build_case
from beatsync.testkit.measure import video_packets_copied
from beatsync.testkit.mp4box import mp4_has_edit_list
from beatsync.testkit.room import Room
from truth_checks import assert_report_output_matches

CLASSROOM = Room(rt60=0.8, drr_db=0.0, snr_db=3.0, speech_db=-6.0, footsteps=True)

CASES = {
    "classroom": CaseSpec(
        name="classroom",
        seed=11,
        track="etr/race1-jt",
        play_from=20.0,
        music_start=3.0,
        play_duration=16.0,
        tail=3.0,
        drift_ppm=180.0,
        room=CLASSROOM,
        b_frames=True,
    ),
    "portrait-hevc-black-tail": CaseSpec(
        name="portrait-hevc-black-tail",
        seed=12,
        track="etr/freezingpoint",
        play_from=5.0,
        music_start=2.0,
        play_duration=16.0,
        tail=1.0,
        drift_ppm=-250.0,
        room=Room(rt60=1.5, drr_db=-3.0, snr_db=0.0, clip_db=6.0),
        codec="hevc",
        rotation=270,
        black_tail=3.0,
    ),
    "practice-speed-audio-reference": CaseSpec(
        name="practice-speed-audio-reference",
        seed=13,
        track="etr/race1-jt",
        ref_start=8.0,
        play_from=10.0,
        music_start=2.5,
        play_duration=15.0,
        speed=0.93,
        room=Room(rt60=0.6, snr_db=6.0),
        container="mov",
        reference="m4a",
    ),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "beatsync", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_sync_output_matches_truth(name: str, media: Path, tmp_path: Path) -> None:
    case: BuiltCase = build_case(CASES[name], media)
    truth = case.truth
    out = tmp_path / "out.mp4"
    report = tmp_path / "report.json"
    done = run_cli("sync", case.dance, case.bgm, "-o", out, "--report", report)
    assert done.returncode == 0, done.stderr

    facts = json.loads(report.read_text())
    assert abs(facts["mapping"]["drift_ppm"] - (truth.scale - 1) * 1e6) < 5.0
    assert_report_output_matches(out, case, facts)

    copied = video_packets_copied(case.dance, out)
    assert copied, copied.reason
    assert not mp4_has_edit_list(out)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == 48000
        assert audio.codec_context.channels == 2
        video = container.streams.video[0]
        assert video.codec_context.name == truth.codec
        first = next(container.decode(video))
        assert round(first.rotation) % 360 == truth.rotation


def test_names_with_colons_are_files_not_protocols(media: Path, tmp_path: Path) -> None:
    # FFmpeg reads "take:2.mp4" as the protocol "take" unless the path says otherwise.
    case = build_case(CASES["classroom"], media)
    shutil.copyfile(case.dance, tmp_path / "class:1.mp4")
    shutil.copyfile(case.bgm, tmp_path / "song:1.mp4")
    done = run_cli(
        "sync", "class:1.mp4", "song:1.mp4", "-o", "take:2.mp4", "--report", "r:1.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    facts = json.loads((tmp_path / "r:1.json").read_text())
    assert_report_output_matches(tmp_path / "take:2.mp4", case, facts)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "class:1.mp4", "r:1.json", "song:1.mp4", "take:2.mp4",
    ]  # fmt: skip


def test_mismatched_songs_exit_4_and_write_nothing(media: Path, tmp_path: Path) -> None:
    spec = CaseSpec(
        name="mismatch",
        seed=14,
        track="etr/race1-jt",
        mismatch_track="etr/freezingpoint",
        play_from=10.0,
        play_duration=15.0,
        room=CLASSROOM,
    )
    case = build_case(spec, media)
    out = tmp_path / "out.mp4"
    report = tmp_path / "report.json"
    done = run_cli("sync", case.dance, case.bgm, "-o", out, "--report", report)
    assert done.returncode == 4, done.stderr
    assert "MUSIC_MISMATCH" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unusable_input_exit_3(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    done = run_cli("sync", text, text, "-o", tmp_path / "out.mp4")
    assert done.returncode == 3
    assert "INVALID_FORMAT" in done.stderr
    assert not (tmp_path / "out.mp4").exists()
