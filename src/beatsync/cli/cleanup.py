"""``beatsync cleanup``: a sweep of what has expired or was abandoned, then a report.

The running service sweeps on its own every ``BEATSYNC_SWEEP_INTERVAL_S``; this command is for
an operator who wants the disk back now, for checking what a sweep would find, and, with
``--every``, for the schedule of a worker host, whose job scratch no API process sees. It takes
the same lock as the service's sweeper, so running it beside a server is safe.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import EXIT_INTERNAL, EXIT_OK, SubParsers, whole_number

if TYPE_CHECKING:
    from beatsync.service.config import Settings

__all__ = ["add_cleanup", "report_lines"]

_LABELS = (
    ("uploads_expired", "expired uploads deleted"),
    ("uploads_in_use", "expired uploads kept for a queued or running job"),
    ("partials_expired", "abandoned resumable uploads deleted"),
    ("results_expired", "expired job results deleted"),
    ("jobs_expired", "finished jobs past their keeping time deleted"),
    ("orphans_deleted", "stored folders without a record deleted"),
    ("days_deleted", "past day folders deleted whole (no record refers to them)"),
    ("days_kept", "past day folders kept (a record still refers to them)"),
    ("files_deleted", "stored files deleted in all"),
    ("uploads_missing_file", "uploads whose stored file was gone"),
    ("results_missing_file", "jobs whose result files were gone"),
    ("work_folders", "work folders of finished runs removed"),
    ("spool_files", "temporary files removed"),
    ("pending", "files without a record left for a later sweep (too recent)"),
)


def add_cleanup(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "cleanup",
        help="delete expired uploads and results and anything abandoned, once",
        description="Run one cleanup sweep of the service's database, storage and spool: "
        "expired uploads (BEATSYNC_UPLOAD_TTL_H), expired results (BEATSYNC_RESULT_TTL_H), "
        "abandoned resumable uploads (BEATSYNC_TUS_EXPIRY_H), files no record claims and "
        "records whose files are gone. Uses the same BEATSYNC_* settings as `beatsync serve`.",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (BEATSYNC_DATA_DIR, default ./data)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--every",
        type=whole_number(1, "second"),
        metavar="SECONDS",
        help="sweep again every SECONDS until SIGTERM or SIGINT (a host's cleanup schedule); "
        "a failed sweep is reported and the next one tries again",
    )
    p.set_defaults(handler=_run_cleanup)


def report_lines(report: dict[str, object]) -> list[str]:
    """The report in plain words, one count a line."""
    lines = [f"{label}: {report.get(name, 0)}" for name, label in _LABELS]
    errors = report.get("errors")
    if isinstance(errors, list):
        lines += [f"error: {error}" for error in errors]
    return lines


def _run_cleanup(args: argparse.Namespace) -> int:
    from .serve import service_settings

    overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
    settings = service_settings(**overrides)
    if args.every is None:
        return _sweep_once(settings, as_json=args.json)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        _sweep_once(settings, as_json=args.json)
        sys.stdout.flush()
        stop.wait(args.every)
    return EXIT_OK


def _sweep_once(settings: Settings, *, as_json: bool) -> int:
    from beatsync.service.cleanup import sweep
    from beatsync.service.db import Database, migrate
    from beatsync.service.storage import open_storage

    # Makes the SQLite file's folder when there is none.
    db = Database(settings.database, prepared_statements=settings.db_prepared_statements)
    try:
        if settings.migrate_on_start:
            migrate(settings.database)
        report = sweep(settings, db, open_storage(settings))
    finally:
        db.dispose()
    data = report.as_dict()
    if as_json:
        print(json.dumps(data, sort_keys=True))
    elif report.skipped:
        print("another sweep is running; nothing was done")
    else:
        print("\n".join(report_lines(data)))
        print(f"took {report.seconds:.2f} s")
    if report.errors:
        print(
            f"beatsync: error [PROCESSING_FAILED]: {len(report.errors)} cleanup steps failed "
            f"(the next sweep tries again): {report.errors[0]}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return EXIT_OK
