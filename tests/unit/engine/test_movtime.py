"""Packet timestamps from the manifest's tables against FFmpeg's own demuxer, on real files.

Each file is written by FFmpeg's MP4/MOV muxer with the shape phones give their files (B-frames
and the edit list that hides their delay, negative composition offsets, variable frame rate, a
delayed start, HEVC in MOV) or patched to skip its first frames through the edit list; its tables
are read from the boxes by the test kit's reference client, never through FFmpeg.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from beatsync.engine.media.manifest import parse_manifest
from beatsync.engine.media.movtime import seek_packet, video_timeline
from beatsync.engine.media.probe import probe
from beatsync.testkit.audiofirst import video_manifest

FPS = 30


def _write(
    path: Path,
    *,
    codec: str = "libx264",
    bframes: int = 0,
    options: dict[str, str] | None = None,
    vfr: bool = False,
    start: int = 0,
    frames: int = 75,
) -> Path:
    rng = np.random.default_rng(5)
    tb = Fraction(1, FPS * 10)
    fmt = "mov" if path.suffix == ".mov" else "mp4"
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.time_base = tb
        gop = f"keyint=25:min-keyint=25:scenecut=0:bframes={bframes}"
        key = "x264-params" if codec == "libx264" else "x265-params"
        stream.options = {
            "preset": "ultrafast",
            key: gop + (":log-level=error" * (key != "x264-params")),
        }
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        t = start
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                rng.integers(0, 255, (96, 160, 3)).astype(np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = t, tb
            t += (7, 13, 10, 20)[i % 4] if vfr else 10
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        for k in range(0, 48000 * frames // FPS, 1024):
            sound = av.AudioFrame.from_ndarray(
                np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
            )
            sound.sample_rate, sound.pts = 48000, k
            container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    return path


def _skip_frames(path: Path, out: Path, frames: int) -> Path:
    """A copy whose video edit list starts ``frames`` frames into the media (a trimmed clip)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"elst") + 4  # the video track is the first
    version, count = data[at], struct.unpack(">I", data[at + 4 : at + 8])[0]
    assert version == 0
    assert count == 1
    duration, media_time = struct.unpack(">Ii", data[at + 8 : at + 16])
    assert media_time == 0
    skip = frames * 640  # ticks of 1/19200 s: FFmpeg's MP4 timescale for 30 fps
    struct.pack_into(">Ii", data, at + 8, duration - frames * 1000 // FPS, skip)
    out.write_bytes(bytes(data))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mov")
    made = {
        "plain": _write(d / "plain.mp4"),
        "bframes-edit": _write(d / "b.mp4", bframes=2),
        "bframes-no-edit": _write(d / "bn.mp4", bframes=2, options={"use_editlist": "0"}),
        "negative-ctts": _write(
            d / "neg.mp4", bframes=2, options={"movflags": "negative_cts_offsets"}
        ),
        "negative-ctts-no-edit": _write(
            d / "negn.mp4",
            bframes=2,
            options={"movflags": "negative_cts_offsets", "use_editlist": "0"},
        ),
        "vfr-bframes": _write(d / "vfr.mp4", bframes=2, vfr=True),
        "delayed": _write(d / "delay.mp4", start=50),
        "delayed-bframes": _write(d / "delayb.mp4", bframes=3, start=50),
        "hevc-mov": _write(d / "hevc.mov", codec="libx265", bframes=3),
    }
    made["trimmed-start"] = _skip_frames(made["plain"], d / "trim.mp4", 7)
    return made


@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "bframes-edit",
        "bframes-no-edit",
        "negative-ctts",
        "negative-ctts-no-edit",
        "vfr-bframes",
        "delayed",
        "delayed-bframes",
        "hevc-mov",
        "trimmed-start",
    ],
)
def test_timestamps_are_the_demuxers(files: dict[str, Path], name: str) -> None:
    path = files[name]
    manifest = parse_manifest(video_manifest(path))
    timeline = video_timeline(manifest.video, manifest.movie_timescale)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base == timeline.time_base
        packets = [
            (p.dts, p.pts, p.is_keyframe, p.is_discard) for p in container.demux(stream) if p.size
        ]
    mine = list(
        zip(
            timeline.dts.tolist(),
            timeline.pts.tolist(),
            timeline.key.tolist(),
            timeline.discard.tolist(),
            strict=True,
        )
    )
    assert mine == packets
    info = probe(path, require_video=True).video
    assert info is not None
    assert timeline.start == info.start_time
    assert timeline.duration == pytest.approx(info.duration, abs=1e-9)


def test_the_shapes_under_test_are_there(files: dict[str, Path]) -> None:
    """Each file has the feature its name promises (else the comparison proves less)."""

    def table(name: str) -> dict[str, object]:
        video: dict[str, object] = video_manifest(files[name])["video"]
        return video

    assert table("bframes-edit")["edits"][0][1] > 0  # type: ignore[index]
    assert table("bframes-no-edit")["edits"] is None
    assert min(v for _, v in table("negative-ctts")["ctts"]) < 0  # type: ignore[union-attr]
    assert len({d for _, d in table("vfr-bframes")["stts"]}) > 1  # type: ignore[union-attr]
    assert table("delayed")["edits"][0][1] == -1  # type: ignore[index]
    manifest = parse_manifest(video_manifest(files["trimmed-start"]))
    timeline = video_timeline(manifest.video, manifest.movie_timescale)
    assert timeline.discard.sum() == 7


@pytest.mark.parametrize(
    "name", ["plain", "bframes-edit", "negative-ctts", "negative-ctts-no-edit", "delayed-bframes",
             "hevc-mov", "vfr-bframes"],
)  # fmt: skip
def test_a_seek_lands_where_the_demuxers_does(files: dict[str, Path], name: str) -> None:
    path = files[name]
    manifest = parse_manifest(video_manifest(path))
    timeline = video_timeline(manifest.video, manifest.movie_timescale)
    tb = timeline.time_base
    landed = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for seconds in np.arange(0.0, 2.6, 0.0123):
            container.seek(int(seconds / tb), stream=stream, backward=True)
            first = next(iter(container.demux(stream)))
            i = seek_packet(timeline, float(seconds))
            landed.append(((int(timeline.dts[i]), int(timeline.pts[i])), (first.dts, first.pts)))
    assert [mine for mine, _ in landed] == [theirs for _, theirs in landed]
    assert len({theirs for _, theirs in landed}) >= 3  # several keyframes were landed on
