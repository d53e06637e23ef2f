"""A reduced accuracy set: a few standard cases end to end, measured on the output file.

``bench/accuracy.py`` runs every standard case; these are the kinds a change to the alignment
breaks first (a reverberant room, noise below the music, drift under reverb, image-source halls
whose ceiling or mirror returns the sound louder than the direct path: at 1.08× speed; at 0 dB SNR,
where the band energies' line lands some 160 ms late; with talking, clipping and gain control,
where they find no line at all), held to the tolerances of the end-to-end tests: sync within a millisecond at the start, middle and end of
the cut, drift within 5 ppm, the cut's edges at the truth's, and a mismatch refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beatsync.engine import MusicMismatchError, sync
from beatsync.testkit import build_case, case_named
from truth_checks import assert_cut_matches, assert_in_sync

MAX_DRIFT_PPM = 5.0
TRUE_PAIRS = (
    "clean-etr-credits",
    "reverb-rt20",
    "noise-snr-5",
    "drift-plus120-reverb",
    "hardroom-gym-speed108-drift",
    "hardroom-gym-rt15-snr0",
    "hardroom-talk-clip-agc",
)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRUE_PAIRS)
def test_standard_case_is_in_sync_on_the_output(name: str, kit_dir: Path, tmp_path: Path) -> None:
    case = build_case(case_named(name), kit_dir)
    out = tmp_path / "out.mp4"
    result = sync(case.dance, case.bgm, out)
    assert abs(result.mapping.scale / case.truth.scale - 1.0) * 1e6 <= MAX_DRIFT_PPM
    assert_cut_matches(case, result.cut.start, result.cut.end)
    # Output time τ shows dance time video_start − first_frame_time + τ.
    shift = result.output.first_frame_time - result.output.video_start
    assert_in_sync(out, case, result.cut.start + shift, result.cut.end + shift)


@pytest.mark.slow
def test_standard_mismatch_is_refused(kit_dir: Path, tmp_path: Path) -> None:
    case = build_case(case_named("mismatch-noisy"), kit_dir)
    with pytest.raises(MusicMismatchError):
        sync(case.dance, case.bgm, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []
