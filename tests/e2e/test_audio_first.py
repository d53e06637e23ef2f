"""Audio-first jobs end to end: a reference client keeps the video, sends its sound and tables.

The test kit's reference client re-wraps the class video's AAC packets into an M4A, reads the
MP4's sample tables into a manifest and decodes the keyframes' thumbnails; the job runs in a real
``beatsync serve``, asks the client for the frames of the edges it checks, and returns the audio
track and the samples to copy. Assembled in Python, the output must be the server render's: same
samples, same audio packets, the same sync measured against the truth.
"""

from __future__ import annotations

import base64
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import httpx
import pytest
from service_process import FINISHED

from beatsync.testkit.audiofirst import (
    assemble,
    extract_audio,
    frame_thumbnails,
    keyframe_thumbnails,
    video_manifest,
)
from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from beatsync.testkit.measure import sync_errors, video_packets_copied

if TYPE_CHECKING:
    from conftest import Served, ServiceClient

MAX_SYNC_MS = 1.0


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    # Black at the head and the tail: the cut rests on the client's frames at both edges.
    return build_case(case_named("small-black-tail"), tmp_path_factory.mktemp("media"))


def _run(client: ServiceClient, job: dict[str, Any], video: Path) -> tuple[dict[str, Any], int]:
    """Poll the job to its end, answering its frame requests as a phone would; the job and
    the number of frames it asked for."""
    asked = 0
    deadline = time.monotonic() + 180
    while job["status"] not in FINISHED:
        assert time.monotonic() < deadline, job
        request = job.get("frames_request")
        if request:
            samples = request["samples"]
            asked += len(samples)
            pictures = base64.b64encode(frame_thumbnails(video, samples)).decode()
            answered = client.post(
                job["links"]["frames"],
                json={"request_id": request["id"], "thumbnails": pictures},
            )
            assert answered.status_code == 200, answered.text
        time.sleep(0.05)
        job = client.get(job["links"]["self"]).json()
    return job, asked


@pytest.fixture(scope="module")
def inputs(case: BuiltCase, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("phone")
    audio = folder / "class.m4a"
    extract_audio(case.dance, audio)
    manifest = video_manifest(case.dance)
    video = manifest["video"]
    keys = keyframe_thumbnails(case.dance, video["sync"], video["sample_count"])
    return {"audio": audio, "manifest": manifest, "keyframes": base64.b64encode(keys).decode()}


@pytest.fixture(scope="module")
def server_job(
    client: ServiceClient, case: BuiltCase, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same pair through the server path (the video uploaded and rendered)."""
    return client.server_render(case.dance, case.bgm, tmp_path_factory.mktemp("server") / "out.mp4")


def _fetch(served: Served, url: str, path: Path) -> Path:
    response = httpx.get(served.url + url if url.startswith("/") else url, timeout=60)
    assert response.status_code == 200
    path.write_bytes(response.content)
    return path


def _audio_packets(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), p.pts) for p in container.demux(stream) if p.size]


def test_the_audio_first_job_gives_the_server_renders_file(
    served: Served,
    client: ServiceClient,
    case: BuiltCase,
    inputs: dict[str, Any],
    server_job: dict[str, Any],
    tmp_path: Path,
) -> None:
    audio_id = client.upload(inputs["audio"])
    assert client.get(f"/api/v1/uploads/{audio_id}").json()["media"]["has_video"] is False
    body = {
        "dance_upload_id": audio_id,
        "bgm_upload_id": server_job["bgm_upload_id"],
        "video_manifest": inputs["manifest"],
        "thumbnails": {"keyframes": inputs["keyframes"]},
    }
    created = client.post("/api/v1/jobs", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["audio_first"] is True
    job, asked = _run(client, created.json(), case.dance)
    assert job["status"] == "succeeded", job
    assert asked > 0  # the frames of the tail's groups of pictures were asked for

    result, server = job["result"], server_job["result"]
    assert result["cut"] == server["cut"]
    assert result["files"]["video"] is None
    assert result["files"]["poster"] is None
    assembly = result["assembly"]
    assert assembly["audio"] == {
        "codec": "aac",
        "sample_rate": 48000,
        "channels": 2,
        "duration": assembly["audio"]["duration"],
    }

    rendered = _fetch(served, server["files"]["video"], tmp_path / "server.mp4")
    copied = video_packets_copied(case.dance, rendered)
    assert copied
    assert assembly["first_sample"] == copied.source_start
    assert assembly["end_sample"] - assembly["first_sample"] == copied.packets
    assert assembly["excluded_samples"] == []

    track = _fetch(served, assembly["audio_url"], tmp_path / "audio.m4a")
    out = tmp_path / "assembled.mp4"
    assemble(
        case.dance,
        track,
        out,
        first_sample=assembly["first_sample"],
        end_sample=assembly["end_sample"],
    )
    assert _audio_packets(out) == _audio_packets(rendered)
    packets = len(_audio_packets(track))
    assert abs(assembly["audio"]["duration"] - packets * 1024 / 48000) <= 1e-6
    errors = sync_errors(out, case)
    assert all(not math.isnan(e) for e in errors), errors
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors
    assert errors == sync_errors(rendered, case)

    # Another take: a nudge is a new audio track, the music 20 ms later against the picture.
    variant = client.post(job["links"]["self"] + "/render", json={"nudge_ms": 20.0})
    assert variant.status_code == 202, variant.text
    nudged, _ = _run(client, variant.json(), case.dance)
    assert nudged["status"] == "succeeded", nudged
    assert nudged["parent_id"] == job["id"]
    assert nudged["audio_first"] is True
    # Only the track is made again: the parent's cut and copied samples stand.
    assert nudged["options"]["retrack_of"] == job["id"]
    assert nudged["result"]["cut"] == result["cut"]
    assert nudged["result"]["files"]["plot"] is not None
    moved = nudged["result"]["assembly"]
    assert (moved["first_sample"], moved["end_sample"]) == (
        assembly["first_sample"],
        assembly["end_sample"],
    )
    again = client.post(nudged["links"]["self"] + "/render", json={"nudge_ms": -10.0})
    assert again.status_code == 202, again.text
    back, _ = _run(client, again.json(), case.dance)
    assert back["status"] == "succeeded", back
    assert back["options"]["retrack_of"] == nudged["id"]
    track3 = _fetch(served, back["result"]["assembly"]["audio_url"], tmp_path / "audio3.m4a")
    out3 = tmp_path / "earlier.mp4"
    assemble(case.dance, track3, out3, first_sample=moved["first_sample"],
             end_sample=moved["end_sample"])  # fmt: skip
    early = sync_errors(out3, case)
    assert all(abs(e + 10.0) <= MAX_SYNC_MS for e in early), early
    track2 = _fetch(served, moved["audio_url"], tmp_path / "audio2.m4a")
    assert _audio_packets(track2) != _audio_packets(track)
    out2 = tmp_path / "nudged.mp4"
    assemble(case.dance, track2, out2, first_sample=moved["first_sample"],
             end_sample=moved["end_sample"])  # fmt: skip
    late = sync_errors(out2, case)
    assert all(abs(e - 20.0) <= MAX_SYNC_MS for e in late), late


def _lie(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    import copy

    lied = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = lied
    for name in parents:
        node = node[name]
    node[last] = value
    return lied


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("video.sample_count", 10, "sample_count"),
        ("duration", 95.0, "duration"),
        ("video.sync", [30, 0], "sorted"),
        ("video.stts", [[1, "x"]], "integer"),
        ("video.codec", "mjpg", "codec"),
    ],
)
def test_a_manifest_that_lies_is_refused_and_loses_nothing(
    client: ServiceClient,
    inputs: dict[str, Any],
    server_job: dict[str, Any],
    path: str,
    value: Any,
    says: str,
) -> None:
    audio_id = client.upload(inputs["audio"])
    before = len(client.get("/api/v1/jobs", params={"limit": 100}).json()["items"])
    body = {
        "dance_upload_id": audio_id,
        "bgm_upload_id": server_job["bgm_upload_id"],
        "video_manifest": _lie(inputs["manifest"], path, value),
        "thumbnails": {"keyframes": inputs["keyframes"]},
    }
    refused = client.post("/api/v1/jobs", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "INVALID_MANIFEST"
    assert says in problem["detail"]
    assert len(client.get("/api/v1/jobs", params={"limit": 100}).json()["items"]) == before
    # The uploads are untouched: the honest request goes through (and is taken back).
    assert client.get(f"/api/v1/uploads/{audio_id}").json()["status"] == "ready"
    body["video_manifest"] = inputs["manifest"]
    body["options"] = {"nudge_ms": float(len(path) + len(says))}  # never a cached twin
    accepted = client.post("/api/v1/jobs", json=body)
    assert accepted.status_code == 202, accepted.text
    assert client.delete(accepted.json()["links"]["self"]).status_code == 204


def test_thumbnails_of_the_wrong_size_are_refused(
    client: ServiceClient, inputs: dict[str, Any], server_job: dict[str, Any]
) -> None:
    audio_id = client.upload(inputs["audio"])
    short = base64.b64encode(base64.b64decode(inputs["keyframes"])[:-1]).decode()
    body = {
        "dance_upload_id": audio_id,
        "bgm_upload_id": server_job["bgm_upload_id"],
        "video_manifest": inputs["manifest"],
        "thumbnails": {"keyframes": short},
    }
    refused = client.post("/api/v1/jobs", json=body)
    assert refused.status_code == 422
    assert refused.json()["code"] == "INVALID_MANIFEST"


@pytest.mark.parametrize("declared", [True, False])
def test_a_request_body_past_the_limit_is_refused(client: ServiceClient, declared: bool) -> None:
    padding = "A" * (8 * 1024 * 1024 + 1)  # BEATSYNC_MAX_JOB_REQUEST_BYTES: 8 MB
    body = f'{{"dance_upload_id": "upl_x", "bgm_upload_id": "upl_y", "pad": "{padding}"}}'
    data = body.encode()
    if declared:
        refused = client.post("/api/v1/jobs", content=data)
    else:  # chunked: counted as it arrives
        refused = client.post("/api/v1/jobs", content=iter([data[:4096], data[4096:]]))
    assert refused.status_code == 413, refused.text
    assert refused.json()["code"] == "REQUEST_TOO_LARGE"
    assert refused.json()["max_bytes"] == 8 * 1024 * 1024
