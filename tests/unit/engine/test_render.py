"""render(): the written MP4 checked against known truth.

The media is generated here: videos whose packets and frame times are known, and a reference of
seeded noise under a random envelope, so a cross-correlation pins the audio's position in the
reference to a fraction of a sample. Every check reads the output file back.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.signal import butter, resample_poly, sosfilt

from beatsync.engine import (
    Cut,
    Mapping,
    MediaInfo,
    OptionsError,
    ProcessingError,
    RenderedOutput,
    RenderParams,
    probe,
    render,
)
from beatsync.engine import decode_audio as engine_decode
from beatsync.engine.media.forked import ForkedCall
from beatsync.engine.media.reference import keep_reference
from beatsync.engine.output.render import start_audio
from beatsync.engine.piece import Piece

audiosource = importlib.import_module("beatsync.engine.media.audiosource")
audiotrack = importlib.import_module("beatsync.engine.output.audiotrack")
videocopy = importlib.import_module("beatsync.engine.output.videocopy")

FPS = 30
TB = Fraction(1, 15360)
REF_RATE = 44_100  # the reference is resampled by the mapping …
LIVE_RATE = 48_000  # … the live sound is already on the output's grid
BT709 = 1


def level(i: int) -> int:
    """Brightness of source frame ``i``: neighbours differ, so a frame is known by its level."""
    return 16 + (9 * i) % 207


def write_video(
    path: Path,
    *,
    codec: str = "libx264",
    seconds: float = 8.0,
    rotation: int = 0,
    vfr: bool = False,
    seed: int = 0,
) -> Path:
    """Flat frames of brightness ``level(i)``, B-frames, a keyframe every 30 frames, live audio."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([384, 512, 704], size=int(seconds * FPS)) if vfr else None
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.time_base = video.codec_context.time_base = TB
        gop = "keyint=30:min-keyint=30:scenecut=0:bframes=2"
        video.options = (
            {"preset": "veryfast", "x264-params": f"{gop}:b-adapt=0"}
            if codec == "libx264"
            else {"preset": "ultrafast", "x265-params": f"{gop}:open-gop=1:log-level=error"}
        )
        for tag in ("color_primaries", "color_trc", "colorspace"):
            setattr(video.codec_context, tag, BT709)
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream("aac", rate=LIVE_RATE)
        audio.layout = "stereo"
        pts = 0
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), level(i), np.uint8))
            frame.pts, frame.time_base = pts, TB
            pts += int(steps[i]) if steps is not None else 512
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        live = noise(rng, int(seconds * LIVE_RATE), LIVE_RATE) * np.float32(0.5)
        _encode_audio(out, audio, live, LIVE_RATE)
    return path


def noise(rng: np.random.Generator, n: int, rate: int = REF_RATE) -> NDArray[np.float32]:
    """Stereo noise below 3.5 kHz: AAC keeps such a waveform (above 4 kHz the encoder may swap
    noise-like bands for synthetic noise, which no correlation can follow)."""
    band = butter(6, 3500, fs=rate, output="sos")
    return (sosfilt(band, rng.standard_normal((2, n)), axis=1) * 0.25).astype(np.float32)


def write_reference(
    path: Path, *, seconds: float = 14.0, seed: int = 7, rate: int = REF_RATE, mono: bool = False
) -> Path:
    """Noise under a slowly wandering envelope, no silence, nothing repeats: AAC in MP4, or
    16-bit mono WAV."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    knots = np.arange(0, n + rate // 10, rate // 10)
    envelope = np.interp(np.arange(n), knots, rng.uniform(0.3, 1.0, knots.size))
    signal = noise(rng, n, rate)[: 1 if mono else 2] * envelope.astype(np.float32)
    with av.open(str(path), "w", format="wav" if mono else "mp4") as out:
        stream = out.add_stream("pcm_s16le" if mono else "aac", rate=rate)
        stream.layout = "mono" if mono else "stereo"
        if not mono:
            stream.bit_rate = 256_000
        _encode_audio(out, stream, signal, rate)
    return path


def _encode_audio(
    out: av.container.OutputContainer, stream: av.AudioStream, x: NDArray[np.float32], rate: int
) -> None:
    layout = "mono" if x.shape[0] == 1 else "stereo"
    for k in range(0, x.shape[1], 4096):
        chunk = np.ascontiguousarray(x[:, k : k + 4096])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, k, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


@dataclass(frozen=True)
class Pkt:
    pts: int
    dts: int
    key: bool
    data: bytes


def packets(path: Path | str) -> tuple[list[Pkt], Fraction]:
    """Video packets in decode order, and the stream's time base."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        found = [
            Pkt(p.pts, p.dts, p.is_keyframe, bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None and p.dts is not None
        ]
        return found, Fraction(stream.time_base)


def decode_audio(path: Path | str) -> tuple[NDArray[np.float64], int, float]:
    """(channels × samples, rate, time of the first sample)."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    data = np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.float64)
    return data, frames[0].sample_rate, float(frames[0].time)


Track = tuple[NDArray[np.float64], int, float]


def fine(path: Path | str) -> Track:
    """The first channel upsampled 8 times, so linear interpolation between its samples is
    accurate far into the audio band: (samples, rate, time of the first sample)."""
    data, rate, first = decode_audio(path)
    return resample_poly(data[0], 8, 1), 8 * rate, first


def at_times(track: Track, times: NDArray[np.float64]) -> NDArray[np.float64]:
    signal, rate, first = track
    return np.interp((times - first) * rate, np.arange(signal.size), signal, 0.0, 0.0)


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of every MP4 box, descending into the containers that hold tracks."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        size = size or end - start
        yield kind, data[start + head : start + size]
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"):
            yield from boxes(data, start + head, start + size)
        start += size


def lag(
    out: NDArray[np.float64],
    at: float,
    reference: Track,
    bgm_time: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    window: float = 0.1,
    search: float = 0.01,
) -> tuple[float, float]:
    """How late (s) the output audio from output time ``at`` is against the reference content
    expected there (reference time ``bgm_time(s)`` at ``s`` seconds after ``at``), and the
    normalised peak of their cross-correlation."""
    n0, n, m = round(at * 48_000), round(window * 48_000), round(search * 48_000)
    segment = out[0, n0 : n0 + n]
    expected = at_times(reference, bgm_time(np.arange(-m, n + m) / 48_000))
    cc = np.array([segment @ expected[k : k + n] for k in range(2 * m + 1)])
    k = int(np.argmax(cc))
    frac = 0.0
    if 0 < k < 2 * m:
        a, b, c = cc[k - 1 : k + 2]
        frac = 0.5 * (a - c) / (a - 2 * b + c)
    match = expected[k : k + n]
    peak = cc[k] / np.sqrt((segment @ segment) * (match @ match))
    return (m - k - frac) / 48_000, float(peak)


@pytest.fixture(scope="module")
def render_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MediaInfo]:
    folder = tmp_path_factory.mktemp("render")
    made = {
        "h264": write_video(folder / "h264.mp4"),
        "hevc": write_video(folder / "hevc.mov", codec="libx265", seed=1),
        "rotated": write_video(folder / "rotated.mp4", rotation=90, seed=2),
        "vfr": write_video(folder / "vfr.mp4", vfr=True, seed=3),
        "bgm": write_reference(folder / "bgm.m4a"),
        "mono": write_reference(folder / "mono.wav", rate=32_000, mono=True, seed=8),
    }
    return {
        name: probe(path, require_video=name not in ("bgm", "mono")) for name, path in made.items()
    }


@pytest.fixture(scope="module")
def render_reference(render_media: dict[str, MediaInfo]) -> Track:
    return fine(render_media["bgm"].path)


def expected_run(source: list[Pkt], tb: Fraction, cut: Cut) -> list[Pkt]:
    """The source's packets from the last keyframe shown at or before the cut start, decode
    order, without that keyframe's leading pictures (shown before it)."""
    key = max(i for i, p in enumerate(source) if p.key and p.pts * tb <= cut.start)
    return [p for p in source[key:] if p.pts >= source[key].pts]


def check_copy(
    result: RenderedOutput,
    dance: MediaInfo,
    mapping: Mapping,
    cut: Cut,
    reference: Track,
) -> None:
    """Everything a stream-copied output must satisfy."""
    source, tb = packets(dance.path)
    written, out_tb = packets(result.path)
    run = expected_run(source, tb, cut)
    # The copied packets are the source's own bytes, in order, from the keyframe at/before the cut.
    assert [p.data for p in written] == [p.data for p in run[: len(written)]]
    assert result.video_start == pytest.approx(float(run[0].pts * tb))
    assert run[0].pts * tb <= cut.start < run[0].pts * tb + 1
    # Gapless in display order; everything shown before the cut end is in, at most 2 frames more.
    shown = sorted(p.pts for p in run[: len(written)])
    assert shown == sorted(p.pts for p in run)[: len(written)]
    before_end = sum(1 for p in run if p.pts * tb < cut.end)
    assert before_end <= len(written) <= before_end + 2
    assert result.frames == len(written)
    following = min((p.pts for p in run[len(written) :]), default=None)
    if following is not None:
        assert result.video_end == pytest.approx(float(following * tb))
    # Timestamps copied exactly: the same differences, rebased so the first packet decodes at 0.
    assert written[0].dts == 0
    rebase = run[0].dts * tb
    assert [p.pts * out_tb for p in written] == [p.pts * tb - rebase for p in run[: len(written)]]
    assert result.first_frame_time == pytest.approx(float((run[0].pts - run[0].dts) * tb))
    # Every copied frame decodes, in display order, to the source frame it came from.
    index = {pts: i for i, pts in enumerate(sorted(p.pts for p in source))}
    with av.open(result.path) as container:
        levels = [float(f.to_ndarray(format="gray").mean()) for f in container.decode(video=0)]
    assert levels == pytest.approx([level(index[pts]) for pts in shown], abs=3)
    # No edit list: players that ignore edit lists see the same timeline.
    data = Path(result.path).read_bytes()
    kinds = [kind for kind, _ in boxes(data)]
    assert b"elst" not in kinds
    assert kinds.index(b"moov") < kinds.index(b"mdat")  # faststart
    # AAC-LC 48 kHz stereo from time 0, and in sync at start, middle and end: the audio at each
    # output frame's time is the reference at mapping.bgm_time(that frame's dance time).
    info = probe(result.path, require_video=True)
    assert info.audio is not None
    assert info.audio.codec == "aac"
    assert (info.audio.sample_rate, info.audio.channels) == (48_000, 2)
    audio, rate, first = decode_audio(result.path)
    assert (rate, first) == (48_000, 0.0)
    out_times = sorted(p.pts * out_tb for p in written)
    dance_times = [p * tb for p in shown]
    picks = [j for j, t in enumerate(out_times) if 0.06 < t < out_times[-1] - 0.15]
    for j in (picks[0], picks[len(picks) // 2], picks[-1]):
        dance_t = float(dance_times[j])
        delay, peak = lag(
            audio,
            float(out_times[j]),
            reference,
            lambda s, t=dance_t: mapping.bgm_time_array(t + s),
        )
        assert peak > 0.8
        assert abs(delay) < 1e-3, (
            f"audio {delay * 1e3:.3f} ms off at output {float(out_times[j]):.3f} s"
        )


def test_copy_h264_with_b_frames_is_byte_exact_and_in_sync(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(1.7, 1.0003), Cut(2.45, 6.3, "music", "music")
    result = render(
        render_media["h264"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    assert (result.video_copied, result.video_codec, result.rotation) == (True, "h264", 0)
    assert result.video_start == pytest.approx(2.0)  # keyframes every second
    check_copy(result, render_media["h264"], mapping, cut, render_reference)
    out = probe(result.path, require_video=True)
    assert out.video is not None
    assert (out.video.color_primaries, out.video.color_trc, out.video.colorspace) == (BT709,) * 3
    colr = Path(result.path).read_bytes().split(b"colrnclx", 1)[1][:6]
    assert struct.unpack(">HHH", colr) == (BT709,) * 3  # the container's own colour tag


def test_copy_hevc_open_gop_is_tagged_hvc1_and_in_sync_when_slowed(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(3.0, 0.95), Cut(1.5, 5.2, "music", "music")
    result = render(
        render_media["hevc"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    assert (result.video_copied, result.video_codec) == (True, "hevc")
    with av.open(result.path) as container:
        assert container.streams.video[0].codec_tag == "hvc1"
    check_copy(result, render_media["hevc"], mapping, cut, render_reference)


def test_copy_keeps_rotation(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(0.5, 1.0), Cut(0.0, 3.9, "video", "music")
    result = render(
        render_media["rotated"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    with av.open(result.path) as container:
        assert next(container.decode(video=0)).rotation == 90
    assert result.rotation == 90
    check_copy(result, render_media["rotated"], mapping, cut, render_reference)


def test_copy_keeps_variable_frame_rate_timestamps(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(2.2, 0.9998), Cut(3.1, 7.0, "music", "video")
    result = render(
        render_media["vfr"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    check_copy(result, render_media["vfr"], mapping, cut, render_reference)  # pts copied exactly


def test_stitched_audio_segments_stay_continuous_and_in_sync(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audiotrack, "_SEGMENT_MIN_SECONDS", 1.0)
    monkeypatch.setattr(audiotrack, "_workers", lambda: 3)
    mapping, cut = Mapping(1.2, 1.0001), Cut(1.0, 7.5, "music", "music")
    result = render(
        render_media["h264"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    with av.open(result.path) as container:
        pts = [p.pts for p in container.demux(audio=0) if p.size]
    assert pts == [1024 * k for k in range(len(pts))]  # three encoders, one gapless track
    audio, _, _ = decode_audio(result.path)
    origin = result.video_start - result.first_frame_time
    seams = [round(len(pts) * i / 3) * 1024 / 48_000 for i in (1, 2)]
    for at in (t + d for t in seams for d in (-0.05, -0.01, 0.0)):
        delay, peak = lag(
            audio,
            at,
            reference=render_reference,
            bgm_time=lambda s, at=at: mapping.bgm_time_array(origin + at + s),
        )
        assert peak > 0.8
        assert abs(delay) < 1e-3


def test_live_sound_is_mixed_under_the_music_at_the_given_gain(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(1.7, 1.0), Cut(2.0, 6.0, "music", "music")
    params = RenderParams(live_mix_db=-6.0)
    dance = render_media["h264"]
    result = render(
        dance, render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut, params=params
    )
    audio, _, _ = decode_audio(result.path)
    origin = result.video_start - result.first_frame_time
    t = np.arange(48_000, 96_000) / 48_000  # output seconds 1–2
    music = at_times(render_reference, mapping.bgm_time_array(origin + t))
    room = at_times(fine(dance.path), origin + t)
    gains, *_ = np.linalg.lstsq(np.stack([music, room], axis=1), audio[0, 48_000:96_000])
    assert gains == pytest.approx([1.0, 10 ** (-6 / 20)], abs=0.03)


def test_a_mono_wav_reference_fills_both_channels_in_sync(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    mapping, cut = Mapping(4.25, 1.0), Cut(1.2, 5.0, "music", "music")
    mono = render_media["mono"]
    result = render(render_media["h264"], mono, tmp_path / "out.mp4", mapping=mapping, cut=cut)
    audio, _, _ = decode_audio(result.path)
    assert np.corrcoef(audio[0, 9600:], audio[1, 9600:])[0, 1] > 0.99
    origin = result.video_start - result.first_frame_time
    for at in (0.5, 2.0, 3.5):
        delay, peak = lag(
            audio, at, fine(mono.path), lambda s, at=at: mapping.bgm_time_array(origin + at + s)
        )
        assert peak > 0.8
        assert abs(delay) < 1e-3


def test_audio_is_silent_where_the_reference_has_nothing(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = (
        Mapping(-1.5, 1.0),
        Cut(0.2, 4.0, "video", "music"),
    )  # reference starts at dance 1.5 s
    result = render(
        render_media["h264"], render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut
    )
    audio, _, _ = decode_audio(result.path)
    origin = result.video_start - result.first_frame_time
    before = audio[:, : round((1.5 - origin - 0.05) * 48_000)]
    assert np.sqrt(np.mean(before**2)) < 1e-3
    delay, peak = lag(
        audio, 2.0 - origin, render_reference, lambda s: mapping.bgm_time_array(2.0 + s)
    )
    assert peak > 0.8
    assert abs(delay) < 1e-3


def test_reencode_starts_at_the_cut_scaled_rotated_and_in_sync(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
) -> None:
    mapping, cut = Mapping(2.5, 1.0003), Cut(2.45, 5.0, "music", "music")
    params = RenderParams(reencode=True, max_height=120)
    dance = render_media["rotated"]
    result = render(
        dance, render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut, params=params
    )
    first = 74  # the first frame at or after 2.45 s is frame 74, at 2.4667 s
    assert result.video_start == pytest.approx(first / FPS)
    assert (result.video_copied, result.video_codec, result.rotation) == (False, "h264", 90)
    info = probe(result.path, require_video=True)
    assert info.video is not None
    assert info.video.rotation == 90
    assert info.video.display_size[1] <= 120
    assert info.video.width % 2 == info.video.height % 2 == 0
    assert info.video.display_size == pytest.approx((90, 120), abs=2)  # aspect kept
    assert (info.video.color_primaries, info.video.color_trc, info.video.colorspace) == (BT709,) * 3
    with av.open(result.path) as container:
        frames = list(container.decode(video=0))
    brightness = [float(f.to_ndarray(format="gray").mean()) for f in frames[:3]]
    assert brightness == pytest.approx([level(first), level(first + 1), level(first + 2)], abs=3)
    assert frames[0].time == pytest.approx(result.first_frame_time)
    assert len(frames) == result.frames == 76  # frames 74–149 are shown before 5.0 s
    audio, _, _ = decode_audio(result.path)
    for j in (3, 38, 70):  # output frame j shows source frame first + j
        delay, peak = lag(
            audio,
            frames[j].time,
            render_reference,
            lambda s, j=j: mapping.bgm_time_array((first + j) / FPS + s),
        )
        assert peak > 0.8
        assert abs(delay) < 1e-3


def test_progress_rises_to_one(render_media: dict[str, MediaInfo], tmp_path: Path) -> None:
    seen: list[float] = []
    render(
        render_media["h264"],
        render_media["bgm"],
        tmp_path / "out.mp4",
        mapping=Mapping(1.0),
        cut=Cut(0.5, 3.0, "user", "user"),
        on_progress=seen.append,
    )
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert len(seen) > 5


def _no_leftovers(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name == "beatsync-audio"]


def test_bad_mapping_or_cut_is_refused_before_any_work(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    dance, bgm = render_media["h264"], render_media["bgm"]
    with pytest.raises(OptionsError):
        render(
            dance,
            bgm,
            tmp_path / "out.mp4",
            mapping=Mapping(0.0, 0.0),
            cut=Cut(1, 2, "user", "user"),
        )
    with pytest.raises(OptionsError):
        render(
            dance,
            bgm,
            tmp_path / "out.mp4",
            mapping=Mapping(float("nan")),
            cut=Cut(1, 2, "user", "user"),
        )
    with pytest.raises(OptionsError):
        render(
            dance, bgm, tmp_path / "out.mp4", mapping=Mapping(0.0), cut=Cut(20, 30, "user", "user")
        )
    _no_leftovers(tmp_path)


def test_unwritable_place_raises_processing_error(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    with pytest.raises(ProcessingError):
        render(
            render_media["h264"],
            render_media["bgm"],
            tmp_path / "missing" / "out.mp4",
            mapping=Mapping(1.0),
            cut=Cut(1, 2, "user", "user"),
        )
    _no_leftovers(tmp_path)


def test_failure_while_writing_leaves_no_partial_file(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    def explode(fraction: float) -> None:
        if fraction > 0.3:
            raise RuntimeError("stop here")

    with pytest.raises(ProcessingError) as caught:
        render(
            render_media["h264"],
            render_media["bgm"],
            tmp_path / "out.mp4",
            mapping=Mapping(1.0),
            cut=Cut(0.5, 7.0, "user", "user"),
            on_progress=explode,
        )
    assert isinstance(caught.value.__cause__, RuntimeError)
    _no_leftovers(tmp_path)


def test_failure_in_the_audio_workers_leaves_no_partial_file(
    render_media: dict[str, MediaInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, n0: int, n1: int) -> None:
        raise av.error.InvalidDataError(1094995529, "broken reference")

    monkeypatch.setattr(audiosource.ResampledSource, "take", broken)
    with pytest.raises(ProcessingError):
        render(
            render_media["h264"],
            render_media["bgm"],
            tmp_path / "out.mp4",
            mapping=Mapping(1.0),
            cut=Cut(0.5, 7.0, "user", "user"),
        )
    _no_leftovers(tmp_path)


class _CountedTracks:
    """Every AudioTrack made while patched in, so a test can see which ones ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[object] = []
        original = audiotrack.AudioTrack.__init__

        def init(track: object, plan: object) -> None:
            original(track, plan)
            self.made.append(track)

        monkeypatch.setattr(audiotrack.AudioTrack, "__init__", init)


@pytest.mark.parametrize(
    ("early_cut", "final_cut", "tracks_made"),
    [
        # The picture check moved the start within the group of pictures: same keyframe, same
        # end, so the same audio, adopted.
        (Cut(2.1, 6.3, "music", "music"), Cut(2.45, 6.3, "picture", "music"), 1),
        # A later keyframe and an earlier end: the early track is stopped, the audio encoded
        # again.
        (Cut(2.45, 7.0, "music", "music"), Cut(3.2, 6.3, "picture", "picture"), 2),
    ],
    ids=["adopted", "encoded-again"],
)
def test_audio_started_before_the_cut_is_final(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    early_cut: Cut,
    final_cut: Cut,
    tracks_made: int,
) -> None:
    tracks = _CountedTracks(monkeypatch)
    dance, bgm = render_media["h264"], render_media["bgm"]
    mapping = Mapping(1.7, 1.0003)
    early = start_audio(dance, bgm, mapping=mapping, cut=early_cut)
    result = render(dance, bgm, tmp_path / "out.mp4", mapping=mapping, cut=final_cut, early=early)
    assert len(tracks.made) == tracks_made
    first = tracks.made[0]
    assert isinstance(first, audiotrack.AudioTrack)
    assert first.cancel.is_set()  # stopped: by the render when done with it, or at once
    assert not any(thread.is_alive() for thread in first.threads)
    check_copy(result, dance, mapping, final_cut, render_reference)


def test_no_audio_starts_early_for_a_reencode_or_a_cut_that_cannot_be_rendered(
    render_media: dict[str, MediaInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = _CountedTracks(monkeypatch)
    dance, bgm = render_media["h264"], render_media["bgm"]
    cut = Cut(2.45, 6.3, "music", "music")
    with start_audio(
        dance, bgm, mapping=Mapping(1.7), cut=cut, params=RenderParams(reencode=True)
    ) as early:
        assert early.take() is None
    with start_audio(dance, bgm, mapping=Mapping(1.7), cut=Cut(50.0, 60.0, "user", "user")) as late:
        assert late.take() is None
    assert tracks.made == []


def test_a_reencode_to_the_videos_last_frame_writes_every_frame_to_it(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    # A cut that reaches the end (no trim, or a file that is itself a kept span) reads the
    # stream to its end: the demuxer's empty packet there is not a second flush.
    dance, bgm = render_media["h264"], render_media["bgm"]
    cut = Cut(6.0, 8.0, "video", "video")
    params = RenderParams(reencode=True, max_height=120)
    result = render(dance, bgm, tmp_path / "out.mp4", mapping=Mapping(1.7), cut=cut, params=params)
    assert result.video_start == pytest.approx(180 / FPS)
    assert result.video_end == pytest.approx(240 / FPS)
    with av.open(result.path) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == result.frames == 60  # frames 180–239, the last of the video
    brightness = [float(f.to_ndarray(format="gray").mean()) for f in (frames[0], frames[-1])]
    assert brightness == pytest.approx([level(180), level(239)], abs=3)


def _collect(path: str, decoded: audiosource.DecodedStream) -> tuple[int, int] | None:
    engine_decode(path, on_frame=decoded.collect)
    return decoded.collected


def _decoded(info: MediaInfo) -> audiosource.DecodedStream:
    """The stream's own samples kept by a forked child's decode, as the pipeline does."""
    assert info.audio is not None
    decoded = audiosource.DecodedStream.for_stream(info.path, info.audio, info.duration)
    assert decoded is not None
    with ForkedCall(_collect, info.path, decoded) as collecting:
        assert collecting.forked
        decoded.span = collecting.result()
    assert decoded.span is not None
    return decoded


def test_a_stream_decoded_ahead_holds_what_decoding_the_file_gives(
    render_media: dict[str, MediaInfo],
) -> None:
    info = render_media["bgm"]
    decoded = _decoded(info)
    decoder = audiosource.StreamDecoder(info.path, info.audio.index if info.audio else 0)
    blocks = list(decoder.blocks(0))
    decoder.close()
    lo, hi = blocks[0][0], blocks[-1][0] + blocks[-1][1].shape[1]
    assert decoded.span == (lo, hi)
    whole = np.concatenate([b for _, b in blocks], axis=1)
    np.testing.assert_array_equal(decoded.read(lo, hi), whole)
    # Silence outside what was decoded, on both sides.
    edges = decoded.read(lo - 100, lo + 10)
    np.testing.assert_array_equal(edges[:, :100], 0.0)
    np.testing.assert_array_equal(edges[:, 100:], whole[:, :10])
    decoded.close()


def test_keeping_only_the_reference_holds_the_alignment_passs_very_samples(
    render_media: dict[str, MediaInfo],
) -> None:
    info = render_media["bgm"]
    ahead = _decoded(info)
    assert info.audio is not None
    kept = audiosource.DecodedStream.for_stream(info.path, info.audio, info.duration)
    assert kept is not None
    kept.span = keep_reference(info.path, kept)
    assert kept.span == ahead.span
    lo, hi = ahead.span
    np.testing.assert_array_equal(kept.read(lo - 10, hi + 10), ahead.read(lo - 10, hi + 10))
    kept.close()
    ahead.close()


def test_a_stream_read_while_a_child_fills_it_waits_for_the_samples(
    render_media: dict[str, MediaInfo],
) -> None:
    info = render_media["bgm"]
    assert info.audio is not None
    ahead = _decoded(info)
    assert ahead.span is not None
    lo, hi = ahead.span
    filled = audiosource.DecodedStream.for_stream(info.path, info.audio, info.duration)
    assert filled is not None
    filled.begin_filling()
    with ForkedCall(keep_reference, info.path, filled) as filling:
        assert filling.forked
        # Asked for at once, before the child can have got there: the read waits for it.
        late = filled.read(hi - 5000, hi + 100)
        np.testing.assert_array_equal(late, ahead.read(hi - 5000, hi + 100))
        filled.span = filling.result()
    assert filled.span == (lo, hi)
    np.testing.assert_array_equal(filled.read(lo - 10, hi + 10), ahead.read(lo - 10, hi + 10))
    filled.close()
    ahead.close()


def test_a_read_does_not_wait_for_ever_for_a_filler_that_stopped(
    render_media: dict[str, MediaInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    info = render_media["bgm"]
    assert info.audio is not None
    monkeypatch.setattr(audiosource, "_STALL_S", 0.05)
    waiting = audiosource.DecodedStream.for_stream(info.path, info.audio, info.duration)
    assert waiting is not None
    waiting.begin_filling()  # and no filler comes
    np.testing.assert_array_equal(waiting.read(0, 100), 0.0)
    assert waiting.stalled
    waiting.close()


def test_a_stream_too_long_to_hold_is_decoded_while_rendering(
    render_media: dict[str, MediaInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    info = render_media["bgm"]
    assert info.audio is not None
    monkeypatch.setattr(audiosource.DecodedStream, "MAX_BYTES", 1 << 20)
    assert audiosource.DecodedStream.for_stream(info.path, info.audio, info.duration) is None


def test_a_stream_longer_than_its_probe_said_is_given_up_not_cut_short(
    render_media: dict[str, MediaInfo],
) -> None:
    info = render_media["bgm"]
    assert info.audio is not None
    short = dataclasses.replace(info.audio, duration=3.0)
    decoded = audiosource.DecodedStream.for_stream(info.path, short, 3.0)
    assert decoded is not None
    assert _collect(info.path, decoded) is None
    decoded.close()


def test_render_reads_the_decoded_reference_instead_of_the_file(
    render_media: dict[str, MediaInfo],
    render_reference: Track,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dance, bgm = render_media["h264"], render_media["bgm"]
    decoded = _decoded(bgm)
    opened: list[str] = []
    original = audiosource.StreamDecoder.__init__

    def spy(decoder: object, path: str, index: int) -> None:
        opened.append(path)
        original(decoder, path, index)

    monkeypatch.setattr(audiosource.StreamDecoder, "__init__", spy)
    mapping, cut = Mapping(1.7, 1.0003), Cut(2.45, 6.3, "music", "music")
    result = render(dance, bgm, tmp_path / "out.mp4", mapping=mapping, cut=cut, decoded=decoded)
    assert opened == []
    check_copy(result, dance, mapping, cut, render_reference)
    decoded.close()


def _top_boxes(path: str) -> list[tuple[bytes, int]]:
    data = Path(path).read_bytes()
    out, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        out.append((kind, size))
        at += size
    return out


def test_the_index_is_written_once_in_room_reserved_in_front(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    dance = render_media["h264"]
    assert dance.video is not None
    assert dance.video.frames == 240  # 8 s at 30 fps, from the container's index
    result = render(
        dance,
        render_media["bgm"],
        tmp_path / "out.mp4",
        mapping=Mapping(1.7),
        cut=Cut(0.5, 7.5, "user", "user"),
    )
    boxes_ = _top_boxes(result.path)
    kinds = [kind for kind, _ in boxes_]
    assert kinds[:3] == [b"ftyp", b"moov", b"free"]
    assert kinds.index(b"mdat") > kinds.index(b"moov")
    (moov,) = [size for kind, size in boxes_ if kind == b"moov"]
    room = moov + boxes_[2][1]
    # The room is generous (80 bytes a sample) and the index far smaller than it.
    assert moov < room / 3


@pytest.mark.parametrize("frames", [0, 1], ids=["unknown", "implausible"])
def test_without_a_trustworthy_packet_count_faststart_moves_the_index_to_the_front(
    render_media: dict[str, MediaInfo], render_reference: Track, tmp_path: Path, frames: int
) -> None:
    """No count, or one that cannot be the whole stream (a fragmented MP4 says 1)."""
    dance = render_media["h264"]
    assert dance.video is not None
    uncounted = dataclasses.replace(dance, video=dataclasses.replace(dance.video, frames=frames))
    mapping, cut = Mapping(1.7, 1.0003), Cut(2.45, 6.3, "music", "music")
    result = render(uncounted, render_media["bgm"], tmp_path / "out.mp4", mapping=mapping, cut=cut)
    kinds = [kind for kind, size in _top_boxes(result.path) if kind != b"free" or size > 8]
    assert kinds == [b"ftyp", b"moov", b"mdat"]
    check_copy(result, dance, mapping, cut, render_reference)


def test_early_audio_is_stopped_when_the_render_refuses_its_options(
    render_media: dict[str, MediaInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = _CountedTracks(monkeypatch)
    dance, bgm = render_media["h264"], render_media["bgm"]
    cut = Cut(2.45, 6.3, "music", "music")
    early = start_audio(dance, bgm, mapping=Mapping(1.7), cut=cut)
    with pytest.raises(OptionsError):
        render(dance, bgm, tmp_path / "out.mp4", mapping=Mapping(1.7, 3.0), cut=cut, early=early)
    (track,) = tracks.made
    assert isinstance(track, audiotrack.AudioTrack)
    assert track.cancel.is_set()
    assert not any(thread.is_alive() for thread in track.threads)
    _no_leftovers(tmp_path)


def test_early_audio_is_only_a_head_start_whatever_goes_wrong(
    render_media: dict[str, MediaInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job: object) -> None:
        raise ValueError("unexpected")

    monkeypatch.setattr(
        importlib.import_module("beatsync.engine.output.render")._Job, "copy_plan", broken
    )
    dance, bgm = render_media["h264"], render_media["bgm"]
    with start_audio(dance, bgm, mapping=Mapping(1.7), cut=Cut(2.45, 6.3, "music", "music")) as e:
        assert e.take() is None


def fake_packets(order: list[tuple[int, int, bool]]) -> list[SimpleNamespace]:
    """Stand-ins for demuxed packets: (pts, dts, keyframe) in decode order."""
    return [SimpleNamespace(pts=p, dts=d, is_keyframe=k, size=1) for p, d, k in order]


def test_run_keeps_b_frame_anchors_and_closes_the_gap_after_the_end() -> None:
    # A B-pyramid: decode order I0 P4 B2 b1 b3 P8 B6 b5 b7 P12 …, decode times from −1.
    shown = [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11]
    run = fake_packets([(p, d - 1, d == 0) for d, p in enumerate(shown)])
    selector = videocopy.RunSelector(0, 6)  # keep what is shown before 6
    kept: list[SimpleNamespace] = []
    for packet in run:
        chosen = selector.feed(packet)
        if chosen is None:
            break
        kept += chosen
    kept += selector.finish()
    assert [p.pts for p in kept] == [0, 4, 2, 1, 3, 8, 6, 5, 7]  # frames 0–8, no hole


def test_keyframe_search_takes_the_last_one_shown_at_or_before_the_time() -> None:
    gop = [(0, -1, True), (2, 0, False), (1, 1, False), (3, 2, True), (5, 3, False), (4, 4, False)]
    found = videocopy.scan_keyframe(iter(fake_packets(gop)), 4, from_start=False)
    assert [p.pts for p in found] == [3, 5, 4]
    # A seek that lands on a keyframe shown after the time must be retried further back …
    late = fake_packets([(5, 3, True), (7, 4, False)])
    assert videocopy.scan_keyframe(iter(late), 4, from_start=False) is None
    # … and from the start of the file, a time before the first frame starts at the first frame.
    assert [p.pts for p in videocopy.scan_keyframe(iter(late), 4, from_start=True)] == [5, 7]


def write_smooth_reference(path: Path, *, seconds: float = 14.0, seed: int = 11) -> Path:
    """Mono 16-bit WAV at 48 kHz of noise below 300 Hz: smooth from sample to sample, so a jump
    between two places of it stands out, yet nothing repeats."""
    rng = np.random.default_rng(seed)
    band = butter(8, 300, fs=LIVE_RATE, output="sos")
    x = sosfilt(band, rng.standard_normal(int(seconds * LIVE_RATE)))
    x = (0.5 * x / np.max(np.abs(x))).astype(np.float32)[None, :]
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=LIVE_RATE)
        stream.layout = "mono"
        _encode_audio(out, stream, x, LIVE_RATE)
    return path


def test_pieces_are_spliced_at_their_seams_in_sync_without_a_click(
    render_media: dict[str, MediaInfo], tmp_path: Path
) -> None:
    smooth = probe(write_smooth_reference(tmp_path / "smooth.wav"))
    samples, fine_rate, first = fine(smooth.path)
    reference = (samples / 32768.0, fine_rate, first)  # 16-bit PCM decodes to integers
    # A jump forward of 4.4 s at dance time 4.6 s, then back by 8 s at 5.9 s: three pieces.
    pieces = (
        Piece(2.0, 4.6, Mapping(1.7, 1.0003)),
        Piece(4.6, 5.9, Mapping(6.1, 1.0003)),
        Piece(5.9, 7.0, Mapping(-1.9, 1.0003)),
    )
    cut = Cut(2.45, 6.8, "music", "music")
    result = render(render_media["h264"], smooth, tmp_path / "out.mp4", mapping=pieces[0].mapping,
                    cut=cut, pieces=pieces)  # fmt: skip
    audio, rate, _ = decode_audio(result.path)
    origin = result.video_start - result.first_frame_time
    # In sync in every piece, right up to a few ms from its seams: each output time carries
    # the reference time its own piece maps the picture's dance time to.
    for piece in pieces:
        lo, hi = max(piece.start, cut.start) - origin, min(piece.end, cut.end) - origin
        for at in (lo + 0.015, (lo + hi) / 2, hi - 0.115):
            mapped = piece.mapping.bgm_time_array
            delay, peak = lag(audio, at, reference, lambda s, at=at, m=mapped: m(origin + at + s))
            assert peak > 0.99
            assert abs(delay) < 2e-5, (piece, at, delay)
    # No click: across each seam the output moves no faster than the music itself does;
    # a hard splice of the same two places would jump.
    step = np.abs(np.diff(audio[0]))
    steady = float(np.percentile(step, 99.99))
    for before, after in itertools.pairwise(pieces):
        n = round((after.start - origin) * rate)
        assert step[n - 480 : n + 480].max() <= 0.8 * steady
        times = origin + (n + np.arange(-1, 1)) / rate
        hard = np.array([
            at_times(reference, before.mapping.bgm_time_array(times[:1]))[0],
            at_times(reference, after.mapping.bgm_time_array(times[1:]))[0],
        ])  # fmt: skip
        assert abs(hard[1] - hard[0]) > 5 * steady
        # The crossfade (RenderParams.fade, 20 ms) is centred on the seam: halfway through it
        # both places sound at half gain.
        mid = at_times(reference, before.mapping.bgm_time_array(times[1:])) + at_times(
            reference, after.mapping.bgm_time_array(times[1:])
        )
        assert audio[0, n] == pytest.approx(0.5 * mid[0], abs=0.01)
