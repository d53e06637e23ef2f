"""A reduced accuracy set: a few standard cases end to end, measured on the output file.

``bench/accuracy.py`` runs every standard case; these are the kinds a change to the alignment
breaks first (a reverberant room, noise below the music, drift under reverb, image-source halls
whose ceiling or wall returns the sound louder than the direct path: at 1.08× speed with drift,
and a corner at 0 dB SNR whose band energies give the line a slope 0.2 % off; a practice
player's 0.9× tempo change with the pitch kept, whose opening bars agree only weakly frame by
frame and must stay in), held to the tolerances of the end-to-end tests: sync within a
millisecond at the start, middle and end of the cut, drift within 5 ppm, the cut's edges at the
truth's, and a mismatch refused. Practice tempo at 0.5× and 1.5× is held by its mapping: the
line within 0.2 ms of the truth along the music and its drift within 5 ppm. Two harder
halls are held to the direct sound by their mapping: one whose band energies put the line 160 ms
late, one (talking, clipping, gain control) where they find no line at all. Two edits of the
song in reverberant rooms are spliced where the class's sound switches, within 5 ms: two hard
cuts, and a 0.4 s crossfade's centre. A resampled edit whose last piece jumps back before the
first finds every piece.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from beatsync.engine import MusicMismatchError, align_files, sync
from beatsync.testkit import build_case, case_named, piece_sync, seam_errors
from truth_checks import MAX_SYNC_MS, assert_cut_matches, assert_in_sync

MAX_DRIFT_PPM = 5.0
TRUE_PAIRS = (
    "clean-etr-credits",
    "reverb-rt20",
    "noise-snr-5",
    "drift-plus120-reverb",
    "hardroom-gym-speed108-drift",
    "hardroom-corner-rt10-snr0",
    "tempo-090",
)
# Their cut edges keep a reverberant lead-in or tail longer than the end-to-end tests allow,
# which is the music span's to tell, so the mapping alone is checked against the direct sound.
HARD_ROOMS = ("hardroom-gym-rt15-snr0", "hardroom-talk-clip-agc")
# Seconds: the engine comes within 0.03 ms of the direct sound in these halls (and in three
# other seeds of each).
MAX_MAPPING_ERROR_S = 0.0001
# Three pieces joined by hard cuts, two by a 0.4 s crossfade, each in a room with RT60 near a
# second: every seam within this many milliseconds (the engine's are within 2.5 ms).
# Practice tempo at the ends of its range, the pitch kept: the line within 0.1 ms and 3 ppm of
# the truth (the grains of one frame fan out most in lag there).
TEMPO_ENDS = ("tempo-050", "tempo-150")
MAX_TEMPO_LINE_S = 0.0002
EDITS = ("edit-three-pieces", "edit-crossfade")
MAX_SEAM_MS = 5.0


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


@pytest.mark.slow
@pytest.mark.parametrize("name", HARD_ROOMS)
def test_hard_room_locks_onto_the_direct_sound(name: str, kit_dir: Path) -> None:
    case = build_case(case_named(name), kit_dir)
    truth = case.truth
    alignment = align_files(case.dance, case.bgm)
    times = np.linspace(truth.music_start + 1.0, truth.music_end - 1.0, 5)
    error = alignment.mapping.bgm_time_array(times) - (truth.offset + truth.scale * times)
    assert np.abs(error).max() <= MAX_MAPPING_ERROR_S, error
    assert abs(alignment.mapping.scale / truth.scale - 1.0) * 1e6 <= MAX_DRIFT_PPM


@pytest.mark.slow
@pytest.mark.parametrize("name", TEMPO_ENDS)
def test_practice_tempo_line_holds_at_half_and_one_and_a_half(name: str, kit_dir: Path) -> None:
    case = build_case(case_named(name), kit_dir)
    truth = case.truth
    alignment = align_files(case.dance, case.bgm)
    assert alignment.mapping.pitch_kept
    times = np.linspace(truth.music_start, truth.music_end, 5)
    error = alignment.mapping.bgm_time_array(times) - (truth.offset + truth.scale * times)
    assert np.abs(error).max() <= MAX_TEMPO_LINE_S, error
    assert abs(alignment.mapping.scale / truth.scale - 1.0) * 1e6 <= MAX_DRIFT_PPM


@pytest.mark.slow
@pytest.mark.parametrize("name", EDITS)
def test_edit_is_spliced_at_its_seams(name: str, kit_dir: Path, tmp_path: Path) -> None:
    case = build_case(case_named(name), kit_dir)
    truth = case.truth
    out = tmp_path / "out.mp4"
    result = sync(case.dance, case.bgm, out)
    assert len(result.pieces) == len(truth.pieces)
    found = [p.start for p in result.pieces[1:]]
    assert np.max(np.abs(np.subtract(found, truth.seams))) * 1e3 <= MAX_SEAM_MS, found
    assert_cut_matches(case, result.cut.start, result.cut.end)
    # On the written file: in sync in every piece, and the sound switches at every seam.
    shift = result.output.first_frame_time - result.output.video_start
    per_piece = piece_sync(out, case, shift=shift, cut=(result.cut.start, result.cut.end), points=2)
    assert all(len(errors) == 2 for errors in per_piece)
    assert np.max(np.abs(per_piece)) <= MAX_SYNC_MS, per_piece
    seams = seam_errors(out, case)
    assert np.max(np.abs(seams)) <= MAX_SEAM_MS, seams


# A resampled version sped up 1.25×, in four pieces, the last jumping back before the first:
# the line of the last piece (the best) leaves the reference where the first pieces play.
RESAMPLED_EDIT = "resampledit-125-four-pieces"
# Every piece's line within this of the truth (s); the engine's are within 0.01 ms.
MAX_PIECE_LINE_S = 0.0002
# Seams on the mapping (s): the engine puts them within 11 ms; the cut starts this little
# after the music at most (a routine cut short starts 0.3 s late).
MAX_MAPPED_SEAM_S = 0.02
MAX_LATE_START_S = 0.3


@pytest.mark.slow
def test_resampled_edit_finds_the_pieces_before_a_jump_back(kit_dir: Path) -> None:
    case = build_case(case_named(RESAMPLED_EDIT), kit_dir)
    truth = case.truth
    alignment = align_files(case.dance, case.bgm)
    assert len(alignment.pieces) == len(truth.pieces)
    for piece, (start, end, offset) in zip(alignment.pieces, truth.pieces, strict=True):
        times = np.linspace(start + 1.0, end - 1.0, 3)
        error = piece.mapping.bgm_time_array(times) - (offset + truth.scale * times)
        assert np.abs(error).max() <= MAX_PIECE_LINE_S, (start, error)
    found = [p.start for p in alignment.pieces[1:]]
    assert np.max(np.abs(np.subtract(found, truth.seams))) <= MAX_MAPPED_SEAM_S, found
    assert alignment.music.start <= truth.music_start + MAX_LATE_START_S
