"""The WeChat mini-program (``miniprogram/``): its Jest suite and its flow against the real service.

The component and page tests (miniprogram-simulate, a fake network) run through ``npm test``.
The flow test runs the mini-program's own upload and job modules in Node with a ``wx`` whose
requests, downloads, sockets and file reads are real (``miniprogram/tests/e2e/flow.js``)
against ``beatsync serve``: a generated class video goes up over tus with its connection cut
halfway and resumed, the reference from a chat file with a trip to the background, the video
again instantly, the job is followed over the WebSocket, a nudge by polling, another candidate
rendered, and the result saved to the "album". The saved file is then measured against the
pair's truth exactly as the service's own end-to-end test measures its download.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from beatsync.engine import probe
from beatsync.service.codes import CODES
from beatsync.testkit.cases import BuiltCase, build_case
from beatsync.testkit.catalog import case_named
from beatsync.testkit.measure import video_packets_copied
from truth_checks import assert_report_output_matches

if TYPE_CHECKING:
    from conftest import Served

MINIPROGRAM = Path(__file__).resolve().parents[2] / "miniprogram"
CHUNK = 256 * 1024  # the flow's tus chunk
CJK = re.compile(r"[\u4e00-\u9fff]")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the mini-program tests", pytrace=False)
    if not (MINIPROGRAM / "node_modules" / "ws").is_dir():
        pytest.fail("miniprogram/node_modules is missing: run `make test` (npm ci)", pytrace=False)
    return node


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-degraded"), tmp_path_factory.mktemp("media"))


def test_component_and_page_tests_pass(tmp_path: Path) -> None:
    _node()
    results = tmp_path / "jest.json"
    npm = shutil.which("npm") or "npm"
    done = subprocess.run(
        [npm, "test", "--", "--ci", "--runInBand", "--json", f"--outputFile={results}"],
        cwd=MINIPROGRAM,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    summary = json.loads(results.read_text())
    assert summary["numFailedTests"] == 0
    assert summary["numPendingTests"] == 0
    assert summary["numPassedTests"] == summary["numTotalTests"] >= 40
    suites = {Path(s["name"]).relative_to(MINIPROGRAM).as_posix() for s in summary["testResults"]}
    for expected in (
        "tests/components/upload-card.test.js",
        "tests/pages/index.test.js",
        "tests/pages/job.test.js",
        "tests/pages/history.test.js",
        "tests/unit/tus.test.js",
    ):
        assert expected in suites


def test_every_service_code_has_plain_chinese_words() -> None:
    node = _node()
    script = "process.stdout.write(JSON.stringify(require('./utils/errors.js').MESSAGES))"
    out = subprocess.run(
        [node, "-e", script], cwd=MINIPROGRAM, capture_output=True, text=True, check=True
    )
    messages: dict[str, str] = json.loads(out.stdout)
    missing = sorted(set(CODES) - set(messages))
    assert not missing, f"codes without a mini-program message: {missing}"
    for code, text in messages.items():
        assert CJK.search(text), f"{code}: {text!r} is not Chinese"


def test_the_miniprogram_flow_against_the_running_service(
    served: Served, case: BuiltCase, tmp_path: Path
) -> None:
    node = _node()
    out = tmp_path / "report.json"
    command = [node, "tests/e2e/flow.js", "--url", served.url]
    command += ["--dance", str(case.dance), "--bgm", str(case.bgm)]
    command += ["--dance-duration", str(probe(case.dance).duration)]
    command += ["--work", str(tmp_path / "phone"), "--out", str(out)]
    done = subprocess.run(
        command, cwd=MINIPROGRAM, capture_output=True, text=True, timeout=300, check=False
    )
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    assert done.returncode == 0, report.get("error") or done.stderr[-6000:]
    assert report["ok"] is True
    assert len(report["steps"]) == 8, report["steps"]

    # The class video: cut halfway through the midpoint chunk, resumed from what the server kept.
    dance = report["dance"]
    size = case.dance.stat().st_size
    assert dance["size"] == size
    assert dance["sha256_server"] == dance["sha256_local"] == _sha256(case.dance)
    assert dance["cut_at"] == (size // 2) // CHUNK * CHUNK
    # Resumed from what the server kept of the cut chunk, never from before it.
    assert dance["cut_at"] <= dance["resumed_from"] <= dance["cut_at"] + dance["cut_after"]
    assert dance["patch_offsets"][-1] + CHUNK >= size
    assert dance["heads"] >= 1
    assert dance["size_text"] == "1.2 MB"
    assert dance["duration_text"] == "14 秒"
    bgm = report["bgm"]
    assert bgm["sha256_server"] == bgm["sha256_local"] == _sha256(case.bgm)
    # The chunk in flight when the app went to the background had arrived: it is not sent again.
    assert bgm["hidden_at"] == CHUNK
    assert bgm["patch_offsets"] == list(range(0, case.bgm.stat().st_size, CHUNK))
    assert report["instant"]["upload_id"] == dance["upload_id"]

    # The job found the truth; the nudge moved it by 7 ms; the candidate is the one asked for.
    job = report["job"]
    assert abs(job["mapping"]["offset_s"] - case.truth.offset) < 0.005
    stages = [e["stage"] for e in job["events"] if e["via"] == "socket" and e["stage"]]
    assert stages[-1] == "done"
    assert abs((job["mapping"]["offset_s"] - report["nudge"]["mapping"]["offset_s"]) - 0.007) < 5e-4
    if job["candidates"]:
        wanted = report["candidate"]["wanted"]["offset_s"]
        assert abs(report["candidate"]["mapping"]["offset_s"] - wanted) < 1e-4
    assert job["id"] in report["history"]

    # The video saved to the album is the service's output, in sync with the truth.
    saved = Path(report["saved"]["path"])
    video = httpx.get(job["video_url"], timeout=60)
    assert video.status_code == 200
    assert _sha256(saved) == report["saved"]["sha256"] == hashlib.sha256(video.content).hexdigest()
    result = httpx.get(job["report_url"], timeout=60).json()
    assert_report_output_matches(saved, case, result)
    assert video_packets_copied(case.dance, saved)


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The OpenAPI operation serving ``method path`` (path templates matched segment-wise)."""
    bare = path.split("?")[0]
    for template, operations in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, bare) and method.lower() in operations:
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def test_the_fake_services_answers_follow_the_openapi_document(tmp_path: Path) -> None:
    """Every answer the page tests' fake service gives has a status the operation documents and
    a body its schema accepts, so the double cannot drift from the service."""
    from jsonschema import Draft202012Validator

    from beatsync.service.api.app import create_app
    from beatsync.service.config import load_settings

    doc = create_app(load_settings(data_dir=tmp_path / "data")).openapi()
    done = subprocess.run(
        [_node(), "tests/support/fake-answers.js"],
        cwd=MINIPROGRAM,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    answers = json.loads(done.stdout)
    assert len(answers) >= 20
    checked = 0
    for answer in answers:
        where = f"{answer['method']} {answer['path']} → {answer['status']}"
        responses = _operation(doc, answer["method"], answer["path"])["responses"]
        status = str(answer["status"])
        response = responses.get(status)
        if response is None:
            assert answer["status"] >= 400, f"{where}: an undocumented success"
            response = responses["default"]
            assert answer["body"]["code"] in CODES, where
        content = response.get("content") or {}
        schema = next(iter(content.values()), {}).get("schema")
        if schema is None or answer["body"] is None:
            continue
        root = {"allOf": [schema], "components": doc.get("components", {})}
        errors = sorted(Draft202012Validator(root).iter_errors(answer["body"]), key=str)
        assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"
        checked += 1
    assert checked >= 15
