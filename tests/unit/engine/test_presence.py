"""Where the music plays: evidence of its absence on synthetic frames, and a quiet intro in a
loud room through sync(), measured on the output file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from beatsync.engine import EdgeEvidence, sync
from beatsync.engine.alignment.presence import band_power, frame_evidence, music_edges
from beatsync.testkit import sync_errors

HOP = 0.032
SPREAD = 0.15  # a frame's agreement without music


def _frames(
    seed: int,
    *,
    length: float = 40.0,
    music: tuple[float, float] = (5.0, 35.0),
    level_db: list[tuple[float, float, float]] = (),  # type: ignore[assignment]
    noise: float = 1.0,
    bursts: list[tuple[float, float, float]] = (),  # type: ignore[assignment]
) -> tuple[NDArray[np.float64], ...]:
    """Frame centres, agreement, reference power and room power of a simulated recording.

    The reference plays at power 1 except over ``level_db`` spans (start, end, dB); the room
    hears it, where the music plays, over pink-ish noise of power ``noise``, louder by ``bursts``
    (start, end, dB): a frame's agreement is its share of music power plus noise of spread
    :data:`SPREAD`.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(HOP / 2, length, HOP)
    played = np.ones_like(t) * rng.uniform(0.5, 1.5, len(t))
    for lo, hi, db in level_db:
        played[(t >= lo) & (t < hi)] *= 10 ** (db / 10)
    room_noise = np.full_like(t, noise)
    for lo, hi, db in bursts:
        room_noise[(t >= lo) & (t < hi)] *= 10 ** (db / 10)
    on = (t >= music[0]) & (t < music[1])
    heard = np.where(on, played, 0.0) + room_noise
    share = np.where(on, played / heard, 0.0)
    agree = 0.8 * share + rng.normal(0.0, SPREAD, len(t))
    return t, agree, played, heard


def _edges(t, agree, played, heard, core=(12.0, 28.0)):  # type: ignore[no-untyped-def]
    return music_edges(t, agree, played, heard, core=core, bounds=(0.0, float(t[-1] + HOP / 2)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_loud_reference_the_room_does_not_hear_ends_the_music(seed: int) -> None:
    span = _edges(*_frames(seed, noise=0.3))
    # When unsure by a frame or two, the music is kept.
    assert 5.0 - 0.15 <= span.start <= 5.0 + 0.05
    assert 35.0 - 0.05 <= span.end <= 35.0 + 0.15
    assert span.start_evidence.certainty > 0.99
    assert span.end_evidence.certainty > 0.99
    assert span.start_evidence.unheard < 0.2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_quiet_intro_in_a_loud_room_is_kept_and_said_to_be_unheard(seed: int) -> None:
    # 16 dB quieter for the first 8 s, in a room at -5 dB: the room cannot hear the intro, but
    # before it the reference is loud and unheard.
    frames = _frames(seed, noise=3.0, level_db=[(5.0, 13.0, -16.0), (30.0, 35.0, -12.0)])
    span = _edges(*frames)
    # The loud room weakens what each frame says: a few more frames are kept to be sure.
    assert 5.0 - 0.3 <= span.start <= 5.0 + 0.05
    assert 35.0 - 0.05 <= span.end <= 35.0 + 0.6
    assert span.start_evidence.unheard == pytest.approx(8.0, abs=1.0)
    assert span.end_evidence.unheard == pytest.approx(5.0, abs=1.0)
    assert span.start_evidence.certainty > 0.9


def test_where_the_reference_stays_quiet_the_music_goes_on_to_the_recording_edge() -> None:
    # The song is quiet from before the recording starts until 13 s: nothing tells where the
    # music began, so all of it is kept.
    t, agree, played, heard = _frames(4, noise=3.0, level_db=[(0.0, 13.0, -16.0)])
    span = _edges(t, agree, played, heard)
    assert span.start == 0.0
    assert span.start_evidence.unheard > 11.0


def test_where_there_is_no_reference_nothing_is_told() -> None:
    # The reference ends 1 s before the music stops.
    t, agree, played, heard = _frames(5, noise=0.3)
    played[t > 34.0] = np.nan
    span = _edges(t, agree, played, heard)
    assert span.end == pytest.approx(40.0, abs=HOP)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_shout_over_the_music_does_not_end_it(seed: int) -> None:
    # 20 dB of shouting 1–3 s into the music hides it; the loud reference before the music
    # still sets the start.
    span = _edges(*_frames(seed, noise=0.3, bursts=[(6.0, 8.0, 20.0), (31.0, 33.0, 20.0)]))
    assert 5.0 - 0.15 <= span.start <= 5.0 + 0.05
    assert 35.0 - 0.05 <= span.end <= 35.0 + 0.15


def test_without_agreeing_windows_the_whole_recording_is_doubtful_music() -> None:
    t, agree, played, heard = _frames(6)
    span = music_edges(t, agree, played, heard, core=None, bounds=(0.0, 40.0))
    assert (span.start, span.end) == (0.0, 40.0)
    assert span.start_evidence == span.end_evidence == EdgeEvidence(0.0, 0.0)


def test_frame_evidence_weighs_only_what_the_room_could_hear() -> None:
    t, agree, played, heard = _frames(7, noise=3.0, level_db=[(5.0, 13.0, -16.0)])
    core = (t >= 15.0) & (t <= 30.0)
    llr = frame_evidence(agree, played, heard, core)
    absent = llr[(t > 0.5) & (t < 4.5)]  # loud reference, no music
    quiet = llr[(t > 5.5) & (t < 12.5)]  # music the room cannot hear
    playing = llr[(t > 15.0) & (t < 30.0)]
    assert absent.mean() < -0.2
    assert abs(quiet.mean()) < 0.02
    assert playing.mean() > 0.2
    assert np.abs(llr).max() <= np.log(9.0) / 2 + 1e-9


def test_band_power_drops_the_rumble_and_is_nan_outside_the_signal() -> None:
    rate = 16_000
    n = np.arange(rate)
    tone = np.sin(2 * np.pi * 1000.0 * n / rate).astype(np.float32)
    rumble = np.sin(2 * np.pi * 30.0 * n / rate).astype(np.float32)
    centres = np.array([-100.0, 4000.0, 8000.0, rate - 100.0])
    inside = band_power(tone, rate, centres, 1024)
    assert np.isnan(inside[[0, 3]]).all()
    assert inside[1:3] == pytest.approx(0.5, rel=0.01)
    # 30 Hz: -22 dB.
    assert band_power(rumble, rate, centres, 1024)[1] < 0.01 * inside[1]


def test_quiet_intro_in_a_loud_room_keeps_the_whole_routine(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The song is 16 dB quieter for its first 5 s and 12 dB for its last 3 s, in a room at
    # -5 dB SNR with talking: the room hears neither, and both stay in the cut.
    case = small_case("small-quiet-intro-loud")
    truth = case.truth
    assert truth.cut is not None
    out = tmp_path / "out.mp4"
    result = sync(case.dance, case.bgm, out, report=tmp_path / "report.json")
    cut = result.cut
    assert cut.start_reason.startswith("music")
    assert truth.cut[0] - 0.15 <= cut.start <= truth.cut[0] + 0.05
    assert truth.cut[1] - 0.05 <= cut.end <= truth.cut[1] + 0.15
    assert cut.start_evidence.unheard > 1.0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["cut"]["start_unheard_s"] == pytest.approx(cut.start_evidence.unheard)
    shift = result.output.first_frame_time - result.output.video_start
    times = [cut.start + 0.6, (cut.start + cut.end) / 2, cut.end - 0.6]
    errors = sync_errors(out, case, times=[t + shift for t in times])
    assert max(abs(e) for e in errors) <= 1.0
