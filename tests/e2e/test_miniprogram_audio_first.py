"""The mini-program's audio-first path on a class video over 200 MB, end to end.

``miniprogram/tests/e2e/audiofirst-flow.js`` runs the mini-program's own modules in Node with
the real-file ``wx`` (WeChat's limits kept: readFile 100 MB at once, downloads 200 MB, the
mini-program's own files 200 MB in all, a VideoDecoder over PyAV) against ``beatsync serve``:
only the video's sound goes up, the frames are decoded on the "phone", and the result is
assembled into a user file, saved to the "album" and deleted. The saved file is then held to
the server render of the same pair: the same video samples, the same audio packets, the same
sync against the truth (within 1 ms) — a video WeChat could neither read nor download whole.
The class video is made here (9 minutes of 640×360 at 3.3 Mbit/s), not kept in git.

A second class video's trimmed result does not fit in the 200 MB at all (its pictures carry
H.264 filler data, which decoders skip: the same frames, larger samples). Then the job is
rendered again without a cut and WeChat's MediaContainer (in the shim, a whole-track copy into
a temporary file) writes the whole video with that sound: nothing over the 200 MB, the video's
every sample, the variant's audio packets, and the sync held to the truth (within 1 ms).

Without MediaContainer, a third (small, with only a little of the 200 MB free) sends the
service only its kept span — the assembled result, made as it is sent — for the 720p render,
which finds the clean sound in it and comes back in sync with the truth (within 1 ms).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import pytest

from beatsync.testkit.audiofirst import extract_audio
from beatsync.testkit.cases import BuiltCase, CaseSpec, build_case
from beatsync.testkit.measure import sync_errors, video_packets_copied
from beatsync.testkit.music import MEDLEY_PREFIX
from beatsync.testkit.room import Room

if TYPE_CHECKING:
    from conftest import Served, ServiceClient

MINIPROGRAM = Path(__file__).resolve().parents[2] / "miniprogram"
MB = 1024 * 1024
MAX_SYNC_MS = 1.0

MUSIC = MEDLEY_PREFIX + "etr/calmrace-ks,etr/freezingpoint,etr/spunkyrace-ks,etr/credits1-cp"
FILLER_BYTES = 45 * 1024

BIG = CaseSpec(
    name="phone-over-200mb",
    seed=23,
    track=MUSIC,
    ref_start=0.0,
    ref_end=330.0,
    play_from=5.0,
    music_start=150.0,
    play_duration=300.0,
    tail=95.0,
    room=Room(rt60=0.5, drr_db=6.0, snr_db=18.0),
    width=640,
    height=360,
    fps=30,
    gop=60,
    bit_rate=3_300_000,
)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(BIG, tmp_path_factory.mktemp("big"))


# 220 s of video, 180 s of it music: about 250 MB once cut, with the filler.
WHOLE = dataclasses.replace(
    BIG,
    name="phone-output-over-200mb",
    seed=29,
    ref_end=200.0,
    music_start=20.0,
    play_duration=180.0,
    tail=20.0,
    width=320,
    height=180,
    bit_rate=400_000,
)


def _inflate(source: Path, target: Path, extra: int) -> None:
    """``source`` with ``extra`` bytes of H.264 filler data (NAL type 12) after every picture."""
    nal = b"\x0c" + b"\xff" * (extra - 6) + b"\x80"
    filler = len(nal).to_bytes(4, "big") + nal
    with av.open(str(source)) as inp, av.open(str(target), "w", format="mp4") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vout, aout = out.add_stream_from_template(vin), out.add_stream_from_template(ain)
        for packet in inp.demux(vin, ain):
            if packet.dts is None:
                continue
            if packet.stream.index == vin.index:
                grown = av.Packet(bytes(packet) + filler)
                grown.pts, grown.dts, grown.duration = packet.pts, packet.dts, packet.duration
                grown.time_base = packet.time_base
                grown.is_keyframe = packet.is_keyframe
                grown.stream = vout
                out.mux(grown)
            else:
                packet.stream = aout
                out.mux(packet)


@pytest.fixture(scope="module")
def whole_case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    built = build_case(WHOLE, tmp_path_factory.mktemp("whole"))
    padded = built.dance.with_name("class-padded.mp4")
    _inflate(built.dance, padded, FILLER_BYTES)
    return dataclasses.replace(built, dance=padded)


def _audio_packets(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), p.pts) for p in container.demux(stream) if p.size]


def _run_flow(
    served: Served, case: BuiltCase, work: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    report_path = work / "report.json"
    command = [
        "node", "tests/e2e/audiofirst-flow.js", "--url", served.url, "--dance", str(case.dance),
        "--bgm", str(case.bgm), "--work", str(work / "phone"), "--out", str(report_path), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=MINIPROGRAM, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-6000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def test_audio_first_on_a_class_video_over_200_mb(
    served: Served, client: ServiceClient, case: BuiltCase, tmp_path: Path
) -> None:
    size = case.dance.stat().st_size
    assert size > 200 * MB, size
    report = _run_flow(served, case, tmp_path)

    # Only the sound went up: a few MB of a video over 200 MB.
    upload = report["upload"]
    assert upload["sent_bytes"] == upload["sound_bytes"]
    assert upload["sent_bytes"] < size / 20
    # The phone's rules held: no whole-file read, the output within the 200 MB, nothing left.
    assert report["read_file_calls"] == 0
    assert report["assembled"]["user_bytes"] <= 200 * MB
    assert not report["saved"]["left_in_user_files"]
    assert report["keep_screen_on"][-1] is False
    assert report["job"]["frames_answered"] > 0

    saved = Path(report["saved"]["path"])
    rendered = tmp_path / "server.mp4"
    client.server_render(case.dance, case.bgm, rendered)
    assembly = report["job"]["assembly"]
    copied = video_packets_copied(case.dance, saved)
    server_copied = video_packets_copied(case.dance, rendered)
    assert copied, "the saved file's video is the class video's own samples"
    assert (copied.source_start, copied.packets) == (
        server_copied.source_start,
        server_copied.packets,
    )
    assert copied.packets == assembly["end_sample"] - assembly["first_sample"]
    assert _audio_packets(saved) == _audio_packets(rendered)
    errors = sync_errors(saved, case)
    server_errors = sync_errors(rendered, case)
    summary = {
        "video_bytes": size,
        "upload": upload,
        "assembled": report["assembled"],
        "frames_answered": report["job"]["frames_answered"],
        "phone_seconds": report["seconds"],
        "sync_ms": errors,
        "server_sync_ms": server_errors,
        "samples": copied.packets,
    }
    print(json.dumps(summary))  # the figures of the run, for whoever reads the log
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors
    assert max(abs(a - b) for a, b in zip(errors, server_errors, strict=True)) <= MAX_SYNC_MS


def test_a_result_over_200_mb_is_made_whole_by_media_container(
    served: Served, client: ServiceClient, whole_case: BuiltCase, tmp_path: Path
) -> None:
    size = whole_case.dance.stat().st_size
    report = _run_flow(served, whole_case, tmp_path)

    # The trimmed result would not fit: the whole video went through MediaContainer.
    assert report["path"] == "mediacontainer-whole", report
    assert report["trimmed_size"] > 200 * MB
    upload = report["upload"]
    assert upload["sent_bytes"] == upload["sound_bytes"] < size / 20
    assert report["read_file_calls"] == 0
    assembled = report["assembled"]
    assert not assembled["in_user_files"]
    assert assembled["user_bytes"] <= 200 * MB
    assert report["user_files_left"] == []
    assert report["keep_screen_on"][-1] is False

    # The variant: the same job without a cut, its copy the whole picture track.
    variant = report["variant"]
    assert variant["options"]["trim"] is False
    assembly = variant["assembly"]
    saved = Path(report["saved"]["path"])
    copied = video_packets_copied(whole_case.dance, saved)
    assert copied, copied.reason
    assert (copied.source_start, copied.packets) == (0, copied.source_packets)
    assert copied.timing_preserved
    assert (assembly["first_sample"], assembly["end_sample"]) == (0, copied.source_packets)
    track = tmp_path / "variant-audio.m4a"
    track.write_bytes(client.get(assembly["audio_url"]).content)
    assert _audio_packets(saved) == _audio_packets(track)

    # In sync where the music plays, untrimmed: output time is the class video's time.
    truth = whole_case.truth
    span = truth.music_end - truth.music_start
    times = [truth.music_start + span * i / 10 for i in range(1, 10)]
    errors = sync_errors(saved, whole_case, times=times)
    print(
        json.dumps(
            {"video_bytes": size, "saved_bytes": saved.stat().st_size, **report, "sync_ms": errors}
        )
    )
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors


# 50 s of video, 30 s of it music: the kept span is well under the whole.
SPAN = dataclasses.replace(
    WHOLE, name="phone-kept-span", seed=31, ref_end=60.0, music_start=10.0, play_duration=30.0,
    tail=10.0,
)  # fmt: skip


def test_without_media_container_only_the_kept_span_goes_to_the_720p_render(
    served: Served, tmp_path: Path
) -> None:
    case = build_case(SPAN, tmp_path / "span")
    size = case.dance.stat().st_size
    sound = tmp_path / "sound.m4a"
    extract_audio(case.dance, sound)
    # User files with room for the sound but not for the result, and no MediaContainer: the
    # phone that cannot hold the result of a 1 GB class video, at a test's scale.
    room = sound.stat().st_size + 256 * 1024
    report = _run_flow(served, case, tmp_path, ("--no-container", "1", "--user-bytes", str(room)))
    assert report["path"] == "server-720-kept-span", report
    assert report["trimmed_size"] > room
    span = report["span"]
    # Only the result went up (made as it was sent), not the whole video.
    assert span["sent_bytes"] == span["size"] == report["trimmed_size"]
    assert span["size"] < 0.8 * size
    assert report["read_file_calls"] == 0
    # Nothing written among the user files but the sound: the span was never a file there.
    assert report["assembled"]["user_bytes"] <= 200 * MB - room + sound.stat().st_size + 64 * 1024
    assert report["rendered"]["options"]["reencode"] is True
    assert report["rendered"]["options"]["max_height"] == 720
    # The service found the clean sound in the span and rendered it in sync.
    assembly = report["job"]["assembly"]
    kept = assembly["video_end"] - assembly["video_start"]
    assert abs(report["rendered"]["output"]["duration_s"] - kept) < 0.1
    errors = sync_errors(Path(report["saved"]["path"]), case)
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors
