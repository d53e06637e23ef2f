"""A ten-minute class recording of one song against another song's reference is refused.

Hundreds of windows give chance a few agreeing ones; the second looks (the wide lock, the
waveform search), which try many lags and lines, once took those for the song and accepted
this pair (8 of 448 windows, confidence 0.57).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beatsync.engine import MusicMismatchError
from beatsync.engine.alignment.align import align_files
from beatsync.testkit import CaseSpec, Room, build_case
from beatsync.testkit.music import LONG_MEDLEY, OTHER_LONG_MEDLEY


def test_ten_minutes_of_another_song_are_refused(tmp_path: Path) -> None:
    spec = CaseSpec(
        name="long-mismatch",
        seed=11,
        track=LONG_MEDLEY,
        mismatch_track=OTHER_LONG_MEDLEY,
        ref_start=0.0,
        ref_end=615.0,
        play_from=5.0,
        music_start=2.0,
        play_duration=595.0,
        tail=3.0,
        room=Room(rt60=0.6, drr_db=4.0, snr_db=15.0, footsteps=True),
        width=64,
        height=36,
        fps=30,
        gop=30,
    )
    case = build_case(spec, tmp_path)
    with pytest.raises(MusicMismatchError) as refused:
        align_files(case.dance, case.bgm)
    assert refused.value.code == "MUSIC_MISMATCH"
