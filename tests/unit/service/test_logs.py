"""The service's log: short coloured lines on a terminal, JSON lines elsewhere or when asked."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from beatsync.service.db import migrate
from beatsync.service.logs import configure_logging

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("alembic", "uvicorn.error")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def request_line() -> None:
    logging.getLogger("beatsync.service.api.middleware").info(
        "%s %s %d", "POST", "/api/v1/jobs", 201, extra={"request_id": "r1", "duration_ms": 12.5}
    )


def test_a_terminal_gets_one_short_coloured_line_a_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Terminal()
    configure_logging("INFO", stream=out)
    request_line()
    logging.getLogger("beatsync.x").warning("disk low", extra={"job_id": "job_0123456789ab"})
    logging.getLogger("beatsync.x").info(
        "job job_0123456789ab done", extra={"job_id": "job_0123456789ab"}
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert ANSI.sub("", lines[2]).endswith(" INFO    job job_0123456789ab done")
    assert "\x1b[32mINFO   \x1b[0m" in lines[0]
    assert "\x1b[33mWARNING\x1b[0m" in lines[1]
    plain = [ANSI.sub("", line) for line in lines]
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    POST /api/v1/jobs 201 12\.5 ms", plain[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING disk low job job_0123", plain[1])


def test_no_color_and_a_dumb_terminal_get_no_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("NO_COLOR", "1"), ("TERM", "dumb")):
        with monkeypatch.context() as patched:
            patched.delenv("NO_COLOR", raising=False)
            patched.setenv("TERM", "xterm")
            patched.setenv(name, value)
            out = Terminal()
            configure_logging("INFO", stream=out)
            request_line()
            assert "\x1b" not in out.getvalue(), name
            assert out.getvalue().endswith(" INFO    POST /api/v1/jobs 201 12.5 ms\n")


def test_a_pipe_gets_json_and_so_does_a_terminal_that_asks() -> None:
    for out, json_lines in ((io.StringIO(), None), (Terminal(), True)):
        configure_logging("INFO", json_lines=json_lines, stream=out)
        request_line()
        entry = json.loads(out.getvalue())
        assert entry["message"] == "POST /api/v1/jobs 201"
        assert (entry["level"], entry["request_id"], entry["duration_ms"]) == ("INFO", "r1", 12.5)
    out = io.StringIO()
    configure_logging("INFO", json_lines=False, stream=out)
    request_line()
    assert out.getvalue().endswith(" INFO    POST /api/v1/jobs 201 12.5 ms\n")


def test_migrations_say_nothing_unless_debugging(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging("INFO", json_lines=False, stream=out)
    migrate(f"sqlite:///{tmp_path / 'a.db'}")
    assert out.getvalue() == ""
    configure_logging("DEBUG", json_lines=False, stream=out)
    migrate(f"sqlite:///{tmp_path / 'b.db'}")
    assert "Running upgrade" in out.getvalue()


def test_serve_on_a_pipe_starts_with_json_and_nothing_from_alembic(tmp_path: Path) -> None:
    """What `beatsync serve` writes before it listens, read from a pipe (not a terminal)."""
    script = (
        "import sys, beatsync.service.server as s\n"
        "s.uvicorn_config = lambda *a, **k: (_ for _ in ()).throw(SystemExit(0))\n"
        "sys.argv = ['beatsync', 'serve', '--data-dir', sys.argv[1], '--port', '0']\n"
        "from beatsync.cli import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines, done.stdout
    entries = [json.loads(line) for line in lines]
    assert not [e for e in entries if e["logger"].startswith("alembic")]
    assert any(e["message"].startswith("serving on http://") for e in entries)
