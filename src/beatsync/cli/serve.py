"""``beatsync serve``: the API, the web page and the worker pool in one process group."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EXIT_OK, SubParsers

__all__ = ["add_serve"]


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
        type=_positive,
        help="job worker processes (BEATSYNC_WORKERS, default one per core)",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (BEATSYNC_DATA_DIR, default ./data)")
    p.set_defaults(handler=_run_serve, configures_logging=True)


def _run_serve(args: argparse.Namespace) -> int:
    from beatsync.service.config import load_settings
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
    serve(load_settings(**overrides))
    return EXIT_OK


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1 (got {value})")
    return value
