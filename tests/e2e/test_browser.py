"""The web page in real headless Chromium against the real service (``beatsync serve``).

A phone-sized page uploads a generated pair over tus, runs the job, follows its stages and
shows the result; the tests check what the page shows against the API and the pair's truth,
play the video, read the plot, switch language, nudge the sync and pick another candidate,
resume uploads after a dropped connection and after a reload, cancel and retry a job, follow
progress by polling when events are blocked, refuse a bad file in plain words and show a
hostile file name as text. No CSP violation, script error or dialog may happen on the way.
Screenshots go to ``$BEATSYNC_ARTIFACTS`` (else the test's tmp folder); with
``BEATSYNC_UPDATE_SCREENSHOT=1`` the desktop view of a finished result also replaces the
README's ``docs/screenshot.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Route,
    expect,
    sync_playwright,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from beatsync.service.codes import CODES
from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named

if TYPE_CHECKING:
    from conftest import Served

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 800}
STAGES = ["probe", "decode", "align", "trim", "render"]
REPO = Path(__file__).resolve().parents[2]
HOSTILE_NAME = "<img src=x onerror=alert(1)>.mp4"

CHUNK = 5 * 1024 * 1024  # the page's tus chunk
UPLOAD_MS = 60_000
# Job processes run at the lowest priority: on a machine busy with other tests at normal priority a
# job that takes 10 s alone can wait minutes for the processor, so a finished job is awaited long.
JOB_MS = 600_000

# The page records every change of the job section and its bar, and every CSP violation.
RECORDER = """
() => {
  window.__jobLog = [];
  const job = document.getElementById("job");
  const bar = document.getElementById("job-progress");
  const note = () => window.__jobLog.push({
    status: job.dataset.status, stage: job.dataset.stage, progress: bar.value,
  });
  new MutationObserver(note).observe(job, {
    attributes: true, subtree: true, attributeFilter: ["data-status", "data-stage", "value"],
  });
}
"""
SERVER_PATH = "localStorage.setItem('beatsync.path', 'server');"
CSP_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@dataclass
class Watch:
    """Everything a page said that it should not: console errors, uncaught errors, dialogs."""

    allowed_failures: tuple[str, ...] = ("/api/v1/uploads/instant",)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "")
        # A 404 from the instant-upload check means "send the bytes": expected, not a fault.
        if message.text.startswith("Failed to load resource") and any(
            part in where for part in self.allowed_failures
        ):
            return
        self.errors.append(f"console: {message.text} ({where})")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self, page: Page) -> None:
        assert page.evaluate("window.__csp") == []
        assert self.errors == []
        assert self.dialogs == []


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BEATSYNC_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def phone(browser: Browser, **extra: Any) -> BrowserContext:
    return browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="en-US",
        **extra,
    )


def open_page(
    context: BrowserContext, served: Served, watch: Watch, *, server_path: bool = True
) -> Page:
    """The page, ready. ``server_path``: uploads the whole class video, as a browser that
    cannot read its picture does (the tests of uploads, jobs and results on the server)."""
    page = context.new_page()
    page.add_init_script(CSP_WATCH)
    if server_path:
        page.add_init_script(SERVER_PATH)
    watch.attach(page)
    page.goto(f"{served.url}/")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    return page


def card(page: Page, kind: str, role: str) -> str:
    return page.locator(f"#{kind}-card [data-role={role}]").inner_text()


def wait_card(page: Page, kind: str, state: str) -> None:
    page.wait_for_selector(f"#{kind}-card[data-state={state}]", state="attached", timeout=UPLOAD_MS)


def api_get(page: Page, served: Served, path: str, **params: str | int) -> Any:
    """GET an API path with the page's own token, in English."""
    token = page.evaluate("localStorage.getItem('beatsync.token')")
    assert token
    answer = page.request.get(
        f"{served.url}{path}",
        params=params or None,
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"},
    )
    assert answer.ok, answer.text()
    return answer.json()


def clock(text: str) -> float:
    """Seconds from the page's m:ss.s."""
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + float(seconds)


def signed(value: float, digits: int) -> str:
    """A number as the page's English locale signs it."""
    text = f"{abs(value):,.{digits}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return f"+{text}" if value > 0 else f"\u2212{text}"


def percent(value: float) -> str:
    return f"{math.floor(value * 100 + 0.5)}%"


def named_controls(page: Page) -> None:
    """Every visible button and field has a name a screen reader can say."""
    for control in page.locator("button:visible, input:visible, progress:visible").all():
        expect(control).to_have_accessible_name(re.compile(r"\S"))


def confidence_level(value: float) -> str:
    return "high" if value >= 0.7 else "medium" if value >= 0.4 else "low"


CONFIDENCE_WORDS = {
    "high": "Very likely right: the music is in sync.",
    "medium": "Probably right. Have a listen to check.",
    "low": "Not sure. Try another candidate below.",
}


def minutes(seconds: float) -> str:
    """Seconds as the page's m:ss.s."""
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def shows_offset(page: Page, offset: float) -> None:
    page.wait_for_function(
        "(text) => document.querySelector('#fact-offset strong').textContent === text",
        arg=f"{signed(offset, 3)} s",
    )


def wait_job(page: Page, *, other_than: str | None = None) -> str:
    """Wait until the page shows a finished job (not ``other_than``); its id."""
    page.wait_for_function(
        """(old) => {
          const id = localStorage.getItem("beatsync.job");
          const status = document.getElementById("job").dataset.status;
          return id && id !== old && ["succeeded", "failed", "canceled"].includes(status);
        }""",
        arg=other_than,
        timeout=JOB_MS,
    )
    job_id: str = page.evaluate("localStorage.getItem('beatsync.job')")
    return job_id


def wait_plot(page: Page) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('plot');"
        " return i.complete && i.naturalWidth > 0; }",
        timeout=30_000,
    )


def test_sync_on_a_phone(
    served: Served, browser: Browser, pair: BuiltCase, artifacts: Path
) -> None:
    context = phone(browser)
    watch = Watch()
    page = open_page(context, served, watch)
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator("#start").is_disabled()
    # Every control has a name a screen reader can say.
    expect(page.locator("#dance-input")).to_have_accessible_name("Class video")
    expect(page.locator("#bgm-input")).to_have_accessible_name("Reference music or video")
    named_controls(page)

    page.set_input_files("#dance-input", str(pair.dance))
    page.set_input_files("#bgm-input", str(pair.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    assert card(page, "dance", "name") == pair.dance.name
    assert card(page, "bgm", "name") == pair.bgm.name
    assert card(page, "dance", "status") == "Ready"
    assert clock(card(page, "dance", "duration")) == pytest.approx(pair.truth.duration, abs=0.1)
    assert clock(card(page, "bgm", "duration")) == pytest.approx(pair.truth.bgm_duration, abs=0.1)
    assert page.locator("#dance-card [data-role=progress]").evaluate("e => e.value") == 1
    page.screenshot(path=artifacts / "01-phone-uploaded.png", full_page=True)

    page.evaluate(RECORDER)
    page.locator("#start").click()
    job_id = wait_job(page)
    page.screenshot(path=artifacts / "02-phone-finished.png", full_page=True)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded", job

    # Stages arrive in order and the bar never goes back.
    log = page.evaluate("window.__jobLog")
    stages = [STAGES.index(entry["stage"]) for entry in log if entry["stage"]]
    bars = [entry["progress"] for entry in log]
    assert stages == sorted(stages)
    assert len(set(stages)) >= 2, log
    assert bars == sorted(bars)
    assert bars[-1] == 1
    assert log[-1]["status"] == "succeeded"
    states = page.locator("#stages li").evaluate_all("items => items.map(i => i.dataset.state)")
    assert states == ["done"] * len(STAGES)

    # What the page shows is what the API says, and the API's answer is the pair's truth.
    result = job["result"]
    assert result["mapping"]["offset_s"] == pytest.approx(pair.truth.offset, abs=0.005)
    assert page.locator("#confidence-value").inner_text() == percent(result["confidence"])
    level = page.locator("#confidence").get_attribute("data-level")
    assert level == confidence_level(result["confidence"])
    assert page.locator("#confidence-words").inner_text() == CONFIDENCE_WORDS[level]
    offset = result["mapping"]["offset_s"]
    assert page.locator("#fact-offset strong").inner_text() == f"{signed(offset, 3)} s"
    cut = result["cut"]
    assert page.locator("#fact-cut").inner_text() == (
        f"{minutes(cut['start_s'])} – {minutes(cut['end_s'])} ({minutes(cut['duration_s'])})"
    )
    # The class danced to the song as it is: one piece, so no list of pieces.
    assert len(result["pieces"]) == 1
    assert page.locator("#fact-pieces-row").is_hidden()
    # The song repeats itself every few seconds: the search offers runner-up answers.
    runners = result["candidates"]
    assert len(runners) >= 1
    chips = page.locator("#candidate-list button")
    chips.first.wait_for()
    assert chips.count() == 1 + len(runners)
    pressed = chips.evaluate_all("bs => bs.map(b => b.getAttribute('aria-pressed'))")
    assert pressed == ["true"] + ["false"] * len(runners)

    # The video plays and the plot is an image.
    page.evaluate(
        "async () => { const v = document.getElementById('result-video');"
        " v.muted = true; await v.play(); }"
    )
    page.wait_for_function(
        "() => { const v = document.getElementById('result-video');"
        " return v.readyState >= 2 && v.currentTime > 0.5; }",
        timeout=30_000,
    )
    wait_plot(page)
    href = page.locator("#download").get_attribute("href")
    assert href is not None
    assert href.split("?")[0] == f"/api/v1/files/{job_id}/output.mp4"
    download = page.request.get(f"{served.url}{href}")
    assert download.status == 200
    assert len(download.body()) == result["output"]["size_bytes"]
    named_controls(page)
    expect(page.locator("#nudge-ms")).to_have_accessible_name("Shift in milliseconds")
    expect(page.locator("[data-nudge='-50']")).to_have_accessible_name("Music 50 ms earlier")
    expect(page.locator("#job-progress")).to_have_accessible_name("Progress")
    page.locator("#result").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "03-phone-result.png", full_page=True)

    # The language switch changes the words, is remembered, and the job comes back on reload.
    assert page.locator("#start").inner_text() == "Start syncing"
    assert page.locator("[data-stage=align] span:last-child").inner_text() == "Aligning the music"
    page.locator("[data-lang=zh-CN]").press("Enter")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.locator("#start").inner_text() == "开始对齐"
    assert page.locator("[data-stage=align] span:last-child").inner_text() == "对齐音乐"
    assert page.locator("#recent-title").inner_text() == "我的最近任务"
    page.reload()
    page.wait_for_selector("#job[data-status=succeeded]", state="attached")
    assert page.locator("#start").inner_text() == "开始对齐"
    assert page.locator("[data-lang=zh-CN]").get_attribute("aria-pressed") == "true"
    page.screenshot(path=artifacts / "04-phone-result-zh.png", full_page=True)
    page.locator("[data-lang=en]").click()
    assert page.locator("#start").inner_text() == "Start syncing"

    # The recent list has the job; a nudge of +20 ms renders a child job 20 ms later.
    row = page.locator(f"#recent-list li[data-job-id={job_id}]")
    assert row.locator(".badge").inner_text() == "Done"
    page.locator("[data-nudge='10']").click()
    page.locator("[data-nudge='10']").click()
    assert page.locator("#nudge-ms").input_value() == "20"
    page.locator("#nudge-apply").click()
    nudged_id = wait_job(page, other_than=job_id)
    nudged = api_get(page, served, f"/api/v1/jobs/{nudged_id}")
    assert nudged["status"] == "succeeded", nudged
    assert nudged["parent_id"] == job_id
    assert nudged["options"]["nudge_ms"] == 20
    nudged_offset = nudged["result"]["mapping"]["offset_s"]
    assert nudged_offset == pytest.approx(offset - 0.020, abs=1e-6)
    shows_offset(page, nudged_offset)
    assert page.locator("#nudge-ms").input_value() == "20"

    # Another candidate: rendered at the runner-up's mapping, without the nudge.
    page.locator("#candidate-list [data-candidate='0']").click()
    other_id = wait_job(page, other_than=nudged_id)
    other = api_get(page, served, f"/api/v1/jobs/{other_id}")
    assert other["status"] == "succeeded", other
    assert other["parent_id"] == nudged_id
    assert other["options"]["nudge_ms"] == 0
    assert other["result"]["mapping"]["offset_s"] == pytest.approx(runners[0]["offset_s"], abs=1e-6)
    shows_offset(page, other["result"]["mapping"]["offset_s"])
    page.wait_for_selector("#candidate-list [data-candidate='0'][aria-pressed=true]")
    best = page.locator("#candidate-list [data-candidate=best]")
    assert best.get_attribute("aria-pressed") == "false"
    listed = api_get(page, served, "/api/v1/jobs", limit=10)["items"]
    assert [item["id"] for item in listed] == [other_id, nudged_id, job_id]
    page.wait_for_function("() => document.querySelectorAll('#recent-list li').length === 3")
    watch.assert_clean(page)

    # The finished result on a desktop screen, for the README.
    desktop = browser.new_context(
        viewport=DESKTOP,
        locale="en-US",
        reduced_motion="reduce",
        storage_state=context.storage_state(),
    )
    wide = open_page(desktop, served, watch)
    wide.wait_for_selector("#job[data-status=succeeded]", state="attached")
    assert wide.evaluate("localStorage.getItem('beatsync.job')") == other_id
    wide.locator(f"#recent-list li[data-job-id={job_id}] button", has_text="Open").click()
    wide.wait_for_function(
        "(id) => document.getElementById('plot').src.includes(`/files/${id}/`)", arg=job_id
    )
    shows_offset(wide, offset)
    wait_plot(wide)
    wide.wait_for_function(
        "() => document.getElementById('result-video').readyState >= 1", timeout=30_000
    )
    wide.locator("#result").evaluate("e => e.scrollIntoView({block: 'start'})")
    wide.evaluate("() => window.scrollBy(0, -12)")
    wide.screenshot(path=artifacts / "05-desktop-result.png")
    if os.environ.get("BEATSYNC_UPDATE_SCREENSHOT") == "1":
        wide.screenshot(path=REPO / "docs" / "screenshot.png")
    watch.assert_clean(wide)
    desktop.close()
    context.close()


def test_an_edit_of_the_song_is_shown_piece_by_piece(
    served: Served, browser: Browser, tmp_path_factory: pytest.TempPathFactory, artifacts: Path
) -> None:
    edit = build_case(case_named("small-edit"), tmp_path_factory.mktemp("edit"))
    context = phone(browser)
    watch = Watch()
    page = open_page(context, served, watch)
    page.set_input_files("#dance-input", str(edit.dance))
    page.set_input_files("#bgm-input", str(edit.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    page.locator("#start").click()
    job = api_get(page, served, f"/api/v1/jobs/{wait_job(page)}")
    assert job["status"] == "succeeded", job
    # Two pieces, as the truth has them, each listed with the stretch of the class video it
    # covers and where in the reference it plays from.
    pieces = job["result"]["pieces"]
    assert [p["start_s"] for p in pieces[1:]] == pytest.approx(list(edit.truth.seams), abs=0.005)
    expect(page.locator("#fact-pieces-row")).to_be_visible()
    assert page.locator("#fact-pieces small").inner_text() == (
        "The class danced to an edit of the song, in 2 pieces:"
    )
    items = page.locator("#fact-pieces li").all_inner_texts()
    assert items == [
        f"{minutes(p['start_s'])} – {minutes(p['end_s'])}: the reference from "
        f"{minutes(p['offset_s'] + p['scale'] * p['start_s'])}"
        for p in pieces
    ]
    page.locator("#result").scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "07-phone-edit.png", full_page=True)
    watch.assert_clean(page)
    context.close()


def test_hostile_file_name_is_text(
    served: Served, browser: Browser, pair: BuiltCase, tmp_path: Path, artifacts: Path
) -> None:
    hostile = tmp_path / HOSTILE_NAME
    shutil.copyfile(pair.dance, hostile)
    context = phone(browser)
    watch = Watch()
    page = open_page(context, served, watch)
    page.set_input_files("#dance-input", str(hostile))
    wait_card(page, "dance", "ready")
    assert card(page, "dance", "name") == HOSTILE_NAME
    assert page.locator("#dance-card [data-role=name] *").count() == 0
    assert page.locator("img[src=x]").count() == 0
    upload_id = page.evaluate("localStorage.getItem('beatsync.upload.dance')")
    assert api_get(page, served, f"/api/v1/uploads/{upload_id}")["filename"] == HOSTILE_NAME
    page.screenshot(path=artifacts / "06-hostile-name.png", full_page=True)
    watch.assert_clean(page)
    context.close()


def test_unusable_file_is_refused_in_plain_words(
    served: Served, browser: Browser, pair: BuiltCase, tmp_path: Path, artifacts: Path
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_bytes(b"these are the class notes, not a video\n" * 200)
    context = phone(browser)
    watch = Watch(allowed_failures=("/api/v1/uploads/instant",))
    page = open_page(context, served, watch)
    page.set_input_files("#dance-input", str(pair.dance))
    page.set_input_files("#bgm-input", str(notes))
    wait_card(page, "bgm", "rejected")
    wait_card(page, "dance", "ready")
    assert page.locator("#start").is_disabled()
    upload_id = page.locator("#bgm-card").get_attribute("data-upload-id")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    assert upload["status"] == "rejected"
    assert upload["error"]["code"] == "INVALID_FORMAT"
    assert card(page, "bgm", "error-message") == upload["error"]["message"]
    assert upload["error"]["message"] == CODES["INVALID_FORMAT"].en
    assert card(page, "bgm", "error-code") == "Error code: INVALID_FORMAT"
    assert card(page, "bgm", "status") == "This file cannot be used"
    page.screenshot(path=artifacts / "07-refused.png", full_page=True)
    watch.assert_clean(page)
    context.close()


def test_upload_resumes_after_a_dropped_connection(
    served: Served, browser: Browser, pair: BuiltCase, artifacts: Path
) -> None:
    context = phone(browser)
    # The dropped chunk shows up as a failed request in the console: that is the point here.
    watch = Watch(allowed_failures=("/api/v1/uploads/instant", "/api/v1/tus/"))
    page = open_page(context, served, watch)
    seen: list[str] = []

    def drop_first_chunk(route: Route) -> None:
        seen.append(route.request.method)
        if route.request.method == "PATCH" and seen.count("PATCH") == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/tus**", drop_first_chunk)
    page.set_input_files("#dance-input", str(pair.dance))
    wait_card(page, "dance", "ready")
    # Created once, the chunk lost, the server asked where it stands, the chunk sent again.
    assert seen[0] == "POST"
    assert seen.count("POST") == 1
    assert seen.count("PATCH") == 2
    assert "HEAD" in seen[seen.index("PATCH") :]
    upload_id = page.evaluate("localStorage.getItem('beatsync.upload.dance')")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    data = pair.dance.read_bytes()
    assert upload["size"] == len(data)
    assert upload["sha256"] == hashlib.sha256(data).hexdigest()

    # The same bytes again: the server already has them, so nothing is sent.
    before = len(seen)
    page.set_input_files("#bgm-input", str(pair.dance))
    wait_card(page, "bgm", "ready")
    assert seen[before:] == []
    assert card(page, "bgm", "status").startswith("Ready (instant")
    page.screenshot(path=artifacts / "08-resumed.png", full_page=True)
    watch.assert_clean(page)
    context.close()


def test_page_assets_are_local() -> None:
    """Nothing the page loads comes from elsewhere: no CDN, no inline script or style."""
    web = REPO / "src" / "beatsync" / "web"
    html = (web / "index.html").read_text()
    assert "<style" not in html
    assert " style=" not in html
    assert "<script>" not in html
    for path in web.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert "innerHTML" not in text


def test_upload_resumes_after_a_reload(served: Served, browser: Browser, tmp_path: Path) -> None:
    """The page is reloaded with a third of a file on the server: choosing the file again
    sends only the rest, from the server's offset."""
    blob = tmp_path / "long-class.mp4"
    blob.write_bytes(np.random.default_rng(5).bytes(3 * CHUNK))
    context = phone(browser)
    watch = Watch(allowed_failures=("/api/v1/uploads/instant", "/api/v1/tus/"))
    page = open_page(context, served, watch)
    offsets: list[int] = []

    def cut_after_first_chunk(route: Route) -> None:
        if route.request.method == "PATCH":
            offsets.append(int(route.request.headers["upload-offset"]))
            if len(offsets) > 1:
                route.abort("internetdisconnected")
                return
        route.continue_()

    page.route("**/api/v1/tus/**", cut_after_first_chunk)
    page.set_input_files("#dance-input", str(blob))
    page.wait_for_selector("#dance-card[data-state=retrying]", state="attached")
    remembered = page.evaluate(
        "Object.keys(localStorage).filter(k => k.startsWith('beatsync.tus.'))"
        ".map(k => JSON.parse(localStorage.getItem(k)).url)"
    )
    assert len(remembered) == 1
    token = page.evaluate("localStorage.getItem('beatsync.token')")
    head = page.request.fetch(
        remembered[0],
        method="HEAD",
        headers={"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
    )
    assert head.headers["upload-offset"] == str(CHUNK)
    assert offsets[:2] == [0, CHUNK]

    page.unroute("**/api/v1/tus/**")
    page.reload()
    page.wait_for_selector("body[data-ready=true]", state="attached")
    seen: list[tuple[str, str | None]] = []

    def record(route: Route) -> None:
        seen.append((route.request.method, route.request.headers.get("upload-offset")))
        route.continue_()

    page.route("**/api/v1/tus**", record)
    page.set_input_files("#dance-input", str(blob))
    # Random bytes are no video: the server takes them all, then refuses them in plain words.
    wait_card(page, "dance", "rejected")
    assert seen == [("HEAD", None), ("PATCH", str(CHUNK)), ("PATCH", str(2 * CHUNK))]
    upload_id = page.locator("#dance-card").get_attribute("data-upload-id")
    upload = api_get(page, served, f"/api/v1/uploads/{upload_id}")
    assert upload["size"] == upload["offset"] == 3 * CHUNK
    assert upload["sha256"] == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert upload["error"]["code"] == "INVALID_FORMAT"
    assert card(page, "dance", "error-message") == upload["error"]["message"]
    watch.assert_clean(page)
    context.close()


def test_cancel_a_running_job(
    served: Served, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A long recording, so the job still runs when the click lands; and no smooth scrolling,
    # which moves the button under the pointer while the page brings the job into view.
    long = dataclasses.replace(
        case_named("small-degraded"),
        name="degraded-long",
        track="etr/calmrace-ks",
        ref_start=0.0,
        ref_end=110.0,
        play_from=3.0,
        play_duration=100.0,
    )
    other = build_case(long, tmp_path_factory.mktemp("cancel"))
    context = phone(browser, reduced_motion="reduce")
    watch = Watch()
    page = open_page(context, served, watch)
    page.set_input_files("#dance-input", str(other.dance))
    page.set_input_files("#bgm-input", str(other.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    page.locator("#start").click()
    page.locator("#cancel").click()
    page.wait_for_selector("#job[data-status=canceled]", state="attached", timeout=JOB_MS)
    job_id = page.evaluate("localStorage.getItem('beatsync.job')")
    assert api_get(page, served, f"/api/v1/jobs/{job_id}")["status"] == "canceled"
    assert page.locator("#job-status").inner_text() == "The job was canceled."
    assert page.locator("#cancel").is_hidden()
    assert page.locator("#retry").is_visible()
    assert page.locator("#result").is_hidden()
    assert page.locator("#start").is_enabled()

    # Retried, the same job runs again from the start to its result.
    page.evaluate(RECORDER)
    page.locator("#retry").click()
    try:
        page.wait_for_selector("#job[data-status=succeeded]", state="attached", timeout=JOB_MS)
    except PlaywrightTimeoutError:
        row = api_get(page, served, f"/api/v1/jobs/{job_id}")
        lines = (served.data_dir / "server.log").read_text(errors="replace").splitlines()
        said = "\n".join(line for line in lines if job_id in line)
        pytest.fail(f"the retried job did not succeed: {row}\nthe server on it:\n{said}")
    assert page.evaluate("localStorage.getItem('beatsync.job')") == job_id
    log = page.evaluate("window.__jobLog")
    assert log[0]["progress"] == 0
    assert [entry["progress"] for entry in log] == sorted(entry["progress"] for entry in log)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded"
    assert job["result"]["mapping"]["offset_s"] == pytest.approx(other.truth.offset, abs=0.005)
    wait_plot(page)
    watch.assert_clean(page)
    context.close()


def test_progress_is_polled_without_events(
    served: Served, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where server-sent events do not get through, the page asks for the job instead."""
    other = build_case(case_named("small-black-tail"), tmp_path_factory.mktemp("poll"))
    context = phone(browser)
    watch = Watch(allowed_failures=("/api/v1/uploads/instant", "/events"))
    page = open_page(context, served, watch)
    page.route("**/api/v1/jobs/*/events**", lambda route: route.abort("failed"))
    polls: list[str] = []
    page.on(
        "request",
        lambda r: polls.append(r.url) if re.search(r"/api/v1/jobs/job_[^/?]+$", r.url) else None,
    )
    page.set_input_files("#dance-input", str(other.dance))
    page.set_input_files("#bgm-input", str(other.bgm))
    wait_card(page, "dance", "ready")
    wait_card(page, "bgm", "ready")
    page.evaluate(RECORDER)
    page.locator("#start").click()
    job_id = wait_job(page)
    job = api_get(page, served, f"/api/v1/jobs/{job_id}")
    assert job["status"] == "succeeded"
    assert len(polls) >= 2
    assert all(url.endswith(f"/api/v1/jobs/{job_id}") for url in polls)
    log = page.evaluate("window.__jobLog")
    stages = [STAGES.index(entry["stage"]) for entry in log if entry["stage"]]
    assert stages == sorted(stages)
    assert [entry["progress"] for entry in log] == sorted(entry["progress"] for entry in log)
    assert page.locator("#confidence-value").inner_text() == percent(job["result"]["confidence"])
    watch.assert_clean(page)
    context.close()


def test_the_watch_sees_what_the_policy_blocks(served: Served, browser: Browser) -> None:
    """The clean-page checks above mean something: an inline script and an inline style
    attribute are refused by the service's policy, and the watch reports both."""
    context = phone(browser)
    watch = Watch()
    page = open_page(context, served, watch)
    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.append(script);
          const box = document.createElement("div");
          box.innerHTML = '<p style="color: red">styled</p>';
          document.body.append(box);
        }"""
    )
    page.wait_for_function("() => window.__csp.length >= 2")
    assert page.evaluate("window.__ran === undefined")
    violations = page.evaluate("window.__csp")
    assert sorted(v.split()[0] for v in violations) == ["script-src-elem", "style-src-attr"]
    assert any("Content Security Policy" in error for error in watch.errors)
    context.close()


def test_the_api_documentation_works_under_the_policy(served: Served, browser: Browser) -> None:
    """/docs renders every operation of the API with the service's own policy in force and
    without a request to any other site."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    watch = Watch()
    page = context.new_page()
    page.add_init_script(CSP_WATCH)
    watch.attach(page)
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: elsewhere.append(r.url) if not r.url.startswith(served.url) else None,
    )
    page.goto(f"{served.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    spec = page.request.get(f"{served.url}/openapi.json").json()
    operations = sum(
        1 for item in spec["paths"].values() for method in item if method != "parameters"
    )
    assert page.locator(".swagger-ui .opblock").count() == operations
    assert page.locator(".swagger-ui .opblock-summary-path", has_text="/api/v1/jobs").count() > 0
    assert elsewhere == []
    watch.assert_clean(page)
    context.close()
