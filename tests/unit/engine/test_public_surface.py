"""The engine's public surface is pinned: every name resolves, and nothing else is promised."""

from __future__ import annotations

import subprocess
import sys

import beatsync.engine as engine

PUBLIC = {
    "STAGES", "AlignParams", "Alignment", "AlignmentError", "Audio", "AudioInfo", "BeatSyncError",
    "Candidate", "Cut", "DurationTooLongError", "EdgeEvidence", "InputError",
    "InvalidFormatError", "Mapping", "MediaInfo", "MediaNotFoundError", "MusicMismatchError",
    "MusicSpan", "NoAudioTrackError", "Piece",
    "NoVideoTrackError", "OptionsError", "ProcessingError", "ProgressCallback", "RenderParams",
    "RenderedOutput", "StageTiming", "SyncOptions", "SyncResult", "VideoInfo", "WindowTrack",
    "align_files", "align_signals", "assess_mapping", "decode_audio", "find_cut", "probe",
    "render", "sync",
}  # fmt: skip


def test_exported_names() -> None:
    assert set(engine.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(engine, name) is not None, name


def test_importing_the_pipeline_leaves_scipy_for_later() -> None:
    # SciPy takes most of a second to import; sync() loads it while the audio decodes.
    code = (
        "import sys, beatsync.engine.pipeline, beatsync.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'matplotlib')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
