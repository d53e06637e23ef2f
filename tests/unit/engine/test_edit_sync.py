"""sync() on a class that danced to an edit of the song (also played with the pitch kept),
measured on the output file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beatsync.engine import SyncOptions, sync
from beatsync.testkit import piece_sync, seam_errors


def test_two_piece_edit_is_synced_in_every_piece_and_spliced_at_the_seam(  # type: ignore[no-untyped-def]
    small_case, tmp_path: Path
) -> None:
    case = small_case("small-edit")
    truth = case.truth
    out = tmp_path / "out.mp4"
    result = sync(case.dance, case.bgm, out, report=tmp_path / "report.json")
    pieces = result.pieces
    assert len(pieces) == len(truth.pieces) == 2
    for piece, (_, _, offset) in zip(pieces, truth.pieces, strict=True):
        middle = (piece.start + piece.end) / 2
        error = piece.mapping.bgm_time(middle) - (offset + truth.scale * middle)
        assert abs(error) < 2e-4, (piece, offset)
    # The seam to a few ms, and the cut spans the whole routine across both pieces.
    assert pieces[1].start == pytest.approx(truth.seams[0], abs=0.003)
    assert truth.cut is not None
    assert result.cut.start == pytest.approx(truth.cut[0], abs=0.1)
    # The music's end keeps the room's reverberant tail: a little late, never early.
    assert truth.cut[1] - 0.05 <= result.cut.end <= truth.cut[1] + 0.2
    # Measured on the written file: in sync in each piece, and its sound switches at the seam.
    shift = result.output.first_frame_time - result.output.video_start
    per_piece = piece_sync(out, case, shift=shift, cut=(result.cut.start, result.cut.end))
    assert [len(errors) for errors in per_piece] == [5, 5]
    assert np.max(np.abs(per_piece)) <= 1.0, per_piece
    (seam_ms,) = seam_errors(out, case)
    assert abs(seam_ms) < 3.0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["start_s"] for p in report["pieces"]][1] == pytest.approx(pieces[1].start, abs=1e-6)
    assert report["pieces"][0]["offset_s"] == pytest.approx(pieces[0].mapping.offset, abs=1e-6)


def test_a_nudge_moves_every_piece_and_given_pieces_keep_their_seams(  # type: ignore[no-untyped-def]
    small_case, tmp_path: Path
) -> None:
    case = small_case("small-edit")
    found = sync(case.dance, case.bgm, tmp_path / "found.mp4")
    out = tmp_path / "nudged.mp4"
    # Rendered again from the answer (as the service's variants are), played 15 ms late.
    options = SyncOptions(pieces=found.alignment.pieces, nudge_ms=15.0)
    result = sync(case.dance, case.bgm, out, options=options)
    assert [p.start for p in result.pieces[1:]] == [p.start for p in found.pieces[1:]]
    for piece, base in zip(result.pieces, found.pieces, strict=True):
        assert piece.mapping.offset == pytest.approx(base.mapping.offset - 0.015, abs=1e-9)
    shift = result.output.first_frame_time - result.output.video_start
    per_piece = piece_sync(out, case, shift=shift, cut=(result.cut.start, result.cut.end), points=2)
    assert np.asarray(per_piece) == pytest.approx(np.full((2, 2), 15.0), abs=1.0)
    # The answer given back is judged whole, as the search judged it.
    assert found.alignment.significance > 15.0
    assert result.alignment.significance == pytest.approx(found.alignment.significance, abs=0.5)


def test_an_edit_played_with_the_pitch_kept_is_stretched_and_spliced_piece_by_piece(  # type: ignore[no-untyped-def]
    small_case, tmp_path: Path
) -> None:
    case = small_case("small-tempo-edit")
    truth = case.truth
    out = tmp_path / "out.mp4"
    result = sync(case.dance, case.bgm, out)
    pieces = result.pieces
    assert len(pieces) == len(truth.pieces) == 2
    # Measured: each piece's line within 0.02 ms at its middle, the seam 2 ms late.
    for piece, (_, _, offset) in zip(pieces, truth.pieces, strict=True):
        assert piece.mapping.pitch_kept
        middle = (piece.start + piece.end) / 2
        error = piece.mapping.bgm_time(middle) - (offset + truth.scale * middle)
        assert abs(error) < 2e-4, (piece, offset)
    assert pieces[1].start == pytest.approx(truth.seams[0], abs=0.005)
    # On the written file: each piece time-stretched in sync (measured within 1.1 ms, the onset
    # measure's own spread on a stretched output), and the sound switches at the seam where
    # the stretched output's spectra can place it (here they cannot within 20 ms: NaN).
    shift = result.output.first_frame_time - result.output.video_start
    per_piece = piece_sync(out, case, shift=shift, cut=(result.cut.start, result.cut.end))
    assert [len(errors) for errors in per_piece] == [5, 5]
    assert np.max(np.abs(per_piece)) <= 1.5, per_piece
    (seam_ms,) = seam_errors(out, case)
    assert np.isnan(seam_ms) or abs(seam_ms) < 4.0, seam_ms
