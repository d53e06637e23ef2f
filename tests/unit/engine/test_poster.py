"""write_poster(): the JPEG decoded back shows the right frame, upright, at the right size."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from numpy.typing import NDArray

from beatsync.engine import MediaInfo, ProcessingError, probe
from beatsync.engine.output.poster import write_poster

FPS = 30


def shade(i: int) -> int:
    """Brightness of frame ``i`` (60 frames, 4 levels apart)."""
    return 8 + 4 * i


def write_clip(path: Path, *, rotation: int = 0) -> Path:
    """Two seconds of flat frames of brightness ``shade(i)``, with a white square in the coded
    picture's top-left corner; B-frames and a keyframe every second."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "veryfast", "x264-params": "keyint=30:bframes=2:b-adapt=0"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(2 * FPS):
            picture = np.full((240, 320, 3), shade(i), np.uint8)
            picture[:40, :40] = 255
            frame = av.VideoFrame.from_ndarray(picture)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def poster_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MediaInfo]:
    folder = tmp_path_factory.mktemp("poster")
    return {
        "plain": probe(write_clip(folder / "plain.mp4"), require_audio=False),
        "portrait": probe(write_clip(folder / "portrait.mp4", rotation=90), require_audio=False),
    }


def read_jpeg(path: Path) -> NDArray[np.uint8]:
    assert path.read_bytes()[:2] == b"\xff\xd8"
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert container.format.name.endswith("pipe") or "jpeg" in container.format.name
    picture: NDArray[np.uint8] = frame.to_ndarray(format="gray")
    return picture


def background(picture: NDArray[np.uint8]) -> float:
    h, w = picture.shape
    return float(np.median(picture[h // 2 :, w // 2 :]))


@pytest.mark.parametrize(
    ("at", "frame"),
    [
        (1.55, 46),  # mid-GOP: the frame that started at 1.5333 s is on screen
        (0.98, 29),  # just before a keyframe (the seek lands on it; it is shown later)
        (1.0, 30),  # exactly a keyframe
        (-3.0, 0),  # before the video: its first frame
        (99.0, 59),  # after the video: its last frame
    ],
)
def test_poster_shows_the_frame_on_screen_at_that_time(
    poster_clips: dict[str, MediaInfo], tmp_path: Path, at: float, frame: int
) -> None:
    out = write_poster(poster_clips["plain"], tmp_path / "poster.jpg", at=at)
    picture = read_jpeg(out)
    assert picture.shape == (240, 320)  # already narrower than 640: not scaled
    assert background(picture) == pytest.approx(shade(frame), abs=1.5)


def test_poster_is_scaled_to_the_width_limit(
    poster_clips: dict[str, MediaInfo], tmp_path: Path
) -> None:
    picture = read_jpeg(
        write_poster(poster_clips["plain"], tmp_path / "p.jpg", at=0.5, max_width=160)
    )
    assert picture.shape == (120, 160)
    assert picture[:15, :15].min() > 200  # the marker stays top-left


def test_rotated_video_gives_an_upright_portrait_poster(
    poster_clips: dict[str, MediaInfo], tmp_path: Path
) -> None:
    picture = read_jpeg(
        write_poster(poster_clips["portrait"], tmp_path / "p.jpg", at=1.2, max_width=160)
    )
    height, width = picture.shape
    assert width <= 160 < height
    assert width / height == pytest.approx(240 / 320, abs=0.02)
    # Turned 90° counter-clockwise for display, the coded top-left corner ends bottom-left.
    assert picture[-12:, :12].min() > 200
    assert picture[:12, :12].max() < 200  # and the top-left is background
    assert background(picture) == pytest.approx(shade(36), abs=1.5)


def test_failure_leaves_nothing_behind(poster_clips: dict[str, MediaInfo], tmp_path: Path) -> None:
    with pytest.raises(ProcessingError):
        write_poster(poster_clips["plain"], tmp_path / "missing" / "p.jpg", at=1.0)
    assert list(tmp_path.iterdir()) == []
