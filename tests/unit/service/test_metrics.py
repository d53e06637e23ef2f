"""``/metrics``: HTTP by route template, jobs from worker processes, queue depth, upload bytes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from factories import Rows, owner_id
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, func, select, update

import seed_rows
from beatsync.service.api.app import create_app
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, JobStatus, migrate
from beatsync.service.db.models import MetricSample, new_id, utcnow
from beatsync.service.jobs.dispatch import DispatchUnavailable
from beatsync.service.jobs.recovery import requeue_or_lose
from beatsync.service.jobs.run import fail_job, run_job
from beatsync.service.layout import upload_folder
from beatsync.service.metrics import (
    STAGE_BUCKETS,
    exposition,
    process_metrics,
    record_job_end,
)
from beatsync.testkit import BuiltCase, build_case, case_named

if TYPE_CHECKING:
    # A name only: at run time "conftest" can be another folder's, by which tests run first.
    from conftest import ManualDispatcher

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STAGES = ("probe", "decode", "align", "trim", "render")


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("kit"))


def upload(client: TestClient, auth: dict[str, str], path: Path) -> str:
    response = client.post(
        "/api/v1/uploads",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "ready"
    upload_id: str = response.json()["id"]
    return upload_id


def create_job(client: TestClient, auth: dict[str, str], dance: str, bgm: str) -> str:
    response = client.post(
        "/api/v1/jobs", json={"dance_upload_id": dance, "bgm_upload_id": bgm}, headers=auth
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_finished(client: TestClient, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


# --- HTTP -----------------------------------------------------------------------------------


def test_requests_count_under_their_route_template_and_status_class(
    client: TestClient, auth: dict[str, str]
) -> None:
    before = scrape(client)
    missing = [new_id("job") for _ in range(3)]
    for job_id in missing:
        assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).status_code == 404
    assert client.get("/api/v1/jobs", headers=auth).status_code == 200
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/").status_code == 200
    response = client.get("/metrics")
    after = parse(response.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    template = "/api/v1/jobs/{job_id}"
    total = "beatsync_http_requests_total"
    assert delta(total, method="GET", route=template, status="4xx") == 3
    assert delta(total, method="GET", route=template, status="2xx") == 0
    assert delta(total, method="GET", route="/api/v1/jobs", status="2xx") == 1
    assert delta(total, method="GET", route="/api/v1/jobs", status="4xx") == 1
    assert delta(total, method="GET", route="/{path}", status="2xx") == 1
    # The previous scrape is counted; this one is still in flight.
    assert delta(total, method="GET", route="/metrics", status="2xx") >= 1
    assert value(after, "beatsync_http_requests_in_flight") >= 1
    count = "beatsync_http_request_duration_seconds_count"
    assert delta(count, method="GET", route=template) == 3
    seconds = delta("beatsync_http_request_duration_seconds_sum", method="GET", route=template)
    assert 0 < seconds < 30
    # No raw path ever becomes a label: the ids would make a series per request.
    assert not any(job_id in response.text for job_id in missing)
    routes = {dict(labels).get("route") for _, labels in after if "route" in dict(labels)}
    assert all(route.startswith("/") or route == "unmatched" for route in routes if route)


def test_a_websocket_counts_as_a_get_of_its_template(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    owner = owner_id(client, auth)
    job_id = create_queued_job(rows, owner)
    rows.succeed(job_id)
    before = scrape(client)
    token = auth["Authorization"].removeprefix("Bearer ")
    with client.websocket_connect(f"/api/v1/jobs/{job_id}/ws?access_token={token}") as ws:
        assert ws.receive_json()["status"] == "succeeded"
    after = scrape(client)
    labels = {"method": "GET", "route": "/api/v1/jobs/{job_id}/ws", "status": "1xx"}
    name = "beatsync_http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1


# --- jobs, from the worker processes ---------------------------------------------------------


def test_a_job_run_in_a_worker_process_shows_in_the_api_metrics(
    settings: Settings, clean: BuiltCase
) -> None:
    """The real embedded runner: the job runs in a child process, /metrics is the API's."""
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {client.post('/api/v1/sessions').json()['token']}"}
        uploaded_before = scrape(client)
        dance, bgm = upload(client, auth, clean.dance), upload(client, auth, clean.bgm)
        job_id = create_job(client, auth, dance, bgm)
        job = wait_finished(client, auth, job_id)
        assert job["status"] == "succeeded", job
        # The worker adds the job to the totals in the transaction of its final status.
        after = scrape(client)

    db = Database(settings.database)
    try:
        with db.session() as session:
            row = session.get(Job, job_id)
            assert row is not None
            assert row.worker is not None
            assert row.result is not None
            worker_pid = int(row.worker.rsplit(":", 1)[1])
            started, finished = row.started_at, row.finished_at
            timings = {t["stage"]: t["seconds"] for t in row.result["timings"]["stages"]}
    finally:
        db.dispose()
    assert worker_pid != os.getpid()  # measured in another process, seen in this one

    bytes_sent = clean.dance.stat().st_size + clean.bgm.stat().st_size
    upload_bytes = "beatsync_upload_bytes_total"
    received = value(after, upload_bytes, protocol="multipart") - value(
        uploaded_before, upload_bytes, protocol="multipart"
    )
    assert received == bytes_sent

    assert value(after, "beatsync_jobs_finished_total", status="succeeded", code="") == 1
    assert value(after, "beatsync_jobs_finished_total", status="failed", code="") == 0
    assert set(timings) == set(STAGES)
    for stage, seconds in timings.items():
        assert value(after, "beatsync_job_stage_duration_seconds_count", stage=stage) == 1
        recorded = value(after, "beatsync_job_stage_duration_seconds_sum", stage=stage)
        assert recorded == pytest.approx(seconds, abs=1e-9)
        # The one observation sits in the first bucket at or above it, and every one after.
        first = min(b for b in (*STAGE_BUCKETS, float("inf")) if b >= seconds)
        for bound in (*STAGE_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else repr(bound)
            expected = 1.0 if bound >= first else 0.0
            bucket = "beatsync_job_stage_duration_seconds_bucket"
            assert value(after, bucket, stage=stage, le=le) == expected, (stage, le)
    assert started is not None
    assert finished is not None
    run = (finished - started).total_seconds()
    assert value(after, "beatsync_job_duration_seconds_count", status="succeeded") == 1
    recorded = value(after, "beatsync_job_duration_seconds_sum", status="succeeded")
    assert recorded == pytest.approx(run, abs=1e-3)
    assert value(after, "beatsync_jobs_in_status", status="succeeded") == 1
    assert value(after, "beatsync_jobs_in_status", status="queued") == 0


def create_queued_job(rows: Rows, owner: str, **row: Any) -> str:
    job_id = new_id("job")
    with rows.db.session() as session:
        session.add(
            Job(
                id=job_id,
                owner_id=owner,
                dance_upload_id=rows.upload(owner),
                bgm_upload_id=rows.upload(owner),
                options={"nudge_ms": 0.0, "trim": True},
                cache_key=job_id,
                **row,
            )
        )
    return job_id


def test_failures_count_by_code_and_cancels_count_once(
    client: TestClient, auth: dict[str, str], rows: Rows, settings: Settings
) -> None:
    owner = owner_id(client, auth)
    lost = create_queued_job(rows, owner)
    # The dance upload's file is gone: the run fails FILE_NOT_FOUND before the engine starts.
    rows.storage.delete_prefix(f"{upload_folder(rows.job(lost).dance_upload_id)}")
    assert run_job(lost, settings=settings, db=rows.db, storage=rows.storage) == "failed"
    canceled = create_queued_job(rows, owner)
    response = client.post(f"/api/v1/jobs/{canceled}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    # A second cancel changes nothing, so it counts nothing.
    assert client.post(f"/api/v1/jobs/{canceled}/cancel", headers=auth).status_code == 409

    samples = scrape(client)
    assert (
        value(samples, "beatsync_jobs_finished_total", status="failed", code="FILE_NOT_FOUND") == 1
    )
    assert value(samples, "beatsync_jobs_finished_total", status="canceled", code="") == 1
    assert value(samples, "beatsync_jobs_finished_total", status="succeeded", code="") == 0
    assert value(samples, "beatsync_job_duration_seconds_count", status="failed") == 1
    # Canceled while queued: it never ran, so it has no run time.
    assert value(samples, "beatsync_job_duration_seconds_count", status="canceled") == 0
    assert not any(name.startswith("beatsync_job_stage_") for name, _ in samples)
    assert value(samples, "beatsync_jobs_in_status", status="failed") == 1
    assert value(samples, "beatsync_jobs_in_status", status="canceled") == 1


def test_a_retry_the_queue_cannot_take_counts_as_failed_server_busy(
    client: TestClient, auth: dict[str, str], rows: Rows, dispatcher: ManualDispatcher
) -> None:
    job_id = create_queued_job(rows, owner_id(client, auth))
    rows.fail(job_id)
    dispatcher.down = True
    response = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth)
    assert response.status_code == 503, response.text
    assert rows.job(job_id).error_code == "SERVER_BUSY"
    samples = scrape(client)
    name = "beatsync_jobs_finished_total"
    assert value(samples, name, status="failed", code="SERVER_BUSY") == 1
    # It never started again: no run time.
    assert value(samples, "beatsync_job_duration_seconds_count", status="failed") == 0


def test_a_retry_taken_by_a_runner_while_the_queue_fails_keeps_running(
    client: TestClient,
    auth: dict[str, str],
    rows: Rows,
    dispatcher: ManualDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = create_queued_job(rows, owner_id(client, auth))
    rows.fail(job_id)

    def taken_then_down(submitted: str) -> None:
        rows.run(submitted, "decode", 0.1)  # a runner polling the table claims the row first
        raise DispatchUnavailable("the queue does not answer")

    monkeypatch.setattr(dispatcher, "submit", taken_then_down)
    response = client.post(f"/api/v1/jobs/{job_id}/retry", headers=auth)
    assert response.status_code == 503, response.text
    assert rows.job(job_id).status == "running"
    assert rows.job(job_id).error_code is None
    samples = scrape(client)
    assert value(samples, "beatsync_jobs_finished_total", status="failed", code="SERVER_BUSY") == 0


def test_a_lost_worker_counts_once_as_worker_lost(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    job_id = create_queued_job(rows, owner_id(client, auth))
    rows.run(job_id, "decode", 0.2)
    for _ in range(2):  # two processes judging the same row: one of them fails it
        requeue_or_lose(rows.db, job_id, max_attempts=1, why="its process was killed")
    assert rows.job(job_id).error_code == "WORKER_LOST"
    samples = scrape(client)
    name = "beatsync_jobs_finished_total"
    assert value(samples, name, status="failed", code="WORKER_LOST") == 1
    assert value(samples, "beatsync_job_duration_seconds_count", status="failed") == 1


def test_queue_depth_and_the_oldest_wait_come_from_the_rows(
    client: TestClient, auth: dict[str, str], rows: Rows
) -> None:
    owner = owner_id(client, auth)
    queued = [create_queued_job(rows, owner) for _ in range(4)]
    rows.run(queued[0], "align", 0.4)
    rows.update(queued[1], created_at=utcnow() - timedelta(seconds=90))
    began = time.monotonic()
    samples = scrape(client)
    assert value(samples, "beatsync_jobs_in_status", status="queued") == 3
    assert value(samples, "beatsync_jobs_in_status", status="running") == 1
    assert value(samples, "beatsync_jobs_in_status", status="succeeded") == 0
    age = value(samples, "beatsync_queue_oldest_age_seconds")
    assert 90 <= age <= 90 + (time.monotonic() - began) + 5
    assert value(samples, "beatsync_metrics_database_up") == 1

    for job_id in queued[1:]:
        rows.update(job_id, status=JobStatus.CANCELED.value)
    samples = scrape(client)
    assert value(samples, "beatsync_jobs_in_status", status="queued") == 0
    assert value(samples, "beatsync_jobs_in_status", status="canceled") == 3
    assert value(samples, "beatsync_queue_oldest_age_seconds") == 0


# --- uploads ---------------------------------------------------------------------------------


def test_tus_bytes_count_once_their_offset_is_recorded(
    client: TestClient, auth: dict[str, str], clean: BuiltCase
) -> None:
    data = clean.bgm.read_bytes()
    tus = {**auth, "Tus-Resumable": "1.0.0"}
    before = scrape(client)
    created = client.post("/api/v1/tus", headers={**tus, "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    octet = {**tus, "Content-Type": "application/offset+octet-stream"}
    half = len(data) // 2
    first = client.patch(url, content=data[:half], headers={**octet, "Upload-Offset": "0"})
    assert first.status_code == 204
    # A chunk at a stale offset is refused: none of its bytes count.
    stale = client.patch(url, content=data[:100], headers={**octet, "Upload-Offset": "0"})
    assert stale.status_code == 409
    last = client.patch(url, content=data[half:], headers={**octet, "Upload-Offset": str(half)})
    assert last.status_code == 204
    assert client.get(url.replace("/tus/", "/uploads/"), headers=auth).json()["status"] == "ready"
    after = scrape(client)
    name = "beatsync_upload_bytes_total"
    assert value(after, name, protocol="tus") - value(before, name, protocol="tus") == len(data)
    assert value(after, name, protocol="multipart") == value(before, name, protocol="multipart")


# --- switches and failures -------------------------------------------------------------------


def test_disabled_metrics_are_not_served_and_not_measured(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(
        load_settings(
            data_dir=tmp_path / "off", metrics_enabled=False, min_free_disk_mb=0, log_json=False
        )
    )
    before = http_requests_of_this_process()
    assert client.get("/metrics").status_code == 404
    assert client.get("/api/health").status_code == 200
    assert http_requests_of_this_process() == before


def http_requests_of_this_process() -> float:
    """Every request this process's metrics have counted, whichever app answered it."""
    samples = parse(generate_latest(process_metrics().registry).decode())
    return sum(v for (name, _), v in samples.items() if name == "beatsync_http_requests_total")


def test_a_metrics_token_guards_the_endpoint(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(
        load_settings(
            data_dir=tmp_path / "guarded",
            metrics_token="scrape-me-please",
            min_free_disk_mb=0,
            log_json=False,
        )
    )
    owner_token = client.post("/api/v1/sessions").json()["token"]
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {owner_token}"},
    ):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHORIZED"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    samples = scrape(client, Authorization="Bearer scrape-me-please")
    assert value(samples, "beatsync_metrics_database_up") == 1


def test_an_unreachable_database_leaves_the_process_metrics(tmp_path: Path) -> None:
    db = Database("postgresql+psycopg://nobody:nothing@127.0.0.1:1/none?connect_timeout=2")
    try:
        samples = parse(exposition(db).decode())
    finally:
        db.dispose()
    assert value(samples, "beatsync_metrics_database_up") == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)
    assert not any(name.startswith("beatsync_jobs_") for name, _ in samples)


# --- the recorded samples --------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    migrate(url)
    db = Database(url)
    yield db
    db.dispose()


def finished_job(
    db: Database, owner: str, *, status: str, started: datetime, seconds: float
) -> str:
    return seed_rows.job(
        db,
        seed_rows.owner(db, owner),
        status=status,
        error_code="MUSIC_MISMATCH" if status == "failed" else None,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
    )


def test_concurrent_writers_lose_no_observation(database: Database) -> None:
    started = utcnow()
    jobs = [
        finished_job(database, "own_a", status="running", started=started, seconds=i * 0.5)
        for i in range(40)
    ]
    barrier = threading.Barrier(4)

    def record(part: list[str]) -> None:
        barrier.wait()
        for job_id in part:
            # As a finisher does: the final status, then the metrics, in one transaction.
            with database.engine.begin() as conn:
                conn.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "running")
                    .values(status="failed", error_code="MUSIC_MISMATCH")
                )
                record_job_end(conn, job_id)

    threads = [threading.Thread(target=record, args=(jobs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = parse(exposition(database).decode())
    name = "beatsync_jobs_finished_total"
    assert value(samples, name, status="failed", code="MUSIC_MISMATCH") == 40
    assert value(samples, "beatsync_job_duration_seconds_count", status="failed") == 40
    expected_sum = sum(i * 0.5 for i in range(40))
    assert value(samples, "beatsync_job_duration_seconds_sum", status="failed") == pytest.approx(
        expected_sum
    )
    # Cumulative buckets: observations 0, 0.5, …, 19.5 s.
    bucket = "beatsync_job_duration_seconds_bucket"
    assert value(samples, bucket, status="failed", le="0.5") == 2
    assert value(samples, bucket, status="failed", le="10.0") == 21
    assert value(samples, bucket, status="failed", le="+Inf") == 40


def test_a_bucket_bound_no_longer_defined_joins_the_next_one_up(database: Database) -> None:
    with database.session() as session:
        session.execute(delete(MetricSample))
        session.add_all(
            [
                MetricSample(
                    name="beatsync_job_stage_duration_seconds_bucket",
                    labels='{"le":"0.7","stage":"align"}',
                    value=3.0,
                ),
                MetricSample(
                    name="beatsync_job_stage_duration_seconds_bucket",
                    labels='{"le":"1.0","stage":"align"}',
                    value=2.0,
                ),
                MetricSample(
                    name="beatsync_job_stage_duration_seconds_sum",
                    labels='{"stage":"align"}',
                    value=4.1,
                ),
            ]
        )
    samples = parse(exposition(database).decode())
    bucket = "beatsync_job_stage_duration_seconds_bucket"
    assert value(samples, bucket, stage="align", le="0.5") == 0
    assert value(samples, bucket, stage="align", le="1.0") == 5
    assert value(samples, bucket, stage="align", le="+Inf") == 5
    assert value(samples, "beatsync_job_stage_duration_seconds_count", stage="align") == 5
    assert value(samples, "beatsync_job_stage_duration_seconds_sum", stage="align") == 4.1


def test_a_job_still_running_records_nothing(database: Database) -> None:
    job_id = finished_job(database, "own_b", status="running", started=utcnow(), seconds=1)
    with database.engine.begin() as conn:
        record_job_end(conn, job_id)
        record_job_end(conn, "job_missing")
    with database.session() as session:
        assert session.query(MetricSample).count() == 0


def job_state(db: Database, job_id: str) -> tuple[str, str | None, float]:
    """The job's status and error code, and how many jobs the metrics count as finished."""
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        counted = session.scalar(
            select(func.coalesce(func.sum(MetricSample.value), 0.0)).where(
                MetricSample.name == "beatsync_jobs_finished_total"
            )
        )
        return job.status, job.error_code, float(counted or 0.0)


def test_a_final_status_and_its_count_commit_together(database: Database) -> None:
    job_id = finished_job(database, "own_c", status="running", started=utcnow(), seconds=1)
    # A process that dies after its final write, before its commit, leaves neither.
    with database.engine.connect() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(status="failed"))
        record_job_end(conn, job_id)
        conn.rollback()
    assert job_state(database, job_id) == ("running", None, 0.0)
    assert fail_job(database, job_id, "TIMEOUT", "the job ran longer than 1 s")
    assert job_state(database, job_id) == ("failed", "TIMEOUT", 1.0)
    assert not fail_job(database, job_id, "TIMEOUT", "the job ran longer than 1 s")
    assert job_state(database, job_id) == ("failed", "TIMEOUT", 1.0)


def test_a_refused_metrics_write_leaves_the_final_status(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with database.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_samples BEFORE INSERT ON metric_samples "
            "BEGIN SELECT RAISE(ABORT, 'metrics refused'); END"
        )
    job_id = finished_job(database, "own_d", status="running", started=utcnow(), seconds=1)
    assert fail_job(database, job_id, "TIMEOUT", "the job ran longer than 1 s")
    assert job_state(database, job_id) == ("failed", "TIMEOUT", 0.0)
    assert f"job {job_id}: its metrics were not recorded" in caplog.text
