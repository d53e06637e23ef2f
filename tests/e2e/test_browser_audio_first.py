"""The page's audio-first path in real headless Chromium against the real service.

The class video never leaves the browser: the page re-wraps its sound, sends it with the video's
manifest, answers the job's frame requests (a few frames decoded with WebCodecs into the
service's thumbnails: no picture goes with the job's creation), then puts the
result together from the returned audio track and the video's own samples. The tests check
that the server never received the video, that the page's file is the one the server path
renders for the same pair (same frames, same audio packets, the cut of a black tail), that its
sync measured against the truth is within a millisecond, that a nudge re-assembles with a new
track 20 ms later and another candidate with a new track, that a file the browser cannot read
(Matroska, or HEVC without a decoder) goes the server path, and so does a video whose manifest
the service refuses. A reference that is a music video goes up as its sound alone, and all the
page sends is the two sounds, the few thumbnails asked for and a little JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from service_process import FINISHED
from test_browser import (
    JOB_MS,
    Watch,
    api_get,
    artifacts,
    browser,
    open_page,
    phone,
    wait_card,
    wait_job,
)

from beatsync.testkit.audiofirst import frame_thumbnails, video_manifest
from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from beatsync.testkit.measure import sync_errors, video_packets_copied

if TYPE_CHECKING:
    from conftest import Served

__all__ = ["artifacts", "browser"]

MAX_SYNC_MS = 1.0
HEVC_DECODES = """async () => (await VideoDecoder.isConfigSupported(
  {codec: "hvc1.1.6.L93.B0", codedWidth: 320, codedHeight: 240})).supported"""


@pytest.fixture(scope="module")
def black(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    # H.264 in MP4 with AAC, black at the head and the tail: the cut rests on the page's frames.
    return build_case(case_named("small-black-tail"), tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def reordered(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    # H.264 with B-frames (pictures decoded out of the order shown) in a portrait MOV, black
    # at both ends: the frames the job asks for come back from the decoder reordered.
    spec = dataclasses.replace(
        case_named("small-black-tail"),
        name="small-black-tail-bframes",
        container="mov",
        rotation=270,
        b_frames=True,
    )
    return build_case(spec, tmp_path_factory.mktemp("bframes"))


def test_b_frames_in_a_portrait_mov_give_the_server_paths_file(
    served: Served, browser: Browser, reordered: BuiltCase, tmp_path: Path
) -> None:
    context = phone(browser, accept_downloads=True)
    watch = Watch()
    page = open_page(context, served, watch, server_path=False)
    sent = _job_posts(page)
    page.set_input_files("#dance-input", str(reordered.dance))
    page.set_input_files("#bgm-input", str(reordered.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    assert page.locator("#dance-card [data-role=path]").get_attribute("data-path") == "audio"
    page.locator("#start").click()
    job_id = wait_job(page)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    ours = _saved_result(page, job_id, tmp_path / "page.mp4")
    server_job, rendered = _server_render(served, reordered, tmp_path)
    assert job["result"]["cut"] == server_job["result"]["cut"]
    assert _packets(ours, "video") == _packets(rendered, "video")
    assert _packets(ours, "audio") == _packets(rendered, "audio")
    with av.open(str(ours)) as container:
        frame = next(container.decode(video=0))
        assert round(frame.rotation) % 360 == 270
    answers = [status for url, status, _ in sent if url.endswith("/frames")]
    assert answers
    assert set(answers) == {200}
    errors = sync_errors(ours, reordered)
    assert all(not math.isnan(e) for e in errors), errors
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors
    watch.assert_clean(page)
    context.close()


# A file the page cannot read (Matroska) and one whose picture Debian's Chromium cannot decode
# (HEVC in MOV): the note's reason for each, in Chinese.
FALLBACKS = {
    "small-frozen-tail": "已上传整个视频（不是带 AAC 声音的 MP4/MOV）。",
    "small-hevc-portrait": "已上传整个视频（这个浏览器无法解码它的画面）。",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _answered_frames(served: Served, job_id: str) -> tuple[list[int], np.ndarray]:
    """The samples whose thumbnails the page sent for the job, and those thumbnails' bytes (from
    the job's row)."""
    with sqlite3.connect(served.data_dir / "beatsync.db") as db:
        row = db.execute(
            "SELECT thumbnail_samples, thumbnails FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    return json.loads(row[0]), np.frombuffer(row[1], np.uint8)


def _holds_picture(served: Served, video: Path) -> list[Path]:
    """The service's stored files that are ``video`` or hold one of its keyframes' bytes."""
    with av.open(str(video)) as container:
        keys = [bytes(p) for p in container.demux(video=0) if p.size and p.is_keyframe]
    whole = _sha(video)
    found = []
    for path in served.data_dir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == whole or any(k in data for k in keys):
            found.append(path)
    return found


def _server_render(served: Served, case: BuiltCase, folder: Path) -> tuple[dict[str, Any], Path]:
    """The same pair through the server path (whole video uploaded and rendered)."""
    token = httpx.post(f"{served.url}/api/v1/sessions").json()["token"]
    with httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        ids = []
        for path in (case.dance, case.bgm):
            with path.open("rb") as handle:
                sent = client.post("/api/v1/uploads", files={"file": (path.name, handle)})
            assert sent.status_code == 201, sent.text
            ids.append(sent.json()["id"])
            deadline = time.monotonic() + 30
            while client.get(f"/api/v1/uploads/{ids[-1]}").json()["status"] == "receiving":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        job = client.post("/api/v1/jobs", json={"dance_upload_id": ids[0], "bgm_upload_id": ids[1]})
        assert job.status_code == 202, job.text
        body = job.json()
        deadline = time.monotonic() + 180
        while body["status"] not in FINISHED:
            assert time.monotonic() < deadline
            time.sleep(0.1)
            body = client.get(f"/api/v1/jobs/{body['id']}").json()
        assert body["status"] == "succeeded", body
        rendered = folder / "server.mp4"
        rendered.write_bytes(client.get(body["result"]["files"]["video"]).content)
        return body, rendered


def _packets(path: Path, kind: str) -> list[tuple[bytes, int | None, int | None]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return [(bytes(p), p.pts, p.dts) for p in container.demux(stream) if p.size]


def _job_posts(page: Page) -> list[tuple[str, int, Any]]:
    """(url, status, body) of every POST the page makes to the jobs API, as they answer."""
    sent: list[tuple[str, int, Any]] = []
    page.on(
        "response",
        lambda r: (
            sent.append((r.url, r.status, r.request.post_data_json))
            if r.request.method == "POST" and "/api/v1/jobs" in r.url
            else None
        ),
    )
    return sent


def _saved_result(page: Page, job_id: str, path: Path) -> Path:
    """The page's assembled file, saved through its download link as a person would."""
    page.wait_for_selector(f"#result[data-assembled={job_id}]", state="attached", timeout=60_000)
    with page.expect_download() as caught:
        page.locator("#download").click()
    caught.value.save_as(path)
    return path


def _jobs_nudged(page: Page, served: Served, parent: str, nudge: float) -> list[dict[str, Any]]:
    """The owner's jobs made from ``parent`` with ``nudge`` ms."""
    jobs = api_get(page, served, "/api/v1/jobs")["items"]
    return [
        j for j in jobs
        if j.get("parent_id") == parent and (j.get("options") or {}).get("nudge_ms") == nudge
    ]  # fmt: skip


def _ahead_job(
    page: Page, served: Served, parent: str, nudge: float, *, status: str | None = None
) -> str:
    """The id of the job the page made ahead for ``nudge`` (waited for, ``status`` too)."""
    deadline = time.monotonic() + JOB_MS / 1000
    while time.monotonic() < deadline:
        found = _jobs_nudged(page, served, parent, nudge)
        if found and (status is None or found[0]["status"] == status):
            assert len(found) == 1, found
            return str(found[0]["id"])
        time.sleep(0.2)
    raise AssertionError(f"no job was made ahead for a {nudge} ms nudge")


def test_the_class_video_stays_in_the_browser(
    served: Served, browser: Browser, black: BuiltCase, tmp_path: Path, artifacts: Path
) -> None:
    context = phone(browser, accept_downloads=True)
    watch = Watch()
    page = open_page(context, served, watch, server_path=False)
    sent = _job_posts(page)
    page.set_input_files("#dance-input", str(black.dance))
    page.set_input_files("#bgm-input", str(black.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")

    # Only the sound went up: an M4A without picture, a fraction of the video's bytes.
    note = page.locator("#dance-card [data-role=path]")
    assert note.get_attribute("data-path") == "audio"
    upload_id = page.locator("#dance-card").get_attribute("data-upload-id")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    video_size = black.dance.stat().st_size
    assert upload["media"]["has_video"] is False
    assert upload["size"] < video_size / 3
    assert note.inner_text() == (
        f"Only the sound is uploaded: {_mb(upload['size'])} instead of the whole video's "
        f"{_mb(video_size)}. The video stays on this device."
    )
    page.locator("#start").click()
    job_id = wait_job(page)
    # The job goes with the manifest and no picture; the frames it then asked for (a few
    # around the cut's edges) are the reference client's thumbnails, give or take a rounding.
    created = [body for url, _, body in sent if url.endswith("/api/v1/jobs")]
    assert len(created) == 1
    assert created[0]["video_manifest"] == video_manifest(black.dance)
    assert "thumbnails" not in created[0]
    samples, ours_frames = _answered_frames(served, job_id)
    assert 0 < len(samples) <= 80  # the edges' groups of pictures, not the video's 480 frames
    theirs = frame_thumbnails(black.dance, samples)
    diff = np.abs(ours_frames.astype(int) - np.frombuffer(theirs, np.uint8).astype(int))
    assert diff.max() <= 1
    assert diff.mean() <= 0.1  # 0.05 measured: area edges weighted in floats, not swscale's
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    assert job["audio_first"] is True
    ours = _saved_result(page, job_id, tmp_path / "page.mp4")
    page.screenshot(path=artifacts / "10-audio-first-result.png", full_page=True)
    assert page.locator("#result-path").inner_text().startswith("Video put together on this device")

    # The server never had the class video: no stored file is it or holds any of its pictures.
    assert not _holds_picture(served, black.dance)

    # The same file as the server path's render: same frames (the black tail cut at the same
    # frame), same audio packets, same sync against the truth.
    server_job, rendered = _server_render(served, black, tmp_path)
    assert job["result"]["cut"] == server_job["result"]["cut"]
    assert _packets(ours, "video") == _packets(rendered, "video")
    assert _packets(ours, "audio") == _packets(rendered, "audio")
    copied = video_packets_copied(black.dance, ours)
    assert copied
    assert copied.source_start == job["result"]["assembly"]["first_sample"]
    errors = sync_errors(ours, black)
    assert all(not math.isnan(e) for e in errors), errors
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors
    # The picture's black tail (2 s) and head (1 s) are cut: the output shows neither.
    cut = job["result"]["cut"]
    truth = black.truth
    assert cut["end_s"] <= truth.duration - 2.0 + 0.05

    # A nudge fetches a new audio track and re-assembles: the music 20 ms later.
    page.locator("[data-nudge='10']").click()
    page.locator("[data-nudge='10']").click()
    page.locator("#nudge-apply").click()
    nudged_id = wait_job(page, other_than=job_id)
    nudged = _saved_result(page, nudged_id, tmp_path / "nudged.mp4")
    assert _packets(nudged, "video") == _packets(ours, "video")
    late = sync_errors(nudged, black)
    assert all(abs(e - 20.0) <= MAX_SYNC_MS for e in late), late
    # A nudge left alone for a moment is made before "Apply": a changed value drops the one
    # made ahead (its job deleted), and applying the value shows the job made for it, with the
    # track fetched once, before the tap.
    tracks: list[str] = []
    page.on(
        "requestfinished",
        lambda request: tracks.append(request.url) if "audio.m4a" in request.url else None,
    )
    page.locator("[data-nudge='50']").click()  # 20 → 70
    first_ahead = _ahead_job(page, served, nudged_id, 70.0)
    for _ in range(4):
        page.locator("[data-nudge='-10']").click()  # 70 → 30 in steps
    ahead = _ahead_job(page, served, nudged_id, 30.0, status="succeeded")
    assert ahead != first_ahead
    assert _jobs_nudged(page, served, nudged_id, 70.0) == []
    page.wait_for_function(
        "(id) => performance.getEntriesByType('resource').some("
        "  (e) => e.name.includes(id) && e.name.includes('audio.m4a') && e.responseEnd > 0)",
        arg=ahead,
        timeout=JOB_MS,
    )
    # A person taps a little later: the job's answer then signs its files' links anew (the
    # expiry moves on each second), and the track fetched ahead must still be the one used.
    page.wait_for_timeout(1500)
    page.locator("#nudge-apply").click()
    page.wait_for_selector(f"#result[data-assembled={ahead}]", state="attached", timeout=JOB_MS)
    assert page.evaluate("localStorage.getItem('beatsync.job')") == ahead
    assert len([url for url in tracks if ahead in url]) == 1, tracks
    early = _saved_result(page, ahead, tmp_path / "ahead.mp4")
    assert all(abs(e - 30.0) <= MAX_SYNC_MS for e in sync_errors(early, black))
    nudged_id = ahead

    # Another candidate: a new track for the runner-up's mapping, assembled with the video's
    # own samples from where its cut starts.
    page.locator("#candidate-list [data-candidate='0']").click()
    other_id = wait_job(page, other_than=nudged_id)
    other = _saved_result(page, other_id, tmp_path / "other.mp4")
    assembly = api_get(page, served, f"/api/v1/jobs/{other_id}")["result"]["assembly"]
    copied = video_packets_copied(black.dance, other)
    assert copied
    assert copied.source_start == assembly["first_sample"]
    assert copied.packets == assembly["end_sample"] - assembly["first_sample"]
    track = tmp_path / "other.m4a"
    track.write_bytes(httpx.get(served.url + assembly["audio_url"]).content)
    assert [p[0] for p in _packets(other, "audio")] == [p[0] for p in _packets(track, "audio")]

    # The edges' frames were asked of the page and answered by it.
    answers = [status for url, status, _ in sent if url.endswith("/frames")]
    assert answers
    assert set(answers) == {200}
    watch.assert_clean(page)

    # After a reload the page no longer holds the video: it says so instead of a player.
    page.reload()
    page.wait_for_selector("#job[data-status=succeeded]", state="attached")
    expect(page.locator("#result-path")).to_have_text(
        "The video is only on the device that chose it: choose the same class video again "
        "and start to put it together."
    )
    assert page.locator("#download").is_hidden()
    watch.assert_clean(page)
    context.close()


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_a_file_the_browser_cannot_read_goes_the_server_path(
    served: Served, browser: Browser, name: str, tmp_path: Path
) -> None:
    video = build_case(case_named(name), tmp_path)
    context = phone(browser)
    watch = Watch()
    page = open_page(context, served, watch, server_path=False)
    if name == "small-hevc-portrait" and page.evaluate(HEVC_DECODES):
        pytest.skip("this Chromium decodes HEVC: the page rightly keeps such a video")
    page.locator("[data-lang=zh-CN]").click()
    page.set_input_files("#dance-input", str(video.dance))
    page.set_input_files("#bgm-input", str(video.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    note = page.locator("#dance-card [data-role=path]")
    assert note.get_attribute("data-path") == "server"
    assert note.inner_text() == FALLBACKS[name]
    upload_id = page.locator("#dance-card").get_attribute("data-upload-id")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    assert upload["media"]["has_video"] is True
    assert upload["size"] == video.dance.stat().st_size
    page.locator("#start").click()
    job_id = wait_job(page)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    assert not job.get("audio_first")
    href = page.locator("#download").get_attribute("href")
    assert href is not None
    assert href.split("?")[0] == f"/api/v1/files/{job_id}/output.mp4"
    assert page.locator("#result-path").is_hidden()
    watch.assert_clean(page)
    context.close()


def _mb(size: int) -> str:
    """A size as the page's English locale writes it (1024-based, one decimal below 100)."""
    value, unit = float(size), 0
    while value >= 1024 and unit < 3:
        value /= 1024
        unit += 1
    digits = 0 if unit == 0 or value >= 100 else 1
    text = f"{value:,.{digits}f}"
    if digits and text.endswith(".0"):
        text = text[:-2]
    return f"{text} {['B', 'KB', 'MB', 'GB'][unit]}"


def test_a_manifest_the_server_refuses_sends_the_whole_video(
    served: Served, browser: Browser, black: BuiltCase
) -> None:
    """The service refuses the audio-first job (here: a manifest whose duration is made to
    disagree with the sound on its way out): the page uploads the whole video and goes on."""
    context = phone(browser)
    watch = Watch(allowed_failures=("/api/v1/uploads/instant", "/api/v1/jobs"))
    page = open_page(context, served, watch, server_path=False)
    refused: list[int] = []

    def tamper(route: Route) -> None:
        body = route.request.post_data_json
        if route.request.method != "POST" or "video_manifest" not in body:
            route.continue_()
            return
        body["video_manifest"]["duration"] += 5.0
        route.continue_(post_data=json.dumps(body))

    page.route(f"{served.url}/api/v1/jobs", tamper)
    page.on(
        "response",
        lambda r: (
            refused.append(r.status)
            if r.request.method == "POST" and r.url.endswith("/api/v1/jobs")
            else None
        ),
    )
    page.set_input_files("#dance-input", str(black.dance))
    page.set_input_files("#bgm-input", str(black.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    note = page.locator("#dance-card [data-role=path]")
    assert note.get_attribute("data-path") == "audio"
    page.locator("#start").click()
    job_id = wait_job(page)
    assert refused == [422, 202]
    assert note.get_attribute("data-path") == "server"
    assert note.inner_text() == (
        "The whole video is uploaded (the server could not work from its sound and picture "
        "index alone)."
    )
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    upload = api_get(page, served, f"/api/v1/uploads/{job['dance_upload_id']}")
    assert upload["media"]["has_video"] is True
    assert upload["size"] == black.dance.stat().st_size
    watch.assert_clean(page)
    context.close()


class Tally:
    """Bytes a page sends and receives, as Chromium's network layer reports them (CDP).

    Sent: each request's body (its Content-Length as put on the wire, else its post data) and
    its header lines. Received: each response's encoded length on the wire, headers included.
    """

    def __init__(self, page: Page) -> None:
        self.bodies: dict[str, int] = {}
        self.headers: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.received = 0
        session = page.context.new_cdp_session(page)
        session.send("Network.enable")
        session.on("Network.requestWillBeSent", self._request)
        session.on("Network.requestWillBeSentExtraInfo", self._extra)
        session.on("Network.loadingFinished", self._finished)

    def _request(self, event: dict[str, Any]) -> None:
        request = event["request"]
        self.urls[event["requestId"]] = f"{request['method']} {request['url']}"
        data = request.get("postData")
        if data is not None:
            self.bodies.setdefault(event["requestId"], len(data.encode()))

    def _extra(self, event: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in event["headers"].items()}
        self.headers[event["requestId"]] = sum(len(k) + len(v) + 4 for k, v in headers.items())
        if "content-length" in headers:
            self.bodies[event["requestId"]] = int(headers["content-length"])

    def _finished(self, event: dict[str, Any]) -> None:
        self.received += int(event["encodedDataLength"])

    @property
    def sent(self) -> int:
        return sum(self.bodies.values()) + sum(self.headers.values())

    def sent_to(self, needle: str) -> int:
        return sum(n for rid, n in self.bodies.items() if needle in self.urls.get(rid, ""))


def _audio_payload(path: Path) -> tuple[int, int]:
    """Bytes of the file's audio packets, and their count."""
    with av.open(str(path)) as container:
        sizes = [p.size for p in container.demux(audio=0) if p.size]
    return sum(sizes), len(sizes)


def test_only_the_two_sounds_leave_the_page(
    served: Served, browser: Browser, black: BuiltCase, tmp_path: Path
) -> None:
    """The reference (a music video) goes up as its sound alone too; what the page sends in
    all is the two sounds, the few thumbnails asked for and a little JSON; the result is a
    blob: URL, shared through the system where the browser can share files."""
    context = phone(browser, accept_downloads=True)
    watch = Watch()
    page = open_page(context, served, watch, server_path=False)
    tally = Tally(page)
    sent = _job_posts(page)
    page.set_input_files("#dance-input", str(black.dance))
    page.set_input_files("#bgm-input", str(black.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")

    note = page.locator("#bgm-card [data-role=path]")
    assert note.get_attribute("data-path") == "sound"
    upload_id = page.locator("#bgm-card").get_attribute("data-upload-id")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    whole = black.bgm.stat().st_size
    assert upload["media"]["has_video"] is False
    assert upload["size"] < whole
    assert note.inner_text() == (
        f"Only the reference's sound is uploaded: {_mb(upload['size'])} instead of the whole "
        f"file's {_mb(whole)}."
    )
    page.locator("[data-lang=zh-CN]").click()
    assert note.inner_text() == (
        f"参考文件仅上传声音：{_mb(upload['size'])}，而不是整个文件 {_mb(whole)}。"
    )
    page.locator("[data-lang=en]").click()

    page.locator("#start").click()
    job_id = wait_job(page)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job
    page.wait_for_selector(f"#result[data-assembled={job_id}]", state="attached", timeout=60_000)

    # The clean track from the reference's sound is the one from the whole reference.
    ours = _saved_result(page, job_id, tmp_path / "page.mp4")
    _, rendered = _server_render(served, black, tmp_path)
    assert _packets(ours, "audio") == _packets(rendered, "audio")
    errors = sync_errors(ours, black)
    assert max(abs(e) for e in errors) <= MAX_SYNC_MS, errors

    # The download link is the page's own Blob (the file saved above through it is the
    # assembled MP4: the server's audio packets, in sync); the page's CSP keeps even the page
    # from fetching it back, so its bytes are read through the download.
    href = page.locator("#download").get_attribute("href")
    assert href is not None
    assert href.startswith(f"{served.url.replace('http', 'blob:http', 1)}/")
    assert _packets(ours, "video") == _packets(rendered, "video")
    # The share button follows the browser's Web Share with files (Linux Chromium has none).
    shares = page.evaluate(
        """() => typeof navigator.canShare === "function"
             && navigator.canShare({files: [new File([new Uint8Array(8)], "a.mp4",
                                                     {type: "video/mp4"})]})"""
    )
    assert page.locator("#share").is_visible() == bool(shares)

    # Bytes sent: the two sounds' packets, plus what else must go: the M4As' boxes (the
    # tables of where and how long each packet is: 12 bytes a packet is ample), the thumbnails
    # (base64, 4/3 of 96×54 bytes each) of the frames the job asked for, the video manifest,
    # and for every request its headers and JSON (session, uploads, tus,
    # job, frames: under 1 KB each with the token; 0.4 KB measured).
    streams = [_audio_payload(black.dance), _audio_payload(black.bgm)]
    audio = sum(size for size, _ in streams)
    packets = sum(count for _, count in streams)
    thumbs = sum(len(body["thumbnails"]) for url, _, body in sent if url.endswith("/frames"))
    assert not any("thumbnails" in body for url, _, body in sent if url.endswith("/jobs"))
    manifest = sum(
        len(json.dumps(body["video_manifest"])) for url, _, body in sent if url.endswith("/jobs")
    )
    requests = len(tally.urls)
    assert audio <= tally.sent_to("/tus")
    assert tally.sent <= audio + 12 * packets + thumbs + manifest + 1024 * requests, (
        tally.sent,
        audio,
        packets,
        thumbs,
        manifest,
        requests,
    )
    watch.assert_clean(page)
    context.close()
