"""Job metrics on PostgreSQL: workers adding at once lose nothing, and every reader agrees."""

from __future__ import annotations

import threading
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from beatsync.service.db import Database, Job, Owner, migrate
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.metrics import exposition, record_job_end

WRITERS = 6
JOBS = 60


def test_concurrent_workers_add_every_job_once(postgres_url: str) -> None:
    migrate(postgres_url)
    setup = Database(postgres_url)
    started = utcnow()
    jobs: list[str] = []
    with setup.session() as session:
        session.add(Owner(id="own_pg", kind="anonymous"))
        session.flush()
        for i in range(JOBS):
            job_id = new_id("job")
            jobs.append(job_id)
            succeeded = i % 3 != 0
            session.add(
                Job(
                    id=job_id,
                    owner_id="own_pg",
                    dance_upload_id="upl_x",
                    bgm_upload_id="upl_y",
                    cache_key=job_id,
                    status="succeeded" if succeeded else "failed",
                    error_code=None if succeeded else "MUSIC_MISMATCH",
                    started_at=started,
                    finished_at=started + timedelta(seconds=2.0),
                    result={"timings": {"stages": [{"stage": "align", "seconds": 0.75}]}}
                    if succeeded
                    else None,
                )
            )
    setup.dispose()

    barrier = threading.Barrier(WRITERS)

    def worker(part: list[str]) -> None:
        db = Database(postgres_url)  # a process of its own would have its own engine
        try:
            barrier.wait()
            for job_id in part:
                record_job_end(db, job_id)
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
