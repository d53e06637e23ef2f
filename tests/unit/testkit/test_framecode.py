"""The frame code survives real lossy encodes, refuses damaged codes, and stays small."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from beatsync.testkit import code_geometry, draw_frame_code, frame_luma, read_frame_code
from beatsync.testkit.encode import Scene

W, H = 320, 240


def _encode_and_read(path: Path, codec: str, indices: list[int]) -> list[int | None]:
    rng = np.random.default_rng(5)
    scene = Scene(W, H, rng)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        # A starved bit rate: the code must survive much worse than the kit's own settings.
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "38", "x264-params": "bframes=2"}
        else:
            stream.options = {"preset": "ultrafast", "crf": "38", "x265-params": "log-level=error"}
        for n, index in enumerate(indices):
            frame = scene.frame(n * 3, index)
            frame.pts, frame.time_base = n, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        return [read_frame_code(frame_luma(f)) for f in container.decode(video=0)]


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_code_round_trips_through_lossy_encode(tmp_path: Path, codec: str) -> None:
    indices = [int(i) for i in np.random.default_rng(11).integers(0, 1 << 16, 60)]
    assert _encode_and_read(tmp_path / "code.mp4", codec, indices) == indices


def test_every_single_flipped_cell_is_refused() -> None:
    luma = np.full((H, W), 90, dtype=np.uint8)
    draw_frame_code(luma, 12345)
    assert read_frame_code(luma) == 12345
    cell = int(code_geometry(W, H).cell)
    for bit in range(18):
        row, col = divmod(bit, 6)
        damaged = luma.copy()
        block = damaged[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
        block[...] = 251 - block  # black 16 <-> white 235
        assert read_frame_code(damaged) is None, bit


def test_grey_or_blank_corners_are_refused() -> None:
    luma = np.full((H, W), 16, dtype=np.uint8)
    assert read_frame_code(luma) is None  # an all-black corner is not frame anything
    luma.fill(235)
    assert read_frame_code(luma) is None
    draw_frame_code(luma, 7)
    luma[10:14, 10:14] = 128  # one cell half-way between black and white
    assert read_frame_code(luma) is None


def test_code_is_small_and_in_the_top_left_corner() -> None:
    geo = code_geometry(W, H)
    assert geo.cell >= 8
    assert geo.width * geo.height / (W * H) <= 0.015 + 1e-12
    luma = np.full((H, W), 16, dtype=np.uint8)
    draw_frame_code(luma, 0xFFFF)
    assert (luma[geo.height :, :] == 16).all()
    assert (luma[:, geo.width :] == 16).all()
    # A black picture with the code is still at least 98 % black.
    assert np.mean(luma <= 32) >= 0.98


def test_code_reads_after_proportional_scaling() -> None:
    buf = np.full((1080 * 3 // 2, 1920), 128, dtype=np.uint8)
    buf[:1080] = 100
    draw_frame_code(buf[:1080], 4242)
    frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
    for width, height in [(1280, 720), (640, 360)]:
        scaled = frame.reformat(width=width, height=height, interpolation="BILINEAR")
        assert read_frame_code(frame_luma(scaled)) == 4242


def test_indices_wrap_at_16_bits() -> None:
    luma = np.zeros((H, W), dtype=np.uint8)
    draw_frame_code(luma, (1 << 16) + 99)
    assert read_frame_code(luma) == 99
