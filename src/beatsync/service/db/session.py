"""The database connection: one :class:`Database` per process, migrations on demand.

SQLite runs in WAL mode with a busy timeout, so the API and the worker processes can write the
same file; PostgreSQL needs nothing special, and works through PgBouncer in transaction mode
(no session state is relied on; see ``docs/deploy.md``).

Each process keeps ``pool_size`` connections and opens up to ``max_overflow`` more at peaks. An
API process answers requests from a thread pool and needs the settings' sizes
(``BEATSYNC_DB_POOL_SIZE``, ``BEATSYNC_DB_MAX_OVERFLOW``); a process running one job needs
:func:`job_database`'s two (its run and its heartbeat) and one more at a peak.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "job_database", "migrate"]


class Database:
    """An engine and its session factory for ``url``, keeping ``pool_size`` connections and
    opening up to ``max_overflow`` more when they are all in use."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        prepared_statements: bool = True,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.local = parsed.get_backend_name() == "sqlite"
        """Whether the database is a file of this machine (SQLite) rather than a server."""
        kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": max_overflow}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # A server can drop idle connections (restarts, failovers): test before use.
            kwargs["pool_pre_ping"] = True
            if not prepared_statements:
                # psycopg prepares a statement it repeats; PgBouncer before 1.21 in transaction
                # mode may send the next use to a server connection that never saw it.
                kwargs["connect_args"] = {"prepare_threshold": None}
        self.engine: Engine = create_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def job_database(url: str, *, prepared_statements: bool = True) -> Database:
    """The database of a process that runs one job at a time (or sweeps its scratch)."""
    return Database(url, pool_size=2, max_overflow=1, prepared_statements=prepared_statements)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` with the packaged Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("beatsync.service.db") / "migrations")
    )
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)
