"""The mini-program's audio-first path on a class video over 200 MB, end to end.

``miniprogram/tests/e2e/audiofirst-flow.js`` runs the mini-program's own modules in Node with
the real-file ``wx`` (WeChat's limits kept: readFile 100 MB at once, downloads 200 MB, the
mini-program's own files 200 MB in all, a VideoDecoder over PyAV) against ``beatsync serve``:
only the video's sound goes up, the frames are decoded on the "phone", and the result is
assembled into a user file, saved to the "album" and deleted. The saved file is then held to
the server render of the same pair: the same video samples, the same audio packets, the same
sync against the truth (within 1 ms) — a video WeChat could neither read nor download whole.
The class video is made here (9 minutes of 640×360 at 3.3 Mbit/s), not kept in git.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import httpx
import pytest

from beatsync.testkit.cases import BuiltCase, CaseSpec, build_case
from beatsync.testkit.measure import sync_errors, video_packets_copied
from beatsync.testkit.music import MEDLEY_PREFIX
from beatsync.testkit.room import Room

if TYPE_CHECKING:
    from conftest import Served

MINIPROGRAM = Path(__file__).resolve().parents[2] / "miniprogram"
MB = 1024 * 1024
MAX_SYNC_MS = 1.0
FINISHED = {"succeeded", "failed", "canceled"}

BIG = CaseSpec(
    name="phone-over-200mb",
    seed=23,
    track=MEDLEY_PREFIX + "etr/calmrace-ks,etr/freezingpoint,etr/spunkyrace-ks,etr/credits1-cp",
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


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[httpx.Client]:
    token = httpx.post(f"{served.url}/api/v1/sessions").json()["token"]
    with httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
    ) as made:
        yield made


def _upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    upload_id = str(response.json()["id"])
    deadline = time.monotonic() + 120
    while client.get(f"/api/v1/uploads/{upload_id}").json()["status"] == "receiving":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return upload_id


def _server_render(client: httpx.Client, case: BuiltCase, out: Path) -> Path:
    """The same pair through the server path: the video uploaded whole and rendered."""
    body = {
        "dance_upload_id": _upload(client, case.dance),
        "bgm_upload_id": _upload(client, case.bgm),
    }
    created = client.post("/api/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    job = created.json()
    deadline = time.monotonic() + 600
    while job["status"] not in FINISHED:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.get(job["links"]["self"]).json()
    assert job["status"] == "succeeded", job
    with client.stream("GET", job["result"]["files"]["video"]) as response, out.open("wb") as f:
        for chunk in response.iter_bytes():
            f.write(chunk)
    return out


def _audio_packets(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), p.pts) for p in container.demux(stream) if p.size]


def test_audio_first_on_a_class_video_over_200_mb(
    served: Served, client: httpx.Client, case: BuiltCase, tmp_path: Path
) -> None:
    size = case.dance.stat().st_size
    assert size > 200 * MB, size
    report_path = tmp_path / "report.json"
    command = [
        "node", "tests/e2e/audiofirst-flow.js", "--url", served.url, "--dance", str(case.dance),
        "--bgm", str(case.bgm), "--work", str(tmp_path / "phone"), "--out", str(report_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=MINIPROGRAM, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-6000:]
    report: dict[str, Any] = json.loads(report_path.read_text())

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
    rendered = _server_render(client, case, tmp_path / "server.mp4")
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
