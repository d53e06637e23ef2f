"""``beatsync migrate``: bring the database to the latest migration, then exit.

With several API replicas, run it once before they start (the ``migrate`` service of
``deploy/docker-compose.yml``) instead of letting each replica migrate as it comes up: a
schema change then happens exactly once, and no replica serves a half-migrated database.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EXIT_OK, SubParsers

__all__ = ["add_migrate"]


def add_migrate(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "migrate",
        help="bring the database to the latest migration and exit",
        description="Apply the database migrations this version brings (none when it is "
        "current) and print the revision. Reads BEATSYNC_DATABASE_URL like `beatsync serve`.",
    )
    p.add_argument("--data-dir", type=Path, help="data folder (BEATSYNC_DATA_DIR, default ./data)")
    p.set_defaults(handler=_run_migrate)


def _run_migrate(args: argparse.Namespace) -> int:
    from alembic.migration import MigrationContext

    from beatsync.service.db import Database, migrate

    from .serve import service_settings

    overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
    settings = service_settings(**overrides)
    db = Database(settings.database)  # makes the SQLite file's folder when there is none
    try:
        migrate(settings.database)
        with db.engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        db.dispose()
    print(f"the database is at migration {revision}")
    return EXIT_OK
