"""PostgreSQL: the migrations build the models' schema, a queued job is claimed by exactly one
worker, and times, JSON and booleans come back as they went in."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import StatementError

import seed_rows
from beatsync.service.db import Base, Database, Job, JobStatus, Owner, Upload, migrate
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.jobs.run import claim_job

SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture
def db(postgres_url: str) -> Iterator[Database]:
    migrate(postgres_url)
    database = Database(postgres_url)
    yield database
    database.dispose()


def _head_revision() -> str:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("beatsync.service.db") / "migrations")
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _job(db: Database, **values: Any) -> str:
    return seed_rows.job(db, seed_rows.owner(db), **values)


def test_migrations_build_the_models_schema(postgres_url: str) -> None:
    migrate(postgres_url)
    migrate(postgres_url)  # already at head: nothing to do, nothing breaks
    db = Database(postgres_url)
    try:
        assert db.engine.dialect.name == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert context.get_current_revision() == _head_revision()
            assert compare_metadata(context, Base.metadata) == []
        inspector = inspect(db.engine)
        assert set(inspector.get_table_names()) == {"alembic_version", *Base.metadata.tables}
        assert {"owners", "tokens", "uploads", "jobs"} <= set(Base.metadata.tables)
        with db.engine.connect() as connection:
            types: dict[str, str] = dict(
                connection.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = 'jobs'"
                    )
                ).all()
            )
        assert types["created_at"] == "timestamp with time zone"
        assert types["heartbeat_at"] == "timestamp with time zone"
        assert types["options"] == "json"
        assert types["cancel_requested"] == "boolean"
        assert types["progress"] == "double precision"
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("jobs")}
        assert indexes["ix_jobs_status_created"] == ["status", "created_at"]
        assert indexes["ix_jobs_owner_created"] == ["owner_id", "created_at"]
        upload_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("uploads")}
        assert upload_indexes["ix_uploads_owner_sha"] == ["owner_id", "sha256"]
    finally:
        db.dispose()


def _race(db: Database, job_id: str, workers: tuple[str, ...]) -> dict[str, bool]:
    """Every worker calls :func:`claim_job` on ``job_id`` at the same moment; who got it."""
    start = threading.Barrier(len(workers))
    won: dict[str, bool] = {}

    def claim(worker: str) -> None:
        start.wait()
        won[worker] = claim_job(db, job_id, worker)

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return won


def test_a_queued_job_is_claimed_by_exactly_one_of_two_workers(db: Database) -> None:
    for _ in range(20):
        job_id = _job(db)
        won = _race(db, job_id, ("host-a:1", "host-b:2"))
        assert sorted(won.values()) == [False, True]
        winner = next(w for w, ok in won.items() if ok)
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert job.status == JobStatus.RUNNING.value
            assert job.worker == winner
            assert job.attempts == 1
    # A running job is not claimed again.
    assert claim_job(db, job_id, "host-c:3") is False


def test_times_come_back_aware_in_utc_whatever_the_session_zone(postgres_url: str) -> None:
    migrate(postgres_url)
    # A server configured for local time answers in it; the models still give UTC.
    db = Database(f"{postgres_url}?options=-c%20timezone%3DAsia/Shanghai")
    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("SHOW timezone")).scalar() == "Asia/Shanghai"
        started = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=SHANGHAI)
        job_id = _job(db, started_at=started, heartbeat_at=utcnow())
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            assert job.started_at == started
            assert job.started_at is not None
            assert job.started_at.tzinfo == UTC
            assert job.started_at.isoformat() == "2026-01-01T19:04:05.678901+00:00"
            assert job.created_at.tzinfo == UTC
            assert abs(utcnow() - job.created_at) < timedelta(minutes=1)
            assert job.finished_at is None
        with pytest.raises(StatementError, match="naive datetime"), db.session() as session:
            session.add(Owner(id=new_id("own"), kind="anonymous", created_at=datetime(2026, 1, 1)))
    finally:
        db.dispose()


def test_json_and_booleans_round_trip(db: Database) -> None:
    options = {
        "offset_s": None,
        "mapping": {"offset_s": 12.5, "scale": 1.0001},
        "nudge_ms": -3.25,
        "trim": True,
        "max_height": 720,
        "note": "舞蹈 ✓",
    }
    job_id = _job(db, options=options, cancel_requested=True)
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.options == options
        assert job.cancel_requested is True
        assert job.result is None
        owner_id = job.owner_id
        upload = Upload(
            id=new_id("upl"),
            owner_id=owner_id,
            filename="课堂 video.mp4",
            size=5 * 1024**3,  # BIGINT: larger than 2 GiB
            offset=5 * 1024**3,
            expires_at=utcnow() + timedelta(hours=1),
            media={"duration_s": 20.5, "has_video": True, "rotation": 270},
        )
        session.add(upload)
    with db.session() as session:
        stored = session.get(Upload, upload.id)
        assert stored is not None
        assert stored.size == 5 * 1024**3
        assert stored.filename == "课堂 video.mp4"
        assert stored.media == {"duration_s": 20.5, "has_video": True, "rotation": 270}
