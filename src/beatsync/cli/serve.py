"""``beatsync serve``: the API, the web page and the worker pool in one process group."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import EXIT_OK, SubParsers, positive_int

if TYPE_CHECKING:
    from beatsync.service.config import Settings

__all__ = ["add_serve", "service_settings"]


def add_serve(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the web service (API, web page and job workers)",
        description="Run the BeatSync web service. With no other setting it keeps everything "
        "under ./data: an SQLite database, the files and the job workers' scratch space. "
        "Every option has a BEATSYNC_* environment variable (docs/configuration.md).",
    )
    p.add_argument("--host", help="address to listen on (BEATSYNC_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (BEATSYNC_PORT, default 8000)")
    p.add_argument(
        "--workers",
        type=positive_int,
        help="job worker processes (BEATSYNC_WORKERS, default one per core)",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (BEATSYNC_DATA_DIR, default ./data)")
    p.set_defaults(handler=_run_serve, configures_logging=True)


def service_settings(**overrides: object) -> Settings:
    """The service's settings; a bad value (or the default secret in production) is a usage
    error naming its ``BEATSYNC_*`` variable, not a crash."""
    from pydantic import ValidationError

    from beatsync.engine.errors import OptionsError
    from beatsync.service.config import load_settings

    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            text = str(error.get("msg", "")).removeprefix("Value error, ")
            problems.append(f"BEATSYNC_{where.upper()}: {text}" if where else text)
        raise OptionsError("; ".join(problems) or str(exc)) from None


def _run_serve(args: argparse.Namespace) -> int:
    from beatsync.service.server import serve

    overrides = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("workers", args.workers),
            ("data_dir", args.data_dir),
        )
        if value is not None
    }
    serve(service_settings(**overrides))
    return EXIT_OK
