"""The output checkers, run on outputs made here with a known, deliberate placement."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from beatsync.engine import Mapping, Piece, SyncOptions, sync
from beatsync.testkit import (
    BuiltCase,
    CaseSpec,
    build_case,
    decode_mono,
    mp4_edit_lists,
    mp4_has_edit_list,
    read_frame_indices,
    seam_errors,
    sync_errors,
    sync_samples,
    video_packets_copied,
)
from beatsync.testkit.music import cubic_at

Built = Callable[[str], BuiltCase]
RATE = 48000


def _mux(case: BuiltCase, out: Path, *, late: float, first_packet: int = 0) -> None:
    """Copy the dance video from packet ``first_packet`` on and lay the reference under it by the
    truth, ``late`` seconds late, as AAC at 48 kHz on the output's own timeline."""
    truth = case.truth
    ref, ref_rate, ref_start = decode_mono(case.bgm)
    with av.open(str(case.dance)) as src, av.open(str(out), "w") as dst:
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=RATE, layout="stereo")
        packets = [p for p in src.demux(vin) if p.size]
        shift = min(p.pts for p in packets[first_packet:]) if first_packet else 0
        head = shift * vin.time_base  # dance time at output time 0
        n = int((truth.duration - float(head)) * RATE)
        tau = np.arange(n) / RATE
        beta = truth.offset + truth.scale * (tau + float(head) - late)
        mono = cubic_at(ref, (beta - ref_start) * ref_rate).astype(np.float32)
        for i in range(0, n, 1024):
            chunk = np.ascontiguousarray(np.stack([mono[i : i + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, i, Fraction(1, RATE)
            dst.mux(aout.encode(frame))
        dst.mux(aout.encode(None))
        for packet in packets[first_packet:]:
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = vout
            dst.mux(packet)


@pytest.mark.parametrize(("name", "late_ms"), [("small-clean", 40.0), ("small-clean", 0.0),
                                               ("small-drift-speed", 0.0),
                                               ("small-drift-speed", -25.0)])  # fmt: skip
def test_sync_errors_report_the_deliberate_placement(
    built: Built, tmp_path: Path, name: str, late_ms: float
) -> None:
    case = built(name)
    out = tmp_path / "out.mp4"
    _mux(case, out, late=late_ms / 1000.0)
    errors = sync_errors(out, case)
    assert len(errors) == 9
    assert all(abs(e - late_ms) < 1.0 for e in errors), errors


def test_sync_errors_follow_the_frame_shown_after_a_cut(built: Built, tmp_path: Path) -> None:
    case = built("small-clean")
    out = tmp_path / "cut.mp4"
    _mux(case, out, late=0.010, first_packet=60)  # starts at the keyframe of dance frame 60
    frames = read_frame_indices(out)
    assert frames[0] == (0.0, 60)
    samples = sync_samples(out, case, times=[1.0, 3.0, 5.0])
    assert [s.frame for s in samples] == [90, 150, 210]
    assert all(abs(s.error_ms - 10.0) < 1.0 and s.peak > 0.9 for s in samples)
    copy = video_packets_copied(case.dance, out)
    assert copy
    assert copy.source_start == 60
    assert copy.timing_preserved
    assert copy.packets == copy.source_packets - 60


def test_unmeasurable_points_are_nan_not_numbers(built: Built, tmp_path: Path) -> None:
    case = built("small-clean")
    out = tmp_path / "silent.mp4"
    _mux(case, out, late=100.0)  # the reference is nowhere near: silence under the picture
    assert all(np.isnan(e) for e in sync_errors(out, case, at=[0.3, 0.6]))
    with pytest.raises(ValueError, match="mismatched"):
        sync_errors(out, built("small-mismatch"))


def test_packet_copy_is_detected_and_reencoding_is_not(built: Built, tmp_path: Path) -> None:
    case = built("small-clean")
    out = tmp_path / "copy.mp4"
    _mux(case, out, late=0.0)
    copy = video_packets_copied(case.dance, out)
    assert copy.identical
    assert copy.source_start == 0
    assert copy.packets == case.truth.frames
    reencoded = tmp_path / "reencoded.mp4"
    with av.open(str(case.dance)) as src, av.open(str(reencoded), "w") as dst:
        stream = dst.add_stream("libx264", rate=case.truth.fps)
        stream.width, stream.height, stream.pix_fmt = case.truth.width, case.truth.height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for frame in src.decode(video=0):
            frame.pict_type = av.video.frame.PictureType.NONE
            dst.mux(stream.encode(frame))
        dst.mux(stream.encode(None))
    result = video_packets_copied(case.dance, reencoded)
    assert not result
    assert "not in source" in result.reason
    # A re-encode keeps the stamped indices readable: the checker works on either kind.
    assert [n for _, n in read_frame_indices(reencoded)][:5] == [0, 1, 2, 3, 4]


def test_edit_lists_are_read_from_the_boxes(built: Built) -> None:
    plain = built("small-clean").dance  # H.264 without B-frames, AAC
    tracks = {t.handler: t for t in mp4_edit_lists(plain)}
    assert tracks["vide"].is_identity
    # FFmpeg's AAC encoder primes 1024 samples, hidden by the audio track's edit list.
    assert tracks["soun"].entries[0].media_time == 1024
    assert tracks["soun"].start_skip == pytest.approx(1024 / 48000)
    assert mp4_has_edit_list(plain)
    assert not mp4_has_edit_list(plain, handler="vide")
    bframes = built("small-hevc-portrait").dance  # B-frames: composition offset via an edit
    video = next(t for t in mp4_edit_lists(bframes) if t.handler == "vide")
    assert video.start_skip > 0
    assert mp4_has_edit_list(bframes, handler="vide")
    with pytest.raises(ValueError, match="no moov"):
        mp4_edit_lists(built("small-frozen-tail").dance)  # Matroska


def _spliced(case: BuiltCase, out: Path, late_ms: float) -> None:
    """Render the case's truth pieces with every seam moved ``late_ms`` later (the render's
    own short crossfade centred on it)."""
    truth = case.truth
    pieces = tuple(
        Piece(
            start + (late_ms / 1000.0 if k > 0 else 0.0),
            end + (late_ms / 1000.0 if k < len(truth.pieces) - 1 else 0.0),
            Mapping(offset, truth.scale, truth.pitch_kept),
        )
        for k, (start, end, offset) in enumerate(truth.pieces)
    )
    sync(case.dance, case.bgm, out, options=SyncOptions(pieces=pieces))


@pytest.mark.parametrize("late_ms", [4.0, -6.0])
def test_seam_errors_report_the_deliberate_seam(
    built: Built, tmp_path: Path, late_ms: float
) -> None:
    case = built("small-edit")
    out = tmp_path / "out.mp4"
    _spliced(case, out, late_ms)
    (error,) = seam_errors(out, case)
    # Measured: +4.04 and −5.98 ms.
    assert error == pytest.approx(late_ms, abs=0.5)


def test_a_pitch_kept_seam_is_placed_or_said_unmeasurable(built: Built, tmp_path: Path) -> None:
    # Short frames' spectra of a stretched output tell the pieces apart only loosely here: the
    # change points they cannot tell apart spread over 50 ms (the best one lay 10 ms late, and
    # was reported as the seam's error).
    case = built("small-tempo-edit")
    out = tmp_path / "out.mp4"
    _spliced(case, out, 5.0)
    (error,) = seam_errors(out, case)
    assert math.isnan(error) or abs(error - 5.0) <= 4.0, error


def test_a_seam_between_pieces_that_sound_alike_is_unmeasurable(tmp_path: Path) -> None:
    # A song built from loops: the bars before song time 86 s and before 22 s play the same
    # drums and chords, so whether the output switches 5 ms or 150 ms before the seam, it sounds
    # the same; the seam cannot be placed there (it was reported 100 ms early).
    spec = CaseSpec(name="loops-alike", seed=21, track="studio:pop:full", pieces=((80.0, 6.0),
                    (22.0, 5.0)), play_from=80.0, play_duration=11.0, music_start=2.0, tail=1.0,
                    width=320, height=240)  # fmt: skip
    case = build_case(spec, tmp_path / "kit")
    out = tmp_path / "out.mp4"
    _spliced(case, out, -5.5)
    (error,) = seam_errors(out, case)
    assert math.isnan(error), error
