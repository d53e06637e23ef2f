"""Alembic environment: the URL comes from the caller (:func:`beatsync.service.db.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from beatsync.service.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
if not url:
    raise RuntimeError("run migrations through beatsync.service.db.migrate, which sets the URL")


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
