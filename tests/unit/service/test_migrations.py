"""Alembic migrations: they build exactly the schema the models describe, and run twice safely."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from beatsync.service.db import Base, Database, migrate


def test_migrations_build_the_models_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'beatsync.db'}"
    migrate(url)
    migrate(url)  # already at head: nothing to do, nothing breaks
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() is not None
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        tables = set(inspect(db.engine).get_table_names())
        assert tables == {
            "alembic_version",
            "owners",
            "tokens",
            "uploads",
            "jobs",
            "metric_samples",
        }
    finally:
        db.dispose()
