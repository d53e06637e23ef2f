"""The sweeper's question "does any upload's object lie in this day folder?" reads the
``storage_key`` index: by EXPLAIN on PostgreSQL, by EXPLAIN QUERY PLAN on SQLite, for the
statement the sweeper really sends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

import seed_rows
from beatsync.service.cleanup.days import DAY_GRACE, expired_days
from beatsync.service.cleanup.report import Tally
from beatsync.service.config import load_settings
from beatsync.service.db import Database, Upload, UploadStatus, migrate
from beatsync.service.db.models import utcnow
from beatsync.service.layout import day_folder, new_dated_id
from beatsync.service.storage import open_storage
from beatsync.service.stored import data_key

UPLOADS = 3000
DAYS = 60
FIRST = date(2026, 9, 1)
# Past days with a folder and no upload made on them: one empty, one holding the object a
# later upload shares.
EMPTY = FIRST - timedelta(days=2)
SHARED = FIRST - timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'beatsync.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    database = Database(url)
    yield database
    database.dispose()


def _made_on(day: date) -> str:
    return new_dated_id("upl", now=datetime.combine(day, time(12), UTC))


def _fill(db: Database) -> None:
    """Ready uploads over ``DAYS`` days, each with its object in its own day's folder, and one
    made on the last day that shares an object stored in the ``SHARED`` day's folder."""
    rows: list[dict[str, Any]] = []
    for i in range(UPLOADS):
        upload_id = _made_on(FIRST + timedelta(days=i % DAYS))
        rows.append({"id": upload_id, "storage_key": data_key(upload_id)})
    copy = _made_on(FIRST + timedelta(days=DAYS - 1))
    rows.append({"id": copy, "storage_key": f"{day_folder('uploads', SHARED)}/upl_old/data"})
    expires = utcnow() + timedelta(days=1)
    owner = seed_rows.owner(db)
    with db.session() as session:
        session.execute(
            insert(Upload),
            [
                {
                    **row,
                    "owner_id": owner,
                    "size": 1,
                    "offset": 1,
                    "status": UploadStatus.READY.value,
                    "expires_at": expires,
                }
                for row in rows
            ],
        )
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def test_the_day_folder_search_reads_the_storage_key_index(db: Database, tmp_path: Path) -> None:
    _fill(db)
    settings = load_settings(data_dir=tmp_path / "data", min_free_disk_mb=0)
    storage = open_storage(settings)
    for day in (EMPTY, SHARED):
        spare = tmp_path / "object"
        spare.write_bytes(b"x")
        storage.put_file(f"{day_folder('uploads', day)}/upl_old/data", spare)

    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "storage_key LIKE" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        tally = Tally()
        expired_days(db, storage, DAY_GRACE, tally)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)

    # The empty day goes; the shared object's day stays, found by its key alone.
    assert storage.size(f"{day_folder('uploads', EMPTY)}/upl_old/data") is None
    assert storage.size(f"{day_folder('uploads', SHARED)}/upl_old/data") == 1
    assert (tally.counts["days_deleted"], tally.counts["days_kept"]) == (1, 1)
    assert len(sent) == 2
    for statement, parameters in sent:
        with db.engine.connect() as conn:
            if db.local:
                plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                text = "\n".join(str(row[-1]) for row in plan)
                # A search of a range of the index, not a scan of the table or the index.
                assert "SEARCH uploads USING INDEX ix_uploads_storage_key" in text, text
                assert "storage_key>?" in text, text
            else:
                plan = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
                text = "\n".join(str(row[0]) for row in plan)
                # An index scan, or a bitmap of one, whichever the planner costs lower.
                assert re.search(r"Index Scan (using|on) ix_uploads_storage_key", text), text
                # The index is searched by the prefix's byte range.
                assert "~>=~" in text, text
                assert "~<~" in text, text
