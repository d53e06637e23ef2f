"""Phone benchmark: the real page in Chromium on a phone-like link, audio-first against server.

A 3-minute 1080p30 class video (``beatsync.testkit.speed_pair`` at 17 Mbit/s, ~385 MB: what a
phone records, ~130 MB a minute of 1080p30 H.264; the speed benchmark's 12 Mbit/s video is
lighter than a phone's, and the share of the server path's bytes depends on it) and its
reference (an MP4 with AAC) are driven through the page of a live ``beatsync serve`` in
headless Chromium, with the link throttled by CDP (``Network.emulateNetworkConditions``:
10 Mbit/s up, 30 Mbit/s down, 20 ms latency), once each way in the same run:

* **audio-first** (the page's default): the page sends the two files' sounds and the few frames
  the job asks for (thumbnails around the cut's edges), and puts the result together as a Blob;
  once **cold** (a new visitor) and once **warm** (the same visitor again with the class
  video's sound and jobs deleted: the reference's sound is found on the server by its hash);
  on the cold run's page, ``--nudges`` nudges in a row, each timed to its new file (typed and
  applied at once, or ``--nudge-pause`` seconds apart: the page renders a nudge left alone
  for a moment before it is applied), then the search's runner-up, timed the same way;
* **server** (forced with ``localStorage["beatsync.path"] = "server"``): the whole video goes up,
  the service renders, the page downloads the rendered MP4 (``fetch`` of the download link).

Measured: the time from choosing the two files to a finished file on the device (the Blob
ready, or the download's last byte), the part of it after the start button, where the seconds
go (the page's ``beatsync:*`` performance marks, the job's queue and run times), and the bytes
the page sent and received (Chromium's network layer: request bodies and headers, responses'
encoded lengths on the wire). The assembled file is saved and its sync checked against the
truth (``beatsync.testkit.sync_errors``). Bars (on the cold run): audio-first within 10 s,
sending and receiving no more than 2 % of the server path's bytes, in sync within 1 ms; exit
status 1 when missed.

    python bench/phone.py

Results go to stdout and to the phone section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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

VIDEO_BPS = 17_000_000
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
        self.kinds: dict[str, str] = {}
        self.got: dict[str, int] = {}
        self.received = 0
        session.on("Network.requestWillBeSent", self._request)
        session.on("Network.requestWillBeSentExtraInfo", self._extra)
        session.on("Network.loadingFinished", self._finished)

    def _request(self, event: dict[str, Any]) -> None:
        self.kinds[event["requestId"]] = _kind(event["request"]["method"], event["request"]["url"])
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
        self.got[event["requestId"]] = int(event["encodedDataLength"])

    def by_kind(self) -> dict[str, tuple[int, int, int]]:
        """Requests, bytes sent and bytes received for each kind of request."""
        out: dict[str, tuple[int, int, int]] = {}
        for rid, kind in self.kinds.items():
            n, sent, got = out.get(kind, (0, 0, 0))
            up = self.bodies.get(rid, 0) + self.headers.get(rid, 0)
            out[kind] = (n + 1, sent + up, got + self.got.get(rid, 0))
        return out

    @property
    def sent(self) -> int:
        return sum(self.bodies.values()) + sum(self.headers.values())


def _kind(method: str, url: str) -> str:
    """A request's kind for the byte breakdown: its method and path, ids left out."""
    path = url.split("?", 1)[0].split("://", 1)[-1].split("/", 1)[-1]
    parts = [p for p in path.split("/") if p]
    words = [p for p in parts if len(p) < 20 and not any(c.isdigit() for c in p[:1])]
    return f"{method} /{'/'.join(words)}"


@dataclass(frozen=True)
class Run:
    path: str
    total_s: float
    after_start_s: float
    sent: int
    received: int
    file_bytes: int
    sync_ms: float
    steps: dict[str, float] = field(default_factory=dict)
    job: dict[str, float] = field(default_factory=dict)
    kinds: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _context(browser: Any, session: dict[str, str] | None = None) -> Any:
    """A phone-sized browser context; ``session``: the token and owner of an earlier one (the
    same person again, nothing else remembered)."""
    context = browser.new_context(
        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True, locale="en-US",
        accept_downloads=True,
    )  # fmt: skip
    if session:
        context.add_init_script(
            "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in session.items())
        )
    return context


def _open(context: Any, server: Server, path: str) -> tuple[Any, Tally, float]:
    """The page, loaded, on the throttled link: (page, its byte tally, its clock now in s)."""
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
    return page, Tally(session), page.evaluate("performance.now()") / 1000


def _marks(page: Any, since: float) -> dict[str, float]:
    """The page's named moments (``beatsync:*`` performance marks), in s after ``since``."""
    marks = page.evaluate(
        """() => performance.getEntriesByType("mark")
             .filter((m) => m.name.startsWith("beatsync:"))
             .map((m) => [m.name.slice(9), m.startTime])"""
    )
    return {name: round(t / 1000 - since, 3) for name, t in marks}


def _job_times(server: Server, page: Any, job_id: str) -> dict[str, float]:
    """The job's queue and run times from its row (seconds)."""
    token = page.evaluate("localStorage.getItem('beatsync.token')")
    job = httpx.get(
        f"{server.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    at = {k: dt.datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")}
    return {
        "queued": (at["started_at"] - at["created_at"]).total_seconds(),
        "ran": (at["finished_at"] - at["started_at"]).total_seconds(),
    }


def _drive(context: Any, server: Server, case: Any, path: str) -> tuple[Run, Any, Tally]:
    """One pair through the page along ``path`` ("audio" or "server"): the run, the page and
    its byte tally."""
    page, tally, since = _open(context, server, path)
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
    from beatsync.testkit import sync_errors

    errors = sync_errors(saved, case)
    worst = max((abs(e) for e in errors), default=math.nan)
    if any(math.isnan(e) for e in errors):
        worst = math.nan
    steps = _marks(page, since)
    job = _job_times(server, page, job_id)
    run = Run(
        path, done - began, done - started, sent, received, file_bytes, worst, steps, job,
        kinds=tally.by_kind(),
    )  # fmt: skip
    return run, page, tally


@dataclass(frozen=True)
class Nudge:
    total_s: float
    queued_s: float
    ran_s: float
    sent: int
    received: int


def _nudges(
    server: Server, page: Any, tally: Tally, count: int, *, pause: float = 0.0
) -> list[Nudge]:
    """From a nudge's click to its new file assembled, for ``count`` nudges in a row; the value
    is typed ``pause`` seconds before "Apply" is pressed (a person choosing it)."""
    times = []
    for n in range(count):

        def choose(n: int = n) -> None:
            page.fill("#nudge-ms", str(10 * (n + 1) * (-1) ** n))
            time.sleep(pause)

        times.append(_new_file(server, page, tally, page.locator("#nudge-apply").click, choose))
    return times


def _candidate(server: Server, page: Any, tally: Tally) -> Nudge | None:
    """From a tap on the search's runner-up to its file assembled (None: there is none)."""
    button = page.locator("#candidate-list [data-candidate='0']")
    if button.count() == 0:
        return None
    return _new_file(server, page, tally, button.click)


def _new_file(
    server: Server,
    page: Any,
    tally: Tally,
    press: Callable[[], None],
    choose: Callable[[], None] = lambda: None,
) -> Nudge:
    """From ``press`` to the file of the job it makes assembled; the bytes are counted from
    before ``choose`` (what the page does ahead while a person chooses counts too)."""
    sent, received = tally.sent, tally.received
    before = page.evaluate("localStorage.getItem('beatsync.job')")
    choose()
    began = time.perf_counter()
    press()
    page.wait_for_function(
        """(before) => {
             const id = localStorage.getItem("beatsync.job");
             return id !== before
               && document.getElementById("result").dataset.assembled === id;
           }""",
        arg=before,
        timeout=JOB_MS,
    )
    total = time.perf_counter() - began
    job = _job_times(server, page, page.evaluate("localStorage.getItem('beatsync.job')"))
    return Nudge(total, job["queued"], job["ran"], tally.sent - sent, tally.received - received)


def _forget_sound(server: Server, page: Any) -> dict[str, str]:
    """Delete the class video's sound and the jobs made from it, so that a second run sends
    that sound again while the reference's is already on the server (a new video, same song).
    Returns the page's session (token and owner)."""
    session = {
        key: page.evaluate(f"localStorage.getItem({key!r})")
        for key in ("beatsync.token", "beatsync.owner")
    }
    headers = {"Authorization": f"Bearer {session['beatsync.token']}"}
    dance = page.locator("#dance-card").get_attribute("data-upload-id")
    jobs = httpx.get(f"{server.url}/api/v1/jobs", headers=headers).json()["items"]
    for job in jobs:
        httpx.delete(f"{server.url}/api/v1/jobs/{job['id']}", headers=headers).raise_for_status()
    httpx.delete(f"{server.url}/api/v1/uploads/{dance}", headers=headers).raise_for_status()
    return session


def _streams(path: Path) -> tuple[int, int]:
    """Bytes of the file's audio packets, and the count of its video keyframes."""
    import av

    with av.open(str(path)) as container:
        audio = sum(p.size for p in container.demux(audio=0) if p.size)
    with av.open(str(path)) as container:
        keys = sum(1 for p in container.demux(video=0) if p.size and p.is_keyframe)
    return audio, keys


def _print_kinds(run: Run) -> None:
    for kind, (n, sent, got) in sorted(run.kinds.items(), key=lambda kv: -sum(kv[1][1:])):
        print(f"  {kind:48s} {n:4d} requests  sent {_mb(sent):>9s}  received {_mb(got):>9s}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


STEPS = (
    ("dance:read", "class video's sound re-wrapped in memory, manifest read"),
    ("bgm:read", "reference's sound re-wrapped in memory"),
    ("dance:hashed", "class video's sound hashed (is it on the server already?)"),
    ("bgm:hashed", "reference's sound hashed"),
    ("dance:sent", "class video's sound uploaded"),
    ("bgm:sent", "reference's sound uploaded (or found on the server)"),
    ("start", "start pressed (both checked by the server)"),
    ("created", "job created"),
    ("frames-asked", "the job asks for pictures (last request)"),
    ("frames-sent", "pictures decoded and sent (last request)"),
    ("succeeded", "page sees the job succeed"),
    ("audio-fetched", "clean audio track downloaded"),
    ("assembled", "MP4 assembled as a Blob"),
)


def _ratio(run: Run, server: Run) -> float:
    return (run.sent + run.received) / max(1, server.sent + server.received)


def _section(
    case: Any,
    runs: dict[str, Run],
    nudges: list[Nudge],
    load: tuple[float, float],
    passed: bool,
    pause: float = 0.0,
    candidate: Nudge | None = None,
) -> str:
    audio, warm, server = runs["audio"], runs["warm"], runs["server"]
    size = case.dance.stat().st_size
    lines = [
        "## Phone: the page on a throttled link, audio-first against the server path",
        "",
        f"`python bench/phone.py` on {dt.date.today().isoformat()}: the real page in headless "
        f"Chromium against `beatsync serve`, link throttled by CDP to {UP_BPS / 1e6:g} Mbit/s up, "
        f"{DOWN_BPS / 1e6:g} Mbit/s down, {LATENCY_MS} ms latency. Class video "
        f"`{case.dance.name}` ({_mb(size)}, 3 min 1080p30 H.264 at {VIDEO_BPS / 1e6:g} Mbit/s, "
        "a phone's rate, + AAC), reference "
        f"`{case.bgm.name}` ({_mb(case.bgm.stat().st_size)}, MP4 with AAC). Time from choosing "
        "the two files to a finished file on the device (audio-first: the assembled Blob "
        "ready; server: the rendered file downloaded); bytes as Chromium's network layer "
        "counts them (bodies and headers sent; responses on the wire). **cold**: a new "
        "visitor, both sounds go up; **warm**: the same visitor with another class video to "
        "the same song (the class video's sound and jobs deleted first), so the reference's "
        "sound is found on the server by its hash and only the class video's goes up. Load "
        f"average {load[0]:.2f} before, {load[1]:.2f} after (2 shared cores).",
        "",
        "| path | to a finished file | after start | sent | received | of the server path's "
        "bytes | file | sync (worst) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in (("audio-first, cold", audio), ("audio-first, warm", warm),
                      ("server", server)):  # fmt: skip
        lines.append(
            f"| {name} | {run.total_s:.1f} s | {run.after_start_s:.1f} s | {_mb(run.sent)} "
            f"| {_mb(run.received)} | {_ratio(run, server) * 100:.2f} % | {_mb(run.file_bytes)} "
            f"| {run.sync_ms:.2f} ms |"
        )
    dance_audio, _ = _streams(case.dance)
    bgm_audio, _ = _streams(case.bgm)
    track, _ = _streams(OUT / "audio.mp4")
    least = (dance_audio + bgm_audio + track) / max(1, server.sent + server.received)
    lines += [
        "",
        "Where the seconds go (audio-first; seconds after choosing the files, from the page's "
        "performance marks; the job's own times from its row):",
        "",
        "| moment | cold | warm |",
        "|---|---|---|",
    ]
    for key, words in STEPS:
        cells = [f"{r.steps[key]:.2f} s" if key in r.steps else "–" for r in (audio, warm)]
        lines.append(f"| {words} | {cells[0]} | {cells[1]} |")
    for key, words in (("queued", "job queued (server)"), ("ran", "job ran (server)")):
        lines.append(f"| {words} | {audio.job[key]:.2f} s | {warm.job[key]:.2f} s |")
    lines += [
        "",
        f"What audio-first cannot do without: the two sounds' packets, {_mb(dance_audio)} "
        f"(class video) and {_mb(bgm_audio)} (reference), up, and the clean audio track's "
        f"packets, {_mb(track)} (AAC at the render's 192 kb/s), down: "
        f"{least * 100:.2f} % of the server path's bytes; at {UP_BPS / 1e6:g} Mbit/s the two "
        f"sounds take {(dance_audio + bgm_audio) * 8 / UP_BPS:.1f} s of the link, the class "
        f"video's alone {dance_audio * 8 / UP_BPS:.1f} s.",
    ]
    if nudges:
        totals = sorted(n.total_s for n in nudges)
        ran = sorted(n.ran_s for n in nudges)
        lines += [
            "",
            f"Nudges ({len(nudges)} in a row on the cold run's page, ±10–50 ms, each typed "
            f"{pause:g} s before Apply is pressed): from the click to the new file assembled, "
            f"median {statistics.median(totals):.2f} s (range "
            f"{totals[0]:.2f}–{totals[-1]:.2f} s); the job itself ran a median "
            f"{statistics.median(ran):.2f} s.",
        ]
    if candidate is not None:
        lines += [
            "",
            f"Another candidate (the search's runner-up, tapped after the nudges): "
            f"{candidate.total_s:.2f} s from the tap to its file assembled; the job (a whole "
            f"run with that mapping) ran {candidate.ran_s:.2f} s.",
        ]
    lines += [
        "",
        f"Audio-first, cold: {audio.total_s:.1f} s (goal ≤ {GOAL_S:g} s), "
        f"{_ratio(audio, server) * 100:.2f} % of the server path's bytes (goal ≤ "
        f"{GOAL_BYTES * 100:g} %); warm: {warm.total_s:.1f} s, "
        f"{_ratio(warm, server) * 100:.2f} %. The bars (on the cold run) "
        f"{'are **met**' if passed else 'are **missed**'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--audio-only",
        action="store_true",
        help="skip the server path (a quick look; RESULTS.md is not written)",
    )
    parser.add_argument("--nudges", type=int, default=5, help="nudges timed (default 5)")
    parser.add_argument(
        "--nudge-pause",
        type=float,
        default=0.0,
        help="seconds between typing a nudge and pressing Apply (default 0: at once)",
    )
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from accuracy import write_section
    from beatsync.testkit import speed_pair

    began = time.perf_counter()
    case = speed_pair(MEDIA, bit_rate=VIDEO_BPS)
    print(f"speed pair ready ({time.perf_counter() - began:.0f} s): {case.dance}")
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "data"
    # A fresh service each run: no upload or job of an earlier run is found by its hash.
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    load_before = os.getloadavg()[0]
    server = Server(data)
    runs: dict[str, Run] = {}
    nudges: list[Nudge] = []
    candidate: Nudge | None = None
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = _context(browser)
            runs["audio"], page, tally = _drive(context, server, case, "audio")
            print(runs["audio"])
            _print_kinds(runs["audio"])
            nudges = _nudges(server, page, tally, args.nudges, pause=args.nudge_pause)
            print("nudges:", nudges)
            if nudges:
                print(
                    f"nudge median {statistics.median(n.total_s for n in nudges):.2f} s, "
                    f"job {statistics.median(n.ran_s for n in nudges):.2f} s"
                )
            candidate = _candidate(server, page, tally)
            print("another candidate:", candidate)
            session = _forget_sound(server, page)
            context.close()
            context = _context(browser, session)
            runs["warm"], _, _ = _drive(context, server, case, "audio")
            runs["warm"] = replace(runs["warm"], path="warm")
            print(runs["warm"])
            context.close()
            if not args.audio_only:
                context = _context(browser)
                runs["server"], _, _ = _drive(context, server, case, "server")
                print(runs["server"])
                context.close()
            browser.close()
    finally:
        server.stop()
    if args.audio_only:
        return 0
    load_after = os.getloadavg()[0]
    audio, server_run = runs["audio"], runs["server"]
    share = (audio.sent + audio.received) / max(1, server_run.sent + server_run.received)
    passed = (
        audio.total_s <= GOAL_S
        and share <= GOAL_BYTES
        and audio.sync_ms <= MAX_SYNC_MS
        and server_run.sync_ms <= MAX_SYNC_MS
    )
    section = _section(
        case, runs, nudges, (load_before, load_after), passed, args.nudge_pause, candidate
    )
    print()
    print(section)
    write_section(RESULTS, SECTION, section)
    print(f"wrote the {SECTION} section of {RESULTS}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
