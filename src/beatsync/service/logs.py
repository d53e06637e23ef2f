"""Logging for the service's entry points: for people on a terminal, JSON lines for machines.

Only entry points (``beatsync serve``, ``beatsync worker``) call :func:`configure_logging`;
modules just use ``logging.getLogger(__name__)`` and pass ids as ``extra``. On a terminal a
record is one short line (``14:03:07 INFO  POST /api/jobs 201 12 ms``), coloured unless
``NO_COLOR`` is set; anywhere else, or when asked, one JSON object with every ``extra``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonFormatter", "TerminalFormatter", "configure_logging", "wants_json"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Loggers whose INFO lines say what the service's own lines say already.
_CHATTY = ("alembic", "uvicorn.error")
# ANSI colours of the level names on a terminal.
_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TerminalFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL message [12 ms] [job 1a2b3c4d]``: what a person reads at a terminal.

    A request's duration and a job's short id follow the message; other extras stay in the JSON
    form. The level (and a request's status class) is coloured when ``colour`` is on.
    """

    def __init__(self, *, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = self._paint(f"{record.levelname:<7}", _LEVEL_COLOURS.get(record.levelname, "0"))
        parts = [when, level, record.getMessage()]
        extras = _extras(record)
        if "duration_ms" in extras:
            parts.append(f"{extras['duration_ms']:g} ms")
        job_id = str(extras.get("job_id", ""))
        if job_id and job_id not in parts[-1]:
            parts.append(self._paint(f"job {job_id[:8]}", "2"))
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text


def wants_json(json_lines: bool | None, stream: TextIO) -> bool:
    """JSON when asked (``True``), text when asked (``False``), else JSON unless ``stream`` is a
    terminal."""
    if json_lines is not None:
        return json_lines
    return not _is_terminal(stream)


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, stream: TextIO | None = None
) -> None:
    """Send every log record to ``stream`` (stderr): JSON lines, or short lines for people
    (``json_lines`` ``None``: JSON unless the stream is a terminal)."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if wants_json(json_lines, out):
        handler.setFormatter(JsonFormatter())
    else:
        colour = _is_terminal(out) and not os.environ.get("NO_COLOR")
        handler.setFormatter(TerminalFormatter(colour=colour and os.environ.get("TERM") != "dumb"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # The request log line comes from our middleware, with its request id.
    logging.getLogger("uvicorn.access").disabled = True
    # Their start-up chatter repeats our own "serving on" line; their warnings and errors
    # still come through, and everything does at DEBUG.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
