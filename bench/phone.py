"""Phone benchmark: the real page in Chromium on a phone-like link, audio-first against server.

A 3-minute 1080p30 class video (``beatsync.testkit.speed_pair``, ~270 MB) and its reference (an
MP4 with AAC) are driven through the page of a live ``beatsync serve`` in headless Chromium,
with the link throttled by CDP (``Network.emulateNetworkConditions``: 10 Mbit/s up, 30 Mbit/s
down, 20 ms latency), once each way in the same run:

* **audio-first** (the page's default): the page sends the two files' sounds, the keyframes'
  thumbnails and the frames the job asks for, and puts the result together as a Blob;
* **server** (forced with ``localStorage["beatsync.path"] = "server"``): the whole video goes up,
  the service renders, the page downloads the rendered MP4 (``fetch`` of the download link).

Measured: the time from choosing the two files to a finished file on the device (the Blob
ready, or the download's last byte), the part of it after the start button, and the bytes the
page sent and received (Chromium's network layer: request bodies and headers, responses'
encoded lengths on the wire). The assembled file is saved and its sync checked against the
truth (``beatsync.testkit.sync_errors``). Bars: audio-first within 10 s, sending and receiving
no more than 2 % of the server path's bytes, in sync within 1 ms; exit status 1 when missed.

    python bench/phone.py

Results go to stdout and to the phone section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from load import Server  # noqa: E402

OUT = BENCH / "out" / "phone"
MEDIA = BENCH / ".media" / "speed"
RESULTS = BENCH / "RESULTS.md"
SECTION = "phone"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

UP_BPS = 10_000_000
DOWN_BPS = 30_000_000
LATENCY_MS = 20
GOAL_S = 10.0
GOAL_BYTES = 0.02
MAX_SYNC_MS = 1.0
JOB_MS = 900_000


class Tally:
    """Bytes a page sends and receives, from Chromium's network events (CDP)."""

    def __init__(self, session: Any) -> None:
        self.bodies: dict[str, int] = {}
        self.headers: dict[str, int] = {}
        self.received = 0
        session.on("Network.requestWillBeSent", self._request)
        session.on("Network.requestWillBeSentExtraInfo", self._extra)
        session.on("Network.loadingFinished", self._finished)

    def _request(self, event: dict[str, Any]) -> None:
        data = event["request"].get("postData")
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


@dataclass(frozen=True)
class Run:
    path: str
    total_s: float
    after_start_s: float
    sent: int
    received: int
    file_bytes: int
    sync_ms: float


def _drive(browser: Any, server: Server, case: Any, path: str) -> Run:
    """One pair through the page along ``path`` ("audio" or "server")."""
    context = browser.new_context(
        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True, locale="en-US",
        accept_downloads=True,
    )  # fmt: skip
    page = context.new_page()
    if path == "server":
        page.add_init_script("localStorage.setItem('beatsync.path', 'server');")
    page.goto(f"{server.url}/")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    session = context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": LATENCY_MS,
            "uploadThroughput": UP_BPS / 8,
            "downloadThroughput": DOWN_BPS / 8,
        },
    )
    tally = Tally(session)
    began = time.perf_counter()
    page.set_input_files("#dance-input", str(case.dance))
    page.set_input_files("#bgm-input", str(case.bgm))
    for kind in ("dance", "bgm"):
        page.wait_for_selector(f"#{kind}-card[data-state=ready]", state="attached", timeout=JOB_MS)
    note = page.locator("#dance-card [data-role=path]").get_attribute("data-path")
    if note != path:
        raise RuntimeError(f"the page took the {note} path, not {path}")
    started = time.perf_counter()
    page.locator("#start").click()
    page.wait_for_function(
        """() => ["succeeded", "failed", "canceled"].includes(
             document.getElementById("job").dataset.status)""",
        timeout=JOB_MS,
    )
    job_id = page.evaluate("localStorage.getItem('beatsync.job')")
    status = page.evaluate("document.getElementById('job').dataset.status")
    if status != "succeeded":
        raise RuntimeError(f"the {path} job ended {status}")
    saved = OUT / f"{path}.mp4"
    if path == "audio":
        page.wait_for_selector(
            f"#result[data-assembled={job_id}]", state="attached", timeout=JOB_MS
        )
        done = time.perf_counter()
        sent, received = tally.sent, tally.received
        with page.expect_download() as caught:
            page.locator("#download").click()
        caught.value.save_as(saved)
        file_bytes = saved.stat().st_size
    else:
        # The download as the phone receives it, over the throttled link, into memory.
        file_bytes = page.evaluate(
            """async () => {
                 const a = document.getElementById("download");
                 const response = await fetch(a.href, {credentials: "same-origin"});
                 return (await response.arrayBuffer()).byteLength;
               }"""
        )
        done = time.perf_counter()
        sent, received = tally.sent, tally.received
        href = page.locator("#download").get_attribute("href")
        token = page.evaluate("localStorage.getItem('beatsync.token')")
        with httpx.stream(
            "GET", server.url + href, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as answer, saved.open("wb") as handle:  # fmt: skip
            for chunk in answer.iter_bytes():
                handle.write(chunk)
    context.close()
    from beatsync.testkit import sync_errors

    errors = sync_errors(saved, case)
    worst = max((abs(e) for e in errors), default=math.nan)
    if any(math.isnan(e) for e in errors):
        worst = math.nan
    return Run(path, done - began, done - started, sent, received, file_bytes, worst)


def _streams(path: Path) -> tuple[int, int]:
    """Bytes of the file's audio packets, and the count of its video keyframes."""
    import av

    with av.open(str(path)) as container:
        audio = sum(p.size for p in container.demux(audio=0) if p.size)
    with av.open(str(path)) as container:
        keys = sum(1 for p in container.demux(video=0) if p.size and p.is_keyframe)
    return audio, keys


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _section(case: Any, runs: dict[str, Run], load: tuple[float, float], passed: bool) -> str:
    audio, server = runs["audio"], runs["server"]
    size = case.dance.stat().st_size
    lines = [
        "## Phone: the page on a throttled link, audio-first against the server path",
        "",
        f"`python bench/phone.py` on {dt.date.today().isoformat()}: the real page in headless "
        f"Chromium against `beatsync serve`, link throttled by CDP to {UP_BPS / 1e6:g} Mbit/s up, "
        f"{DOWN_BPS / 1e6:g} Mbit/s down, {LATENCY_MS} ms latency. Class video "
        f"`{case.dance.name}` ({_mb(size)}, 3 min 1080p30 H.264 + AAC), reference "
        f"`{case.bgm.name}` ({_mb(case.bgm.stat().st_size)}, MP4 with AAC). Time from choosing "
        "the two files to a finished file on the device (audio-first: the assembled Blob "
        "ready; server: the rendered file downloaded); bytes as Chromium's network layer "
        "counts them (bodies and headers sent; responses on the wire). Load average "
        f"{load[0]:.2f} before, {load[1]:.2f} after (2 shared cores).",
        "",
        "| path | to a finished file | after start | sent | received | file | sync (worst) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in (audio, server):
        lines.append(
            f"| {run.path} | {run.total_s:.1f} s | {run.after_start_s:.1f} s | {_mb(run.sent)} "
            f"| {_mb(run.received)} | {_mb(run.file_bytes)} | {run.sync_ms:.2f} ms |"
        )
    both = (audio.sent + audio.received) / max(1, server.sent + server.received)
    dance_audio, keys = _streams(case.dance)
    bgm_audio, _ = _streams(case.bgm)
    thumbs = keys * 96 * 54 * 4 // 3
    sounds = dance_audio + bgm_audio
    lines += [
        "",
        f"What audio-first must send: the two sounds' packets, {_mb(sounds)} (class video "
        f"{_mb(dance_audio)}, reference {_mb(bgm_audio)}), and the {keys} keyframes' thumbnails, "
        f"{_mb(thumbs)} in base64; at {UP_BPS / 1e6:g} Mbit/s that is "
        f"{(sounds + thumbs) * 8 / UP_BPS:.1f} s of the link on its own. The files were ready "
        f"(read, uploaded, checked) {audio.total_s - audio.after_start_s:.1f} s after being "
        "chosen.",
        "",
        f"Audio-first: {audio.total_s:.1f} s (goal ≤ {GOAL_S:g} s), "
        f"{both * 100:.2f} % of the server path's bytes sent and received "
        f"(goal ≤ {GOAL_BYTES * 100:g} %; sent {audio.sent / max(1, server.sent) * 100:.2f} %, "
        f"received {audio.received / max(1, server.received) * 100:.2f} %), "
        f"{'**met**' if passed else '**missed**'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from accuracy import write_section
    from beatsync.testkit import speed_pair

    began = time.perf_counter()
    case = speed_pair(MEDIA)
    print(f"speed pair ready ({time.perf_counter() - began:.0f} s): {case.dance}")
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "data"
    data.mkdir(exist_ok=True)
    load_before = os.getloadavg()[0]
    server = Server(data)
    runs: dict[str, Run] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for path in ("audio", "server"):
                runs[path] = _drive(browser, server, case, path)
                print(runs[path])
            browser.close()
    finally:
        server.stop()
    load_after = os.getloadavg()[0]
    audio, server_run = runs["audio"], runs["server"]
    share = (audio.sent + audio.received) / max(1, server_run.sent + server_run.received)
    passed = (
        audio.total_s <= GOAL_S
        and share <= GOAL_BYTES
        and audio.sync_ms <= MAX_SYNC_MS
        and server_run.sync_ms <= MAX_SYNC_MS
    )
    section = _section(case, runs, (load_before, load_after), passed)
    print()
    print(section)
    write_section(RESULTS, SECTION, section)
    print(f"wrote the {SECTION} section of {RESULTS}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
