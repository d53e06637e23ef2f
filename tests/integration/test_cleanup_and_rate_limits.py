"""The distributed mode's shared state: one sweep at a time across replicas through PostgreSQL's
advisory lock, a sweep on PostgreSQL, and rate limits counted once for every replica in Redis."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import seed_rows
from beatsync.service.cleanup import RESULTS_EXPIRED, SWEEP_LOCK_KEY, sweep, sweep_lock
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, JobStatus, Upload, migrate
from beatsync.service.db.models import utcnow
from beatsync.service.layout import upload_folder
from beatsync.service.ratelimit import RateLimiter, RedisCounter, Verdict, make_limiter
from beatsync.service.storage import LocalStorage
from fixtures_servers import TEST_SECRET_KEY, RedisServer, free_port


@pytest.fixture
def pg_settings(postgres_url: str, tmp_path: Path) -> Settings:
    migrate(postgres_url)
    return load_settings(data_dir=tmp_path / "data", database_url=postgres_url)


@pytest.fixture
def db(pg_settings: Settings) -> Iterator[Database]:
    database = Database(pg_settings.database)
    yield database
    database.dispose()


@pytest.fixture
def storage(pg_settings: Settings) -> LocalStorage:
    return LocalStorage(pg_settings.storage_root)


def test_another_replica_holding_the_advisory_lock_skips_the_sweep(
    pg_settings: Settings, postgres_url: str, db: Database, storage: LocalStorage
) -> None:
    upload_id = seed_rows.upload(
        db, seed_rows.owner(db), b"old", expires_in=timedelta(minutes=-1), storage=storage
    )
    # Another replica: its own connection to the same database, holding the lock.
    conninfo = make_url(postgres_url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (SWEEP_LOCK_KEY,))
        assert sweep(pg_settings, db, storage).skipped
        with db.session() as session:
            assert session.get(Upload, upload_id) is not None
        other.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))
    report = sweep(pg_settings, db, storage)
    assert (report.skipped, report.uploads_expired, report.files_deleted) == (False, 1, 1)
    with db.session() as session:
        assert session.get(Upload, upload_id) is None
    assert not (pg_settings.storage_root / upload_folder(upload_id)).exists()
    # The lock is free again once a sweep ends: held now, then released.
    with sweep_lock(pg_settings, db) as held:
        assert held
        with db.engine.connect() as conn:
            locks = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ).scalar()
        assert locks == 1


def test_the_sweep_lock_holds_a_transaction_open_not_a_session(
    pg_settings: Settings, postgres_url: str
) -> None:
    # Through PgBouncer in transaction mode a server connection serves one client only while a
    # transaction is open: the lock must be the transaction's, taken and held inside one.
    db = Database(postgres_url)
    conninfo = make_url(postgres_url).set(drivername="postgresql")
    holders = (
        "SELECT a.state, l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    try:
        with (
            psycopg.connect(
                conninfo.render_as_string(hide_password=False), autocommit=True
            ) as other,
            sweep_lock(pg_settings, db) as held,
        ):
            assert held
            assert other.execute(holders).fetchall() == [("idle in transaction", "ExclusiveLock")]
            # Another replica's try fails while it is held.
            taken = other.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))
            assert taken.fetchone() == (False,)
        with psycopg.connect(conninfo.render_as_string(hide_password=False)) as other:
            assert other.execute(holders).fetchall() == []
    finally:
        db.dispose()


@pytest.fixture
def pgbouncer_url(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """``postgres_url`` through a real PgBouncer in transaction mode, two server connections."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert os.path.exists(binary), "PgBouncer is missing: make sysdeps installs it"
    url = make_url(postgres_url)
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    folder.chmod(0o777)  # run as nobody when the tests run as root (PgBouncer refuses root)
    (folder / "users.txt").write_text(f'"{url.username}" ""\n')
    port = free_port()
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{url.database} = host={url.host} port={url.port} dbname={url.database}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        "default_pool_size = 2\nignore_startup_parameters = extra_float_digits,options\n"
    )
    run_as = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [binary, *run_as, str(folder / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "PgBouncer did not start"
                time.sleep(0.05)
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def test_the_sweep_lock_works_through_pgbouncer_in_transaction_mode(
    pg_settings: Settings, pgbouncer_url: str
) -> None:
    settings = pg_settings.model_copy(
        update={"database_url": pgbouncer_url, "db_prepared_statements": False}
    )
    replica = Database(pgbouncer_url, prepared_statements=False)
    other = psycopg.connect(
        make_url(pgbouncer_url).set(drivername="postgresql").render_as_string(hide_password=False),
        prepare_threshold=None,
    )

    def other_replica_takes_it() -> bool:
        with other.transaction():
            taken = other.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK_KEY,))
            return bool(taken.fetchone()[0])  # type: ignore[index]

    try:
        # Rounds of sweeps with other traffic between them, which moves each client across
        # PgBouncer's two server connections: the lock is held exactly while a sweep runs.
        for _ in range(8):
            with sweep_lock(settings, replica) as held:
                assert held
                assert not other_replica_takes_it()
                with replica.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            assert other_replica_takes_it()
            report = sweep(settings, replica, LocalStorage(settings.storage_root))
            assert (report.skipped, report.errors) == (False, ())
    finally:
        other.close()
        replica.dispose()


def test_a_sweep_on_postgresql_expires_results_and_removes_orphans(
    pg_settings: Settings, db: Database, storage: LocalStorage
) -> None:
    owner = seed_rows.owner(db)
    upload_id = seed_rows.upload(
        db, owner, b"old", expires_in=timedelta(minutes=-1), storage=storage
    )
    seed_rows.job(
        db,
        owner,
        job_id="job_expiredOnPg",
        dance_upload_id=upload_id,
        bgm_upload_id=upload_id,
        status=JobStatus.SUCCEEDED.value,
        message="done",
        result={"files": {"video": "jobs/job_expiredOnPg/output.mp4"}},
        expires_at=utcnow() - timedelta(seconds=1),
    )
    for key in ("jobs/job_expiredOnPg/output.mp4", "jobs/job_noRowAtAll/output.mp4"):
        seed_rows.put(storage, key, b"video")

    report = sweep(pg_settings, db, storage, grace=timedelta(0))

    assert report.errors == ()
    assert (report.uploads_expired, report.results_expired, report.orphans_deleted) == (1, 1, 1)
    assert list(storage.keys("jobs")) == []
    with db.session() as session:
        job = session.get(Job, "job_expiredOnPg")
        assert job is not None
        assert (job.message, job.result) == (RESULTS_EXPIRED, {"files": {}})
    assert sweep(pg_settings, db, storage).changed == 0


def test_replicas_share_their_counts_in_redis(redis_url: str, tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        queue="celery",
        secret_key=TEST_SECRET_KEY,
        redis_url=redis_url,
        rate_limit_per_owner=3,
        rate_limit_per_address=100,
    )

    async def scenario() -> list[Verdict | None]:
        first, second = make_limiter(settings), make_limiter(settings)
        assert isinstance(first.counter, RedisCounter)
        clock = 1_800_000_015.0
        first.clock = second.clock = lambda: clock
        try:
            seen = [await first.check("alice", "10.0.0.1"), await second.check("alice", "10.0.0.2")]
            seen += [
                await first.check("alice", "10.0.0.3"),
                await second.check("alice", "10.0.0.4"),
            ]
            seen.append(await second.check("bob", "10.0.0.4"))
            return seen
        finally:
            await first.counter.close()
            await second.counter.close()

    seen = asyncio.run(scenario())
    assert seen == [
        Verdict(True, "owner", 3, 2, 45),
        Verdict(True, "owner", 3, 1, 45),
        Verdict(True, "owner", 3, 0, 45),
        Verdict(False, "owner", 3, 0, 45),
        Verdict(True, "owner", 3, 2, 45),
    ]


def test_counts_expire_with_their_window_and_survive_nothing_else(
    redis_private: RedisServer,
) -> None:
    import redis

    counter = RedisCounter(redis_private.url)
    limiter = RateLimiter(counter, per_owner=10, per_address=10, clock=lambda: 1_800_000_015.0)

    async def once() -> Verdict | None:
        try:
            return await limiter.check("carol", None)
        finally:
            await counter.close()

    assert asyncio.run(once()) == Verdict(True, "owner", 10, 9, 45)
    client = redis.Redis.from_url(redis_private.url)
    try:
        keys = client.keys("beatsync:rate:*")
        assert len(keys) == 1
        assert 60 < client.ttl(keys[0]) <= 120  # two windows at most, then gone
    finally:
        client.close()
    # A restarted Redis has lost its counts: counting starts again from zero.
    redis_private.restart()
    assert asyncio.run(once()) == Verdict(True, "owner", 10, 9, 45)
