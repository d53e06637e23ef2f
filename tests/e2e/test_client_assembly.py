"""Audio-first assembly on the device (``src/beatsync/web/assemble``), run in Node, against the
server's own render of the same job.

For each generated class video the server path (``beatsync.engine.sync``) renders the reference
output; its cut gives the answer the service sends (``first_sample``/``end_sample``, found from
the source's packets) and its audio, remuxed without re-encoding, is the clean-audio M4A. The
module then assembles the output from the source and that M4A, and PyAV checks it: the same
video packets (bytes, pts, dts), the same audio packets, rotation and codec tag, and the sync
measured against the case's truth. The extraction is checked the same way: its M4A decodes to the
original's audio samples and its manifest equals the tables PyAV reads.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import math
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from beatsync.engine import Cut, Mapping, SyncResult, probe, render, sync
from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from beatsync.testkit.measure import sync_errors
from beatsync.testkit.mp4box import mp4_edit_lists
from truth_checks import MAX_SYNC_MS, assert_cut_matches

if TYPE_CHECKING:
    from conftest import Served

SCRIPT = Path(__file__).with_name("client_assembly.mjs")
READ_PIECE = 4 * 1024 * 1024  # the largest read the module may make of the video (parts.js)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _node(*args: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the client assembly tests", pytrace=False)
    done = subprocess.run(
        [node, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _faststart(src: Path, dst: Path) -> Path:
    """The same packets with the index in front, as a phone that writes it first."""
    with (
        av.open(str(src)) as inp,
        av.open(str(dst), "w", options={"movflags": "+faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


CASES = {
    # H.264 without B-frames, index at the end (FFmpeg's default).
    "h264-moov-end": lambda d: build_case(case_named("small-clean"), d),
    # HEVC in MOV with B-frames, portrait (rotation 270), QuickTime sound description.
    "hevc-mov-portrait": lambda d: build_case(case_named("small-hevc-portrait"), d),
    # H.264 with B-frames, portrait, index in front.
    "h264-bframes-faststart": lambda d: _bframes_faststart(d),
    # HEVC with B-frames tagged hev1, parameter sets in the sample entry: becomes hvc1.
    "hevc-hev1": lambda d: _hev1(d),
}


def _bframes_faststart(directory: Path) -> BuiltCase:
    spec = dataclasses.replace(
        case_named("small-clean"), name="small-bframes-portrait", b_frames=True, rotation=270
    )
    case = build_case(spec, directory)
    moved = _faststart(case.dance, directory / "small-bframes-portrait.faststart.mp4")
    return dataclasses.replace(case, dance=moved)


def _hev1(directory: Path) -> BuiltCase:
    spec = dataclasses.replace(
        case_named("small-clean"), name="small-hev1", codec="hevc", b_frames=True
    )
    case = build_case(spec, directory)
    moved = directory / "small-hev1.hev1.mp4"
    with av.open(str(case.dance)) as inp, av.open(str(moved), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        streams[inp.streams.video[0].index].codec_tag = "hev1"
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dataclasses.replace(case, dance=moved)


def _sample_entry_box(path: Path, kind: bytes) -> bytes:
    """The first ``kind`` box (``hvcC``, ``avcC``...) in the file's index, header included."""
    data = path.read_bytes()
    at = data.index(kind, data.index(b"moov")) - 4
    return data[at : at + int.from_bytes(data[at : at + 4], "big")]


def _packets(path: Path, kind: str) -> list[tuple[bytes, Fraction, Fraction, bool]]:
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        for p in container.demux(stream):
            if p.size == 0:
                continue
            tb = p.time_base
            out.append((bytes(p), Fraction(p.pts) * tb, Fraction(p.dts) * tb, p.is_keyframe))
    return out


def _clean_audio(rendered: Path, m4a: Path) -> None:
    """The server output's audio track alone, packets as they are, from 0, no edit list."""
    with av.open(str(rendered)) as inp:
        src = inp.streams.audio[0]
        with av.open(str(m4a), "w", format="ipod", options={"use_editlist": "0"}) as out:
            dst = out.add_stream_from_template(src)
            for packet in inp.demux(src):
                if packet.dts is None:
                    continue
                packet.stream = dst
                out.mux(packet)


def _answer(source: Path, rendered: Path) -> tuple[int, int]:
    """The decode-order sample span ``[first, end)`` of ``source`` the server copied into
    ``rendered``: every sample in it except the pictures shown before the keyframe (an open
    GOP's leading pictures), which a copy leaves out."""
    src = _packets(source, "video")
    out = [p[0] for p in _packets(rendered, "video")]
    digests = [p[0] for p in src]
    first = digests.index(out[0])
    end = digests.index(out[-1], first) + 1
    kept = [p[0] for p in src[first:end] if p[1] >= src[first][1]]
    assert kept == out, "the server's copy is not the span less its leading pictures"
    return first, end


@dataclass(frozen=True)
class Job:
    """One job both ways: the server's render and the module's assembly from the same answer."""

    case: BuiltCase
    result: SyncResult
    server: Path
    m4a: Path  # the clean audio, as the service returns it
    client: Path
    first: int
    end: int
    facts: dict[str, Any]  # what the Node run printed


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Job]:
    """Each case's job, built and run once for the module."""
    done: dict[str, Job] = {}

    def get(name: str) -> Job:
        if name not in done:
            directory = tmp_path_factory.mktemp(name)
            case = CASES[name](directory)
            server = directory / "server.mp4"
            result = sync(case.dance, case.bgm, server)
            m4a = directory / "clean.m4a"
            _clean_audio(server, m4a)
            first, end = _answer(case.dance, server)
            client = directory / "client.mp4"
            facts = _node("assemble", str(case.dance), str(m4a), str(client), str(first), str(end))
            done[name] = Job(case, result, server, m4a, client, first, end, facts)
        return done[name]

    return get


@pytest.fixture(params=sorted(CASES))
def job(request: pytest.FixtureRequest, jobs: Callable[[str], Job]) -> Job:
    return jobs(request.param)


def test_assembled_video_packets_equal_the_server_render(job: Job) -> None:
    mine, theirs = _packets(job.client, "video"), _packets(job.server, "video")
    assert len(mine) == len(theirs) == job.facts["facts"]["frames"] <= job.end - job.first
    for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        assert a == b, f"video packet {i} differs (bytes, pts, dts or keyframe flag)"
    assert mine[0][2] == 0  # the first copied sample decodes at 0
    assert math.isclose(
        job.facts["facts"]["first_frame_time"], job.result.output.first_frame_time, abs_tol=1e-9
    )


def test_assembled_audio_packets_are_the_returned_track(job: Job) -> None:
    mine = _packets(job.client, "audio")
    assert mine == _packets(job.m4a, "audio") == _packets(job.server, "audio")
    assert mine[0][2] == 0


def test_assembled_file_keeps_rotation_codec_tag_and_faststart(job: Job) -> None:
    client, server = job.client, job.server
    mine, theirs, source = probe(client).video, probe(server).video, probe(job.case.dance).video
    assert mine is not None
    assert theirs is not None
    assert source is not None
    assert mine.rotation == theirs.rotation == source.rotation
    assert (mine.codec, mine.width, mine.height) == (theirs.codec, theirs.width, theirs.height)
    with av.open(str(client)) as a, av.open(str(server)) as b:
        mv, sv = a.streams.video[0], b.streams.video[0]
        assert mv.codec_context.codec_tag == sv.codec_context.codec_tag
        hevc = mv.codec_context.name == "hevc"
        assert mv.codec_context.codec_tag == ("hvc1" if hevc else "avc1")
        assert mv.duration * mv.time_base == sv.duration * sv.time_base  # the last frame's end
        assert a.duration == b.duration
    # The decoder configuration as the render writes it (an hev1's parameter sets marked
    # complete as it becomes hvc1).
    config = b"hvcC" if hevc else b"avcC"
    assert _sample_entry_box(client, config) == _sample_entry_box(server, config)
    data = client.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # the index in front
    assert b"co64" not in data[: data.index(b"mdat")]
    assert job.facts["facts"]["co64"] is False
    assert all(t.is_identity for t in mp4_edit_lists(client))  # no edit lists
    assert job.facts["largest"] <= READ_PIECE


def test_assembled_file_is_in_sync(job: Job) -> None:
    assert_cut_matches(job.case, job.result.cut.start, job.result.cut.end)
    errors = sync_errors(job.client, job.case)
    assert all(abs(e) <= MAX_SYNC_MS for e in errors), errors
    assert np.allclose(errors, sync_errors(job.server, job.case), atol=1e-6)


def _decoded(path: Path) -> tuple[list[tuple[int, int]], np.ndarray]:
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.audio[0]))
    timeline = [(int(f.pts), f.samples) for f in frames]
    return timeline, np.concatenate([f.to_ndarray() for f in frames], axis=1)


def test_extracted_audio_decodes_to_the_original_and_manifest_is_exact(
    job: Job, tmp_path: Path
) -> None:
    case = job.case
    m4a = tmp_path / "sound.m4a"
    answer = _node("extract", str(case.dance), str(m4a))
    manifest = answer["manifest"]

    timeline, samples = _decoded(case.dance)
    got_timeline, got = _decoded(m4a)
    assert got_timeline == timeline
    assert np.array_equal(got, samples)
    assert _packets(m4a, "audio") == _packets(case.dance, "audio")
    sound = sum(len(p[0]) for p in _packets(case.dance, "audio"))
    assert m4a.stat().st_size == answer["size"] < sound + 16_000  # the packets and an index
    assert answer["largest"] <= READ_PIECE

    _check_manifest(manifest, case.dance)


def _check_manifest(manifest: dict[str, Any], path: Path) -> None:
    info = probe(path)
    assert info.video is not None
    assert info.audio is not None
    edits = {t.handler: t for t in mp4_edit_lists(path)}
    v, a = manifest["video"], manifest["audio"]
    assert manifest["version"] == 1
    assert manifest["brand"] == ("qt  " if path.suffix == ".mov" else "isom")
    with av.open(str(path)) as container:
        tag = container.streams.video[0].codec_context.codec_tag
    assert (v["width"], v["height"], v["rotation"]) == (
        info.video.width,
        info.video.height,
        info.video.rotation,
    )
    assert v["codec"] == tag
    assert (a["codec"], a["sample_rate"], a["channels"]) == (
        "mp4a",
        info.audio.sample_rate,
        info.audio.channels,
    )
    assert math.isclose(manifest["duration"], info.duration, abs_tol=1e-3)
    for track, kind in ((v, "vide"), (a, "soun")):
        table = edits[kind]
        assert manifest["movie_timescale"] == table.movie_timescale
        assert track["timescale"] == table.media_timescale
        assert track["edits"] == [[e.duration, e.media_time, e.rate] for e in table.entries]

    # Every sample's decode and presentation time and keyframe flag, as PyAV reads them.
    packets = _packets(path, "video")
    assert v["sample_count"] == len(packets)
    deltas = [d for n, d in v["stts"] for _ in range(n)]
    offsets = [o for n, o in (v["ctts"] or [[len(packets), 0]]) for _ in range(n)]
    sync_set = set(v["sync"]) if v["sync"] is not None else set(range(len(packets)))
    tb = Fraction(1, v["timescale"])
    dts0 = packets[0][2]
    dts = 0
    for i, (_, pts, decode, key) in enumerate(packets):
        assert decode - dts0 == dts * tb, f"sample {i} decode time"
        assert pts - decode == offsets[i] * tb, f"sample {i} composition offset"
        assert key == (i in sync_set), f"sample {i} keyframe flag"
        dts += deltas[i]


def test_variable_frame_rate_copy_equals_the_server_render(tmp_path: Path) -> None:
    """Frames 1/30 s and 1/20 s apart, B-frames, a cut in the middle, index at the end."""
    dance = tmp_path / "vfr.mp4"
    _write_vfr(dance)
    bgm = build_case(case_named("small-clean"), tmp_path).bgm
    server = tmp_path / "server.mp4"
    render(
        probe(dance), probe(bgm), server, mapping=Mapping(3.0), cut=Cut(2.3, 7.9, "user", "user")
    )
    m4a = tmp_path / "clean.m4a"
    _clean_audio(server, m4a)
    first, end = _answer(dance, server)
    assert first > 0
    assert end < len(_packets(dance, "video"))
    client = tmp_path / "client.mp4"
    _node("assemble", str(dance), str(m4a), str(client), str(first), str(end))
    mine, theirs = _packets(client, "video"), _packets(server, "video")
    assert mine == theirs
    shown = sorted(p[1] for p in mine)
    steps = {b - a for a, b in itertools.pairwise(shown)}
    assert len(steps) > 1
    assert min(steps) == Fraction(1, 30)
    assert _packets(client, "audio") == _packets(m4a, "audio")
    with av.open(str(client)) as a, av.open(str(server)) as b:
        duration_a = a.streams.video[0].duration * a.streams.video[0].time_base
        duration_b = b.streams.video[0].duration * b.streams.video[0].time_base
    assert duration_a == duration_b  # the last frame lasts as long in both
    _check_manifest(_node("extract", str(dance), str(tmp_path / "vfr.m4a"))["manifest"], dance)


def _write_vfr(path: Path) -> None:
    rng = np.random.default_rng(5)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.time_base = Fraction(1, 60)
        video.options = {"preset": "ultrafast", "x264-params": "keyint=20:bframes=2:scenecut=0"}
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        pts = 0
        for n in range(240):
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 60)
            out.mux(video.encode(frame))
            pts += 2 if (n // 15) % 2 == 0 else 3  # 1/30 s, then 1/20 s, by turns
        out.mux(video.encode(None))
        tone = (0.1 * np.sin(np.arange(48000 * 10) * 0.05)).astype(np.float32)
        for i in range(0, tone.size, 1024):
            chunk = np.stack([tone[i : i + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts = 48000, i
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


BROWSER_RUN = """
async ({ video, audio, first, end }) => {
  const csp = [];
  document.addEventListener("securitypolicyviolation", (e) => csp.push(e.violatedDirective));
  const m = await import("/assemble/index.js");
  const decode = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const file = new File([decode(video)], "class.mp4", { type: "video/mp4" });
  const sha = async (blob) => {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  };
  const sound = await m.extractAudio(m.blobReader(file));
  const answer = { first_sample: first, end_sample: end };
  const out = await m.assemble(m.blobReader(file), decode(audio), answer);
  const blob = m.partsBlob(out.parts, file);
  return {
    m4a: await sha(m.partsBlob(sound.parts, file, "audio/mp4")),
    mp4: await sha(blob),
    size: blob.size,
    manifest: sound.manifest,
    csp,
  };
}
"""


def test_the_page_runs_the_module_in_chromium(
    served: Served, jobs: Callable[[str], Job], tmp_path: Path
) -> None:
    """The page's copy, loaded from the service under its CSP, writes the same bytes as Node:
    the upload and the result composed as Blobs of File slices."""
    job = jobs("h264-bframes-faststart")
    case, m4a, client, first, end = job.case, job.m4a, job.client, job.first, job.end
    sound = tmp_path / "sound.m4a"
    manifest = _node("extract", str(case.dance), str(sound))["manifest"]
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{served.url}/")
            got = page.evaluate(
                BROWSER_RUN,
                {
                    "video": base64.b64encode(case.dance.read_bytes()).decode(),
                    "audio": base64.b64encode(m4a.read_bytes()).decode(),
                    "first": first,
                    "end": end,
                },
            )
        finally:
            browser.close()
    assert got["csp"] == []
    assert errors == []
    assert got["manifest"] == manifest
    assert got["m4a"] == hashlib.sha256(sound.read_bytes()).hexdigest()
    assert got["size"] == client.stat().st_size
    assert got["mp4"] == hashlib.sha256(client.read_bytes()).hexdigest()
