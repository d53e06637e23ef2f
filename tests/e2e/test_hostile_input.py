"""Hostile and broken input against a real ``beatsync serve``: each item gets its documented code,
the server stays ready, nothing is left behind, and work already under way is not disturbed.

The corpus is generated here (seeded): an empty file, an MP4 cut before its ``moov``, text named
``.mp4``, a JPEG, a video without sound, a header declaring a 16384×16384 picture, one declaring
10 hours, an audio-only file as the dance video, silence as the reference, a one-second clip, two
different songs, and a class video with garbage written over the middle of its ``mdat``. Then
names that are not UTF-8 or try to climb out of storage, a form of thousands of parts, tus
requests with wrong versions, lengths, offsets and checksums, malformed JSON and oversized headers.

What each item is expected to get (refused at upload unless said otherwise)::

    empty file, truncated MP4, text, JPEG     INVALID_FORMAT
    16384×16384 header                        INVALID_FORMAT, refused without decoding a frame
    10-hour header                            DURATION_TOO_LONG, nothing decoded
    video without sound                       NO_AUDIO_TRACK
    audio-only as the dance                   accepted (a valid reference); the job: NO_VIDEO_TRACK
    silence as the reference                  accepted; the job fails MUSIC_MISMATCH
    a one-second class video                  accepted; the job fails MUSIC_MISMATCH (too short)
    two different songs                       accepted; the job fails MUSIC_MISMATCH
    garbage in the middle of the mdat         accepted; the job succeeds (the damaged packets
                                              are copied as they are, as a player shows them)

Before the corpus a good job is started and a resumable upload is left half-sent; after it the
job has succeeded with the true offset and the upload completes intact.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import psutil
import pytest
from PIL import Image
from service_process import FINISHED, ServiceProcess

from beatsync.service.layout import job_folder, upload_folder
from beatsync.testkit import BuiltCase, build_case, case_named, video_packets_copied

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MAX_OFFSET_ERROR_S = 0.005
# A decoded 16384×16384 picture alone takes 400 MB; probing must stay far below.
MAX_PROBE_GROWTH_MB = 100


# ---------------------------------------------------------------- the corpus


def write_media(
    path: Path,
    rng: np.random.Generator,
    *,
    seconds: float,
    video: str | None = "libx264",
    audio: bool = True,
    silent: bool = False,
    container: str | None = None,
    size: tuple[int, int] = (64, 48),
    pix_fmt: str = "yuv420p",
) -> Path:
    """A small file of noise pictures and noise (or silent) stereo AAC."""
    fps = 25
    with av.open(str(path), "w", format=container) as out:
        picture = out.add_stream(video, rate=fps) if video else None
        if picture is not None:
            picture.width, picture.height = size
            picture.pix_fmt = pix_fmt
        sound = out.add_stream("aac", rate=48000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        if picture is not None:
            for index in range(round(seconds * fps)):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format=pix_fmt)
                frame.pts, frame.time_base = index, Fraction(1, fps)
                out.mux(picture.encode(frame))
            out.mux(picture.encode(None))
        if sound is not None:
            total, done = round(seconds * 48000), 0
            while done < total:
                count = min(1024, total - done)
                if silent:
                    samples = np.zeros((2, count), np.float32)
                else:
                    samples = (0.2 * rng.standard_normal((2, count))).astype(np.float32)
                block = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                block.sample_rate, block.pts = 48000, done
                out.mux(sound.encode(block))
                done += count
            out.mux(sound.encode(None))
    return path


def huge_picture(path: Path, rng: np.random.Generator) -> Path:
    """An MJPEG MP4 whose sample entry, track header and every JPEG say 16384×16384, while each
    frame holds 64×48 pixels of data."""
    write_media(path, rng, seconds=1, video="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    patched, at = 0, 0
    while (at := data.find(b"\xff\xc0", at)) >= 0:  # SOF0: length, precision, height, width
        struct.pack_into(">HH", data, at + 5, 16384, 16384)
        patched, at = patched + 1, at + 2
    assert patched == 25, patched
    entry = data.find(b"mp4v", data.find(b"stsd"))  # visual sample entry: width, height at +24
    struct.pack_into(">HH", data, entry + 4 + 24, 16384, 16384)
    header = data.find(b"tkhd")  # version 0: width and height (16.16) after the matrix
    struct.pack_into(">II", data, header + 4 + 4 + 20 + 8 + 8 + 36, 16384 << 16, 16384 << 16)
    path.write_bytes(bytes(data))
    return path


def ten_hours(path: Path, rng: np.random.Generator) -> Path:
    """A one-second Matroska file whose segment says it lasts 10 hours."""
    write_media(path, rng, seconds=1, container="matroska")
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, an 8-byte float in milliseconds
    assert at > 0
    struct.pack_into(">d", data, at + 3, 10 * 3600 * 1000.0)
    path.write_bytes(bytes(data))
    return path


def first_second(source: Path, path: Path) -> Path:
    """The first second of ``source``, its packets copied."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        streams = (src.streams.video[0], src.streams.audio[0])
        copies = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in src.demux(*streams):
            if packet.pts is None or packet.dts is None or packet.time_base is None:
                continue
            if packet.pts * packet.time_base < 1:
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    return path


def audio_only(source: Path, path: Path) -> Path:
    """The sound of ``source`` alone, in an M4A."""
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as out:
        copy = out.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    return path


def damaged(
    source: Path, path: Path, rng: np.random.Generator, *, kind: str, span: tuple[float, float]
) -> Path:
    """``source`` with the payload of its ``kind`` (video or audio) packets presented within
    ``span`` (seconds) overwritten in place by random bytes: the file's structure is intact,
    what a decoder meets there is garbage."""
    data = bytearray(source.read_bytes())
    hit = 0
    with av.open(str(source)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None or packet.pos is None:
                continue
            if span[0] <= packet.pts * packet.time_base < span[1]:
                size = packet.size
                data[packet.pos : packet.pos + size] = rng.integers(
                    0, 256, size, np.uint8
                ).tobytes()
                hit += 1
    assert hit, f"no {kind} packet within {span}"
    path.write_bytes(bytes(data))
    return path


@dataclass(frozen=True)
class Corpus:
    good: BuiltCase
    mismatch: BuiltCase
    files: dict[str, Path]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(20240611)
    good = build_case(case_named("small-clean"), folder)
    mismatch = build_case(case_named("small-mismatch"), folder)
    text = folder / "notes.mp4"
    text.write_text("This is not a video, whatever its name says.\n" * 40)
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, "JPEG")
    jpeg = folder / "photo.jpg"
    jpeg.write_bytes(picture.getvalue())
    whole = write_media(folder / "whole.mp4", rng, seconds=2)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert b"moov" not in truncated.read_bytes()
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    files = {
        "empty": empty,
        "truncated": truncated,
        "text": text,
        "jpeg": jpeg,
        "no-sound": write_media(folder / "mute.mp4", rng, seconds=2, audio=False),
        "huge": huge_picture(folder / "huge.mp4", rng),
        "ten-hours": ten_hours(folder / "long.mkv", rng),
        "audio-only": audio_only(good.dance, folder / "sound.m4a"),
        "silence": write_media(folder / "silence.m4a", rng, seconds=20, video=None, silent=True),
        "one-second": first_second(good.dance, folder / "second.mp4"),
        # Five frames well inside the music, away from the poster frame (mid-cut, near 7.5 s).
        "damaged-video": damaged(
            good.dance, folder / "damaged-video.mp4", rng, kind="video", span=(4.0, 4.2)
        ),
        "damaged-audio": damaged(
            good.dance, folder / "damaged-audio.mp4", rng, kind="audio", span=(6.0, 6.02)
        ),
        "damaged-poster": damaged(
            good.dance, folder / "damaged-poster.mp4", rng, kind="video", span=(7.3, 7.7)
        ),
    }
    return Corpus(good, mismatch, files)


# ---------------------------------------------------------------- the server and its clients


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # Two workers, so the good job runs beside the corpus's; limits far above what this sends.
    service = ServiceProcess(
        tmp_path_factory.mktemp("hostile-served") / "data",
        workers=2,
        env={
            "BEATSYNC_RATE_LIMIT_PER_OWNER": "100000",
            "BEATSYNC_RATE_LIMIT_PER_ADDRESS": "100000",
        },
    )
    try:
        service.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield service
    service.stop()


def client_of(server: ServiceProcess) -> httpx.Client:
    token = httpx.post(f"{server.url}/api/v1/sessions").json()["token"]
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
        timeout=60,
    )


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post("/api/v1/uploads", files={"file": (name or path.name, handle)})


def ready_upload(client: httpx.Client, path: Path) -> str:
    response = upload(client, path)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "ready"
    return str(response.json()["id"])


def create_job(client: httpx.Client, dance: str, bgm: str) -> httpx.Response:
    return client.post("/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm})


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout:g} s")


def tus_create(client: httpx.Client, length: int, **headers: str) -> str:
    created = client.post("/api/v1/tus", headers={**TUS, "Upload-Length": str(length), **headers})
    assert created.status_code == 201, created.text
    return str(created.headers["location"])


def tus_patch(
    client: httpx.Client, location: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    return client.patch(
        location,
        content=data,
        headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS, **headers},
    )


def tus_offset(client: httpx.Client, location: str) -> int:
    head = client.head(location, headers=TUS)
    assert head.status_code == 200
    return int(head.headers["upload-offset"])


@dataclass
class Bystanders:
    """Work started before the corpus that it must not disturb."""

    client: httpx.Client
    job_id: str
    location: str  # a resumable upload left half-sent
    sent: int


@pytest.fixture(scope="module")
def bystanders(server: ServiceProcess, corpus: Corpus) -> Iterator[Bystanders]:
    client = client_of(server)
    dance = ready_upload(client, corpus.good.dance)
    bgm = ready_upload(client, corpus.good.bgm)
    created = create_job(client, dance, bgm)
    assert created.status_code == 202, created.text
    data = corpus.good.bgm.read_bytes()
    location = tus_create(client, len(data))
    half = len(data) // 2
    assert tus_patch(client, location, 0, data[:half]).status_code == 204
    yield Bystanders(client, created.json()["id"], location, half)
    client.close()


def leftovers(server: ServiceProcess, bystanders: Bystanders) -> list[str]:
    """Files in the spool besides the half-sent bystander's part: what a refusal, a failed
    job or a finished one must never leave."""
    spool = server.data_dir / "spool"
    part = bystanders.location.rsplit("/", 1)[-1] + ".part"
    return sorted(p.name for p in spool.iterdir() if p.is_file() and p.name != part)


def stored_uploads(server: ServiceProcess) -> set[str]:
    stored = server.data_dir / "files" / "uploads"
    return {p.name for p in stored.iterdir()} if stored.is_dir() else set()


def assert_healthy(server: ServiceProcess) -> None:
    ready = httpx.get(f"{server.url}/api/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


def server_memory_mb(server: ServiceProcess) -> float:
    assert server.process is not None
    return float(psutil.Process(server.process.pid).memory_info().rss) / 2**20


# ---------------------------------------------------------------- refused at upload


REFUSED_AT_UPLOAD = [
    ("empty", 422, "INVALID_FORMAT"),
    ("truncated", 422, "INVALID_FORMAT"),
    ("text", 422, "INVALID_FORMAT"),
    ("jpeg", 422, "INVALID_FORMAT"),
    ("no-sound", 422, "NO_AUDIO_TRACK"),
    ("huge", 422, "INVALID_FORMAT"),
    ("ten-hours", 422, "DURATION_TOO_LONG"),
]


@pytest.mark.parametrize(("item", "status", "code"), REFUSED_AT_UPLOAD)
def test_unusable_files_are_refused_at_upload(
    item: str,
    status: int,
    code: str,
    server: ServiceProcess,
    corpus: Corpus,
    bystanders: Bystanders,
) -> None:
    before = stored_uploads(server)
    memory = server_memory_mb(server)
    with client_of(server) as client:
        started = time.monotonic()
        body = problem(upload(client, corpus.files[item]), status, code)
        took = time.monotonic() - started
        # The same file over tus: completed, then settled as rejected with the same code.
        data = corpus.files[item].read_bytes()
        location = tus_create(client, len(data))
        if data:
            assert tus_patch(client, location, 0, data).status_code == 204
        settled = client.get(location.replace("/tus/", "/uploads/")).json()
        assert (settled["status"], settled["error"]["code"]) == ("rejected", code)
        assert settled["offset"] == settled["size"] == len(data)
    assert took < 10, f"{item} took {took:.1f} s to refuse"
    assert server_memory_mb(server) - memory < MAX_PROBE_GROWTH_MB
    assert "spool" not in body["detail"]
    assert str(server.data_dir) not in body["detail"]
    assert_healthy(server)
    assert leftovers(server, bystanders) == []
    assert stored_uploads(server) == before


def test_the_declared_sizes_are_what_was_refused(corpus: Corpus) -> None:
    """The header items really declare what they claim (the probe read them, not the data)."""
    with av.open(str(corpus.files["ten-hours"])) as container:
        assert container.duration is not None
        assert container.duration / av.time_base == pytest.approx(36000.0)
    data = corpus.files["huge"].read_bytes()
    at = data.find(b"\xff\xc0")
    assert struct.unpack(">HH", data[at + 5 : at + 9]) == (16384, 16384)
    assert corpus.files["huge"].stat().st_size < 200_000


# ---------------------------------------------------------------- refused at the job


def test_an_audio_only_dance_is_refused_when_the_job_is_created(
    server: ServiceProcess, corpus: Corpus, bystanders: Bystanders
) -> None:
    with client_of(server) as client:
        dance = ready_upload(client, corpus.files["audio-only"])
        media = client.get(f"/api/v1/uploads/{dance}").json()["media"]
        assert (media["has_video"], media["has_audio"]) == (False, True)
        bgm = ready_upload(client, corpus.good.bgm)
        problem(create_job(client, dance, bgm), 422, "NO_VIDEO_TRACK")
        assert client.get("/api/v1/jobs").json()["items"] == []
    assert_healthy(server)
    assert leftovers(server, bystanders) == []


@pytest.mark.parametrize(
    ("dance_item", "bgm_item", "code"),
    [
        ("good-dance", "silence", "MUSIC_MISMATCH"),
        ("one-second", "good-bgm", "MUSIC_MISMATCH"),
        ("mismatch-dance", "mismatch-bgm", "MUSIC_MISMATCH"),
    ],
)
def test_pairs_without_shared_music_fail_with_music_mismatch(
    dance_item: str,
    bgm_item: str,
    code: str,
    server: ServiceProcess,
    corpus: Corpus,
    bystanders: Bystanders,
) -> None:
    named = {
        **corpus.files,
        "good-dance": corpus.good.dance,
        "good-bgm": corpus.good.bgm,
        "mismatch-dance": corpus.mismatch.dance,
        "mismatch-bgm": corpus.mismatch.bgm,
    }
    with client_of(server) as client:
        dance = ready_upload(client, named[dance_item])
        bgm = ready_upload(client, named[bgm_item])
        created = create_job(client, dance, bgm)
        assert created.status_code == 202, created.text
        job = wait_finished(client, created.json()["id"])
    assert job["status"] == "failed", job
    assert job["error"]["code"] == code
    assert job["result"] is None
    assert not (server.data_dir / "files" / job_folder(job["id"])).exists()  # nothing written
    assert not (server.data_dir / "spool" / "work" / job["id"]).exists()
    assert_healthy(server)
    assert leftovers(server, bystanders) == []


def _damaged_job(
    server: ServiceProcess, corpus: Corpus, item: str
) -> tuple[dict[str, Any], httpx.Response | None]:
    with client_of(server) as client:
        dance = ready_upload(client, corpus.files[item])
        bgm = ready_upload(client, corpus.good.bgm)
        created = create_job(client, dance, bgm)
        assert created.status_code == 202, created.text
        job = wait_finished(client, created.json()["id"])
        video = None
        if job["status"] == "succeeded":
            video = client.get(job["result"]["files"]["video"])
    return job, video


def test_damaged_video_packets_are_copied_as_they_are(
    server: ServiceProcess, corpus: Corpus, bystanders: Bystanders, tmp_path: Path
) -> None:
    job, video = _damaged_job(server, corpus, "damaged-video")
    assert job["status"] == "succeeded", job
    offset = job["result"]["mapping"]["offset_s"]
    assert abs(offset - corpus.good.truth.offset) < MAX_OFFSET_ERROR_S
    assert video is not None
    assert video.status_code == 200
    out = tmp_path / "out.mp4"
    out.write_bytes(video.content)
    assert video_packets_copied(corpus.files["damaged-video"], out)  # garbage included
    assert not (server.data_dir / "spool" / "work" / job["id"]).exists()
    assert_healthy(server)
    assert leftovers(server, bystanders) == []


def test_a_damaged_audio_packet_does_not_fail_the_job(
    server: ServiceProcess, corpus: Corpus
) -> None:
    job, _ = _damaged_job(server, corpus, "damaged-audio")
    assert job["status"] == "succeeded", job["error"]


def test_a_damaged_poster_frame_does_not_fail_the_job(
    server: ServiceProcess, corpus: Corpus
) -> None:
    job, _ = _damaged_job(server, corpus, "damaged-poster")
    assert job["status"] == "succeeded", job["error"]


def test_failed_damaged_jobs_left_nothing(server: ServiceProcess, bystanders: Bystanders) -> None:
    assert_healthy(server)
    assert leftovers(server, bystanders) == []
    work = server.data_dir / "spool" / "work"
    running = {bystanders.job_id}
    assert not work.exists() or {p.name for p in work.iterdir()} <= running


# ---------------------------------------------------------------- names


def _raw_form(filename: bytes, content: bytes, boundary: bytes = b"hostile-0f3c") -> tuple:
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: video/mp4\r\n\r\n" + content + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"../../../../etc/passwd.mp4", "passwd.mp4"),
        (b"..\\..\\windows\\system32\\x.mp4", "x.mp4"),
        (b"/var/lib/beatsync/files/uploads/upl_x/data", "data"),
        (b"\xff\xfe\xc3(cours\xe9.mp4", "\ufffd\ufffd\ufffd(cours\ufffd.mp4"),
        (b"..", ""),
        (b"tab\there\x1b[31m.mp4", "tabhere[31m.mp4"),
    ],
)
def test_file_names_are_display_strings_only(
    raw: bytes,
    shown: str,
    server: ServiceProcess,
    corpus: Corpus,
    bystanders: Bystanders,
) -> None:
    outside = sorted(p.name for p in server.data_dir.parent.iterdir())
    content = corpus.good.bgm.read_bytes()
    with client_of(server) as client:
        body, headers = _raw_form(raw, content)
        answer = client.post("/api/v1/uploads", content=body, headers=headers)
        assert answer.status_code == 201, answer.text
        upload_id = answer.json()["id"]
        sha256 = answer.json()["sha256"]
        assert answer.json()["filename"] == shown
        metadata = f"filename {base64.b64encode(raw).decode()}"
        location = tus_create(client, len(content), **{"Upload-Metadata": metadata})
        assert tus_patch(client, location, 0, content).status_code == 204
        via_tus = client.get(location.replace("/tus/", "/uploads/")).json()
        assert (via_tus["filename"], via_tus["status"]) == (shown, "ready")
    files = server.data_dir / "files"
    stored = files / upload_folder(upload_id)
    assert [p.name for p in stored.iterdir()] == ["data"]
    assert (stored / "data").read_bytes() == content
    # The same bytes again from the same owner are not stored twice: the copy refers to them.
    assert via_tus["sha256"] == sha256
    assert not (files / upload_folder(via_tus["id"])).exists()
    names = {p.name for p in server.data_dir.rglob("*")}
    assert not names & {"passwd.mp4", "x.mp4", "etc", "windows", "var"}
    assert sorted(p.name for p in server.data_dir.parent.iterdir()) == outside
    assert leftovers(server, bystanders) == []


# ---------------------------------------------------------------- malformed requests


def test_a_form_of_thousands_of_parts_is_refused(
    server: ServiceProcess, bystanders: Bystanders
) -> None:
    boundary = b"many-parts-19"
    parts = b"".join(
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i
        for i in range(5000)
    )
    body = parts + b"--" + boundary + b"--\r\n"
    with client_of(server) as client:
        answer = client.post(
            "/api/v1/uploads",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=" + boundary.decode()},
        )
    assert "at most 8 parts" in problem(answer, 422, "VALIDATION_ERROR")["detail"]
    assert_healthy(server)
    assert leftovers(server, bystanders) == []


def test_tus_requests_with_wrong_headers_change_nothing(
    server: ServiceProcess, corpus: Corpus, bystanders: Bystanders
) -> None:
    data = corpus.good.bgm.read_bytes()
    with client_of(server) as client:
        refused = client.post("/api/v1/tus", headers={"Tus-Resumable": "0.2.2"})
        problem(refused, 412, "UNSUPPORTED_VERSION")
        assert (refused.headers["tus-version"], refused.headers["tus-resumable"]) == (
            "1.0.0",
            "1.0.0",
        )
        for length in ("-5", "12abc", "", "1" * 30):
            problem(
                client.post("/api/v1/tus", headers={**TUS, "Upload-Length": length}),
                400,
                "VALIDATION_ERROR",
            )
        problem(client.post("/api/v1/tus", headers=TUS), 400, "VALIDATION_ERROR")
        too_long = client.post("/api/v1/tus", headers={**TUS, "Upload-Length": str(10**12)})
        problem(too_long, 413, "FILE_TOO_LARGE")
        assert client.get("/api/v1/uploads").json()["items"] == []

        location = tus_create(client, len(data))
        ahead = tus_patch(client, location, 1000, data[1000:2000])
        problem(ahead, 409, "UPLOAD_CONFLICT")
        assert ahead.headers["upload-offset"] == "0"
        problem(tus_patch(client, location, 0, data[:10], **{"Tus-Resumable": "2.0"}), 412,
                "UNSUPPORTED_VERSION")  # fmt: skip
        problem(
            client.patch(location, content=b"x", headers={**TUS, "Upload-Offset": "0"}),
            415,
            "VALIDATION_ERROR",
        )
        problem(tus_patch(client, location, 0, data + b"extra"), 413, "FILE_TOO_LARGE")
        wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
        mismatch = tus_patch(
            client, location, 0, data[:5000], **{"Upload-Checksum": f"sha1 {wrong}"}
        )
        problem(mismatch, 460, "CHECKSUM_MISMATCH")
        for checksum in ("crc32 AAAA", "sha1 !!!notbase64", "sha256 " + wrong, "sha1"):
            problem(
                tus_patch(client, location, 0, data[:5000], **{"Upload-Checksum": checksum}),
                400,
                "VALIDATION_ERROR",
            )
        problem(
            client.post(location, headers={**TUS, "X-HTTP-Method-Override": "GET"}),
            405,
            "METHOD_NOT_ALLOWED",
        )
        assert tus_offset(client, location) == 0  # none of it was kept

        right = base64.b64encode(hashlib.sha1(data[:5000]).digest()).decode()
        sent = tus_patch(client, location, 0, data[:5000], **{"Upload-Checksum": f"sha1 {right}"})
        assert (sent.status_code, sent.headers["upload-offset"]) == (204, "5000")
        assert tus_patch(client, location, 5000, data[5000:]).status_code == 204
        done = client.get(location.replace("/tus/", "/uploads/")).json()
        assert (done["status"], done["sha256"]) == ("ready", hashlib.sha256(data).hexdigest())
    assert_healthy(server)
    assert leftovers(server, bystanders) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"dance_upload_id": "upl_x", ', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"dance_upload_id": 5, "bgm_upload_id": null}', "application/json"),
        (b'{"dance_upload_id": "a", "bgm_upload_id": "b", "options": {"nudge_ms": "NaN"}}',
         "application/json"),
        (b'{"dance_upload_id": "a", "bgm_upload_id": "b", "surprise": 1}', "application/json"),
        (b"\xff\xfe\x00{", "application/json"),
        (b"dance_upload_id=upl_x", "application/x-www-form-urlencoded"),
        (b"", "application/json"),
    ],
)  # fmt: skip
def test_malformed_job_requests_are_validation_errors(
    body: bytes, content_type: str, server: ServiceProcess
) -> None:
    with client_of(server) as client:
        answer = client.post("/api/v1/jobs", content=body, headers={"Content-Type": content_type})
        problem(answer, 422, "VALIDATION_ERROR")
        assert client.get("/api/v1/jobs").json()["items"] == []
    assert_healthy(server)


def test_oversized_headers_are_refused_and_the_server_stays_up(server: ServiceProcess) -> None:
    request = (
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
        + b"a" * (512 * 1024)
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line in (
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 431 Request Header Fields Too Large",
    )
    assert_healthy(server)


# ---------------------------------------------------------------- the bystanders


def test_work_under_way_was_not_disturbed(
    server: ServiceProcess, corpus: Corpus, bystanders: Bystanders
) -> None:
    client = bystanders.client
    job = wait_finished(client, bystanders.job_id)
    assert job["status"] == "succeeded", job
    assert abs(job["result"]["mapping"]["offset_s"] - corpus.good.truth.offset) < 0.005
    data = corpus.good.bgm.read_bytes()
    assert tus_offset(client, bystanders.location) == bystanders.sent
    rest = tus_patch(client, bystanders.location, bystanders.sent, data[bystanders.sent :])
    assert rest.status_code == 204
    done = client.get(bystanders.location.replace("/tus/", "/uploads/")).json()
    assert (done["status"], done["sha256"]) == ("ready", hashlib.sha256(data).hexdigest())
    spool = server.data_dir / "spool"
    assert sorted(p.name for p in spool.iterdir() if p.is_file()) == []
    work = spool / "work"
    assert not work.exists() or list(work.iterdir()) == []
    assert_healthy(server)
