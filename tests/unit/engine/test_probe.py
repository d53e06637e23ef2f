"""probe(): facts read from the bytes, coded refusals for what cannot be used."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from beatsync.engine import (
    InvalidFormatError,
    MediaNotFoundError,
    NoAudioTrackError,
    NoVideoTrackError,
    probe,
)


def test_dance_video_facts(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    info = probe(case.dance, require_video=True)
    assert info.video is not None
    assert info.audio is not None
    assert info.video.codec == "h264"
    assert (info.video.width, info.video.height) == (case.truth.width, case.truth.height)
    assert info.video.fps == pytest.approx(case.truth.fps, rel=1e-3)
    assert not info.video.variable_frame_rate
    assert info.video.rotation == 0
    assert info.audio.sample_rate == case.truth.audio_rate
    assert info.duration == pytest.approx(case.truth.duration, abs=0.1)


def test_portrait_hevc_in_mov(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-hevc-portrait")
    info = probe(case.dance, require_video=True)
    assert info.video is not None
    assert info.format_name.startswith("mov")
    assert info.video.codec == "hevc"
    assert info.video.rotation == case.truth.rotation == 270
    assert info.video.display_size == (info.video.height, info.video.width)
    assert info.video.has_b_frames


def test_audio_only_reference(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-hevc-portrait")
    info = probe(case.bgm)
    assert info.video is None
    assert info.audio is not None
    assert info.audio.codec == "aac"
    with pytest.raises(NoVideoTrackError) as caught:
        probe(case.bgm, require_video=True)
    assert caught.value.code == "NO_VIDEO_TRACK"


def test_decided_by_content_not_name(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-frozen-tail")
    disguised = tmp_path / "holiday.jpg"
    shutil.copy(case.dance, disguised)
    info = probe(disguised, require_video=True)
    assert info.format_name == "matroska,webm"
    assert info.video is not None
    assert info.video.fps == pytest.approx(25.0)


def test_video_without_audio(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import av

    case = small_case("small-clean")
    silent = tmp_path / "silent.mp4"
    with av.open(str(case.dance)) as src, av.open(str(silent), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            dst.mux(packet)
    with pytest.raises(NoAudioTrackError) as caught:
        probe(silent, require_video=True)
    assert caught.value.code == "NO_AUDIO_TRACK"


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "INVALID_FORMAT"), (b"hello, this is text", "INVALID_FORMAT")],
)
def test_unusable_bytes(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "class.mp4"
    path.write_bytes(content)
    with pytest.raises(InvalidFormatError) as caught:
        probe(path)
    assert caught.value.code == code


def test_truncated_mp4(small_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = small_case("small-clean").dance.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidFormatError):
        probe(cut, require_video=True)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError) as caught:
        probe(tmp_path / "nowhere.mp4")
    assert caught.value.code == "FILE_NOT_FOUND"
