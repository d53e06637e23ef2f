"""A room where the direct sound is no louder than its reflections: each window's peak lands on
one arrival or another, each to a few microseconds. The windows that land on the line are then
few and apart; they count because they agree precisely, and chance seldom puts a window there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from beatsync.engine import Mapping, MusicMismatchError, align_files
from beatsync.engine.alignment.acceptance import Trials, significance
from beatsync.engine.alignment.fine import Fit, assess
from beatsync.engine.alignment.linefit import precise_line
from beatsync.engine.alignment.pieces import Stretch, _joint_fit, _runs
from beatsync.testkit.reality import Take, TakeRoom, build_take

# The phone mid-room, 4 m from the loudspeaker: the direct sound 13 dB below the reverberation,
# with a loud class's crowd, teacher and phone chain.
_MIDROOM = TakeRoom(rt60=1.0, shadow_db=0.0, snr_db=0.0, phone=(4.6, 3.0, 1.1), teacher_db=0.0)
# The room's arrivals after the direct sound (s), which the windows' peaks hop between.
_ARRIVALS = (0.0, -0.00205, -0.00349, -0.00457, -0.01163)


def _windows(
    seed: int, on_line: list[int], count: int = 37, *, room: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Windows one second apart whose peaks land on the arrivals of the line bgm = 2 + dance:
    those at ``on_line`` on the direct sound, the others on a reflection or anywhere (without
    a ``room``, anywhere)."""
    rng = np.random.default_rng(seed)
    t = 1.0 + np.arange(count, dtype=np.float64)
    lag = rng.choice(_ARRIVALS[1:], count) + rng.normal(0.0, 5e-6, count)
    wild = rng.random(count) < (0.3 if room else 1.0)
    # Elsewhere in the ±80 ms searched, but not near the line.
    far = rng.uniform(0.015, 0.08, int(wild.sum()))
    lag[wild] = np.where(rng.random(len(far)) < 0.5, far, -far)
    lag[on_line] = rng.normal(0.0, 5e-6, len(on_line))
    prom = rng.uniform(6.0, 14.0, count)
    return t, 2.0 + t + lag, prom


def test_windows_on_the_direct_sound_apart_are_counted_and_significant() -> None:
    t, beta, prom = _windows(4, [2, 5, 6, 10, 20, 21, 24, 25])
    # A line tilted between the arrivals, as the usual fit leaves it.
    tilted = Mapping(2.0, 1.0 - 80e-6)
    line = precise_line(t, beta, prom, tilted, gate=0.08)
    assert line is not None
    assert abs(line.bgm_time(15.0) - 17.0) < 2e-5
    assert abs(line.drift_ppm) < 2.0
    near = np.abs(beta - line.bgm_time_array(t)) < 0.001
    fit = assess(line, t, beta, np.full(len(t), 0.1), prom, near)
    assert fit.hits == 8
    assert fit.exact == 8
    assert set(np.flatnonzero(fit.track.inlier)) == {2, 5, 6, 10, 20, 21, 24, 25}
    assert len(fit.echoes) >= 2
    trials = Trials(40.0, 78.0)
    assert significance(fit, trials) > 3.0
    # Counted at the usual tolerance, the same windows would be chance's.
    assert significance(fit, trials) > _usual(fit, trials) + 5.0


def test_lone_precise_windows_do_not_count() -> None:
    # Two precise windows, and a third too far from them: not music.
    t, beta, prom = _windows(5, [3, 4, 20])
    line = Mapping(2.0, 1.0)
    fit = assess(line, t, beta, np.full(len(t), 0.1), prom, np.zeros(len(t), dtype=bool))
    assert fit.hits == 0
    assert fit.exact == 0


def test_precise_windows_apart_without_reflections_do_not_count() -> None:
    # Another song built from the same samples on the same grid: where a sample coincides the
    # windows agree precisely, the others land anywhere; no room spreads music over arrivals.
    t, beta, prom = _windows(4, [2, 5, 6, 10, 20, 21, 24, 25], room=False)
    line = Mapping(2.0, 1.0)
    fit = assess(line, t, beta, np.full(len(t), 0.1), prom, np.zeros(len(t), dtype=bool))
    assert fit.echoes == ()
    assert fit.hits == 0
    assert significance(fit, Trials(40.0, 78.0)) < -5.0


def _usual(fit: Fit, trials: Trials) -> float:
    return significance(replace(fit, precise=None), trials)


@pytest.mark.slow
def test_a_mid_room_take_is_synced_and_another_song_refused(tmp_path: Path) -> None:
    take = Take("midroom", 56, "immich/calm/calm_electronic_s411", ((2.0, 24.0, 0.0),),
                drift_ppm=-50.0, room=_MIDROOM)  # fmt: skip
    case = build_take(take, tmp_path)
    truth = case.truth
    found = align_files(case.dance, case.bgm)
    for at in (truth.music_start, 0.5 * (truth.music_start + truth.music_end), truth.music_end):
        error = found.mapping.bgm_time(at) - (truth.offset + truth.scale * at)
        assert abs(error) < 0.0005, at
    assert abs(found.mapping.drift_ppm - truth.drift_ppm) < 5.0
    assert found.music.start <= truth.music_start + 0.3
    assert found.music.end >= truth.music_end - 0.3
    other = Take("midroom-other", 56, "immich/calm/calm_electronic_s411", ((2.0, 24.0, 0.0),),
                 ref_song="immich/happy/happy_acoustic_1", accept="no", room=_MIDROOM)  # fmt: skip
    mismatch = build_take(other, tmp_path)
    with pytest.raises(MusicMismatchError):
        align_files(mismatch.dance, mismatch.bgm)


def test_a_piece_on_a_reflection_keeps_its_windows_apart_and_its_first_arrival() -> None:
    # A piece of an edit whose windows mostly land precisely on one reflection, apart.
    t, beta, prom = _windows(4, [])
    on = list(range(1, 36, 4))
    reflection = -0.015
    beta[on] = 2.0 + reflection + t[on] + np.random.default_rng(5).normal(0.0, 5e-6, len(on))
    # The scale is the recording's: only the offset is the line's.
    line = precise_line(t, beta, prom, Mapping(2.0 + 0.004, 1.0), gate=0.08, scale=1.0)
    assert line is not None
    assert line.scale == 1.0
    assert abs(line.offset - (2.0 + reflection)) < 2e-5
    near = np.abs(beta - line.bgm_time_array(t)) < 0.001
    fit = assess(line, t, beta, np.full(len(t), 0.1), prom, near)
    assert fit.exact == 9
    # Four windows apart, further than a run of the usual tolerance allows: one run all the
    # same, long enough for a piece.
    runs = _runs(fit)
    assert [(s.lo, s.hi, s.hits) for s in runs] == [(2.0, 34.0, 9)]
    # The line moved onto the first arrival (as the direct sound step does); the pieces' joint
    # fit through the windows on the reflection keeps it there, the other piece on its own.
    first = replace(fit, mapping=Mapping(2.0, 1.0))
    other = Fit(Mapping(-30.0, 1.0), replace(fit.track, lags=fit.track.lags * 0.0 - 30.0),
                1.0, 1.0, len(t), len(t))  # fmt: skip
    groups = [[replace(runs[0], fit=first)], [Stretch(other, 40.0, 60.0, 20)]]
    parts = [
        (t[on], beta[on], np.full(len(on), 0.1)),
        (40.0 + np.arange(20.0), 10.0 + np.arange(20.0), np.full(20, 0.1)),
    ]
    mappings = _joint_fit(parts, groups)
    assert abs(mappings[0].offset - 2.0) < 2e-5
    assert abs(mappings[1].offset + 30.0) < 2e-5
    assert abs(mappings[0].scale - 1.0) < 1e-6
