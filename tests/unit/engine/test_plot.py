"""The alignment plot: a PNG of the promised size that decodes, titled with the run's numbers."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from beatsync.engine.alignment.align import Alignment, Candidate, Mapping, WindowTrack
from beatsync.engine.alignment.span import MusicSpan
from beatsync.engine.cut.trim import Cut
from beatsync.engine.errors import ProcessingError
from beatsync.engine.media.probe import AudioInfo, MediaInfo, VideoInfo
from beatsync.engine.output.plot import PLOT_DPI, PLOT_SIZE_IN, plot_title, write_plot
from beatsync.engine.output.render import RenderedOutput
from beatsync.engine.pipeline import StageTiming, SyncResult

OFFSET = 31.25
DRIFT_PPM = -42.0
CONFIDENCE = 0.912
WIDTH = round(PLOT_SIZE_IN[0] * PLOT_DPI)
HEIGHT = round(PLOT_SIZE_IN[1] * PLOT_DPI)


def _media(path: str, *, video: bool) -> MediaInfo:
    audio = AudioInfo(1, "aac", 48000, 2, 128_000, Fraction(1, 48000), 0.0, 60.0)
    picture = VideoInfo(
        0, "h264", 320, 240, 30.0, False, 0, "yuv420p", 1, 1, 1, 1, 500_000,
        Fraction(1, 90000), 0.0, 60.0, False,
    )  # fmt: skip
    return MediaInfo(
        path, "mov,mp4,m4a,3gp,3g2,mj2", 1000, 60.0, 0.0, picture if video else None, audio
    )


def _result(
    rng: np.random.Generator, *, samples: int = 6000, used: Mapping | None = None
) -> SyncResult:
    """A minute of dance video at 100 envelope samples per second, beats at 120 BPM."""
    found = Mapping(OFFSET, 1.0 + DRIFT_PPM * 1e-6)
    times = np.linspace(0.0, 60.0, samples)
    beats = np.exp(-((times % 0.5) / 0.06))
    live = np.clip(0.6 * beats + 0.3 * rng.random(samples), 0.0, 1.0)
    ref = np.where((times > 5.0) & (times < 52.0), beats, 0.0)
    centres = np.arange(1.0, 60.0, 1.0)
    lags = found.offset + (found.scale - 1.0) * centres + rng.normal(0.0, 0.0015, centres.size)
    inlier = np.ones(centres.size, dtype=bool)
    inlier[[3, 17, 40]] = False
    lags[3] += 0.004  # an outlier that stays on the panel
    lags[17] += 0.4  # two far off it, drawn at its edges
    lags[40] -= 3.0
    activity = np.clip(1.0 / (1.0 + np.exp(-(times - 5.0) * 4)) - (times > 52.0), 0.0, 1.0)
    alignment = Alignment(
        mapping=found,
        confidence=CONFIDENCE,
        candidates=(Candidate(found, CONFIDENCE, 0.95), Candidate(Mapping(OFFSET + 8.0), 0.2, 0.1)),
        windows=WindowTrack(centres, lags, rng.random(centres.size), inlier),
        music=MusicSpan(5.0, 52.0),
        activity=(times, activity),
        envelopes=(times, live, ref),
    )
    output = RenderedOutput(
        "out.mp4", 1234, 46.6, 5.2, 51.8, "h264", True, 320, 240, 0, 1398, "aac", 48000, 2
    )
    return SyncResult(
        dance=_media("class/dance.mp4", video=True),
        bgm=_media("ref/song.m4a", video=False),
        alignment=alignment,
        mapping=used or found,
        cut=Cut(5.2, 51.8, "music", "music"),
        output=output,
        timings=(StageTiming("probe", 0.01), StageTiming("render", 0.5)),
    )


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt / zTXt / iTXt key-value chunks of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[str, str] = {}
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, value = body.split(b"\0", 1)
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, rest = body.split(b"\0", 1)
            chunks[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, rest = body.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            _lang, _translated, text = rest.split(b"\0", 2)
            chunks[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode(
                "utf-8"
            )
        pos += 12 + length
    return chunks


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_plot_is_a_png_of_the_promised_size(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_plot(_result(rng), tmp_path / "plot.png")

    assert path == tmp_path / "plot.png"
    pixels = _decode(path)
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    # A drawn plot, not a blank canvas: white background plus a good share of ink and colour.
    white = np.all(pixels > 245, axis=2).mean()
    assert 0.3 < white < 0.95
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100)
    assert blue.mean() > 0.01
    # A palette PNG (colour type 3, IHDR's tenth byte): 49.6 kB, a third of the truecolour
    # 144 kB.
    assert path.read_bytes()[25] == 3
    assert 35_000 < path.stat().st_size < 70_000
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_plot_title_carries_offset_drift_and_confidence(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    result = _result(rng)
    path = write_plot(result, tmp_path / "plot.png")

    title = _png_text(path.read_bytes())["Title"]
    assert title == plot_title(result)
    assert "dance.mp4  ↔  song.m4a" in title
    assert "offset +31.250 s" in title
    assert "drift -42.0 ppm" in title
    assert "confidence 0.91" in title
    assert "nudged" not in title


@pytest.mark.parametrize(
    ("used", "words"),
    [
        (Mapping(OFFSET - 0.020, 1.0 + DRIFT_PPM * 1e-6), "nudged +20 ms"),
        (Mapping(OFFSET - 0.0025, 1.0 + DRIFT_PPM * 1e-6), "nudged +2.5 ms"),
        (Mapping(OFFSET + 8.0), "candidate #1"),
        (Mapping(OFFSET + 8.01), "candidate #1  ·  nudged -10 ms"),
        (Mapping(3.0, 1.05), "speed ×1.0500"),
    ],
)
def test_plot_title_says_how_the_used_mapping_differs(
    rng: np.random.Generator, used: Mapping, words: str
) -> None:
    assert words in plot_title(_result(rng, used=used))


def test_plot_survives_empty_curves_and_many_points(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    empty = np.zeros(0)
    result = _result(rng, samples=200_000)
    bare = Alignment(
        mapping=result.mapping,
        confidence=1.0,
        candidates=(),
        windows=WindowTrack(empty, empty, empty, np.zeros(0, dtype=bool)),
        music=MusicSpan(0.0, 60.0),
        activity=(empty, empty),
        envelopes=(empty, empty, empty),
    )
    dense = write_plot(result, tmp_path / "dense.png")
    blank = write_plot(SyncResult(**{**_fields(result), "alignment": bare}), tmp_path / "blank.png")

    assert _decode(dense).shape == (HEIGHT, WIDTH, 3)
    assert _decode(blank).shape == (HEIGHT, WIDTH, 3)
    assert dense.stat().st_size < 300_000


def test_names_the_font_cannot_draw_keep_their_text_in_the_metadata(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    result = _result(rng)
    named = SyncResult(
        **{**_fields(result), "dance": dataclasses.replace(result.dance, path="课堂/舞蹈.mp4")}
    )

    # Warnings are errors here: a missing glyph would fail the run, not just look wrong.
    path = write_plot(named, tmp_path / "plot.png")

    assert _png_text(path.read_bytes())["Title"].startswith("舞蹈.mp4  ↔  song.m4a\n")
    assert _decode(path).shape == (HEIGHT, WIDTH, 3)


def test_unwritable_plot_path_is_a_processing_error(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    with pytest.raises(ProcessingError) as info:
        write_plot(_result(rng), tmp_path / "missing" / "plot.png")
    assert info.value.code == "PROCESSING_FAILED"


def test_importing_the_plot_module_does_not_load_matplotlib() -> None:
    code = "import sys, beatsync.engine.output.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _fields(result: SyncResult) -> dict[str, object]:
    return {name: getattr(result, name) for name in SyncResult.__dataclass_fields__}
