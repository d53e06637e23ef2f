"""The kit's public surface is pinned: other tests and the benchmarks import these names."""

from __future__ import annotations

import beatsync.testkit as testkit

EXPECTED = {
    "FRAME_CODE_MODULUS",
    "KIT_VERSION",
    "BuiltCase",
    "CaseSpec",
    "EditEntry",
    "PacketCopy",
    "Room",
    "Song",
    "SpeechUnavailableError",
    "SyncSample",
    "TrackEdits",
    "TrackSourceMissingError",
    "Truth",
    "build_case",
    "build_cases",
    "case_named",
    "code_geometry",
    "decode_mono",
    "draw_frame_code",
    "frame_luma",
    "list_tracks",
    "load_song",
    "load_track",
    "mp4_edit_lists",
    "mp4_has_edit_list",
    "piece_sync",
    "read_frame_code",
    "read_frame_indices",
    "repeat_section",
    "seam_errors",
    "small_cases",
    "speed_pair",
    "standard_cases",
    "sync_errors",
    "sync_samples",
    "video_packets_copied",
}


def test_public_surface_is_pinned() -> None:
    assert set(testkit.__all__) == EXPECTED
    assert all(hasattr(testkit, name) for name in testkit.__all__)
