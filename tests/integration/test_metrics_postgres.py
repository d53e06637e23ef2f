"""Job metrics on PostgreSQL: workers adding at once lose nothing, every reader agrees, and a
job's final status and its count are committed together."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import seed_rows
from beatsync.service.db import Database, Job, migrate
from beatsync.service.db.models import MetricSample, utcnow
from beatsync.service.jobs.run import fail_job
from beatsync.service.metrics import exposition, record_job_end

WRITERS = 6
JOBS = 60


def test_concurrent_workers_add_every_job_once(postgres_url: str) -> None:
    migrate(postgres_url)
    setup = Database(postgres_url)
    started = utcnow()
    owner = seed_rows.owner(setup)
    jobs = [
        seed_rows.job(
            setup,
            owner,
            status="succeeded" if i % 3 else "failed",
            error_code=None if i % 3 else "MUSIC_MISMATCH",
            started_at=started,
            finished_at=started + timedelta(seconds=2.0),
            result={"timings": {"stages": [{"stage": "align", "seconds": 0.75}]}}
            if i % 3
            else None,
        )
        for i in range(JOBS)
    ]
    setup.dispose()

    barrier = threading.Barrier(WRITERS)

    def worker(part: list[str]) -> None:
        db = Database(postgres_url)  # a process of its own would have its own engine
        try:
            barrier.wait()
            for job_id in part:
                with db.engine.begin() as conn:
                    record_job_end(conn, job_id)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker, args=(jobs[i::WRITERS],)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    readers = [Database(postgres_url), Database(postgres_url)]  # two API replicas
    try:
        texts = [exposition(db).decode() for db in readers]
    finally:
        for db in readers:
            db.dispose()
    samples = [
        {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("beatsync_job")
        }
        for text in texts
    ]
    assert samples[0] == samples[1]
    got = samples[0]

    def value(name: str, **labels: str) -> float:
        return got.get((name, frozenset(labels.items())), 0.0)

    assert value("beatsync_jobs_finished_total", status="succeeded", code="") == 40
    assert value("beatsync_jobs_finished_total", status="failed", code="MUSIC_MISMATCH") == 20
    assert value("beatsync_job_duration_seconds_count", status="succeeded") == 40
    assert value("beatsync_job_duration_seconds_sum", status="failed") == 40.0
    assert value("beatsync_job_duration_seconds_bucket", status="failed", le="1.0") == 0
    assert value("beatsync_job_duration_seconds_bucket", status="failed", le="2.5") == 20
    assert value("beatsync_job_stage_duration_seconds_count", stage="align") == 40
    assert value("beatsync_job_stage_duration_seconds_sum", stage="align") == 30.0
    assert value("beatsync_job_stage_duration_seconds_bucket", stage="align", le="0.5") == 0
    assert value("beatsync_job_stage_duration_seconds_bucket", stage="align", le="1.0") == 40
    assert value("beatsync_jobs_in_status", status="succeeded") == 40


def running_jobs(url: str, count: int) -> list[str]:
    setup = Database(url)
    try:
        owner = seed_rows.owner(setup)
        return [
            seed_rows.job(setup, owner, status="running", started_at=utcnow()) for _ in range(count)
        ]
    finally:
        setup.dispose()


def finished_counts(db: Database) -> tuple[Counter[str], Counter[str]]:
    """The failed jobs' codes by the rows, and by the metrics."""
    with db.session() as session:
        rows = Counter(session.scalars(select(Job.error_code).where(Job.status == "failed")))
        samples = session.execute(
            select(MetricSample.labels, MetricSample.value).where(
                MetricSample.name == "beatsync_jobs_finished_total"
            )
        ).all()
    counted: Counter[str] = Counter()
    for labels, count in samples:
        counted[json.loads(labels)["code"]] += int(count)
    return Counter({code or "": n for code, n in rows.items()}), counted


def test_finishers_racing_for_the_same_jobs_count_each_once(postgres_url: str) -> None:
    migrate(postgres_url)
    jobs = running_jobs(postgres_url, JOBS)
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def finisher(index: int) -> None:
        db = Database(postgres_url)
        try:
            barrier.wait()
            # Each in its own order, so that every pair of writers meets on some job.
            for job_id in jobs[index:] + jobs[:index]:
                fail_job(db, job_id, f"RACE_{index}", "finished by one of the racers")
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=finisher, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = Database(postgres_url)
    try:
        by_rows, by_metrics = finished_counts(db)
    finally:
        db.dispose()
    assert sum(by_rows.values()) == JOBS
    assert by_metrics == by_rows


def test_a_refused_metrics_write_leaves_the_final_status(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(postgres_url)
    (job_id,) = running_jobs(postgres_url, 1)
    db = Database(postgres_url)
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_samples() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'metrics refused'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_samples BEFORE INSERT ON metric_samples "
                "FOR EACH ROW EXECUTE FUNCTION refuse_samples()"
            )
        # The refused insert aborts only its savepoint: the job's transaction still commits.
        with caplog.at_level(logging.WARNING):
            assert fail_job(db, job_id, "TIMEOUT", "the job ran longer than 1 s")
        by_rows, by_metrics = finished_counts(db)
    finally:
        db.dispose()
    assert by_rows == Counter({"TIMEOUT": 1})
    assert by_metrics == Counter()
    assert f"job {job_id}: its metrics were not recorded" in caplog.text
