"""Generated test media with a known truth, and checkers for output files.

Builds dance/reference pairs from real music (Debian ``extremetuxracer-data``, PyPI
``immich-memories-music``) through a simulated room and phone, stamps every video frame with its
index, and measures outputs: audio-to-picture error, stream-copied video, MP4 edit lists. Shared
by the tests and the benchmarks; see :mod:`beatsync.testkit.cases` for the exact definitions.
"""

from .cases import KIT_VERSION, BuiltCase, CaseSpec, Truth, build_case, load_song
from .catalog import build_cases, case_named, small_cases, speed_pair, standard_cases
from .framecode import (
    FRAME_CODE_MODULUS,
    code_geometry,
    draw_frame_code,
    frame_luma,
    read_frame_code,
)
from .measure import (
    PacketCopy,
    SyncSample,
    decode_mono,
    piece_sync,
    read_frame_indices,
    seam_errors,
    sync_errors,
    sync_samples,
    video_packets_copied,
)
from .mp4box import EditEntry, TrackEdits, mp4_edit_lists, mp4_has_edit_list
from .music import Song, TrackSourceMissingError, list_tracks, load_track, repeat_section
from .room import Room, SpeechUnavailableError

__all__ = [
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
]
