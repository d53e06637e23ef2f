"""The distributed mode's queue against a real Redis and PostgreSQL.

Jobs are rows in PostgreSQL; :class:`CeleryDispatcher` sends their ids through a private Redis;
``beatsync worker`` subprocesses take them and run them. The tests read the messages in Redis,
the rows and the stored files, and the workers' logs.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from beatsync.service.api.app import create_app
from beatsync.service.config import load_settings
from beatsync.service.db import Database, Job
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.jobs import celery_task, liveness
from beatsync.service.jobs import run as run_module
from beatsync.service.jobs.celery_app import RETRY_BACKOFF_MAX_S, TASK_NAME, create_celery_app
from beatsync.service.jobs.celery_dispatch import RESEND_AFTER_S, CeleryDispatcher
from beatsync.service.jobs.celery_task import JobDelivery
from beatsync.service.jobs.dispatch import DispatchUnavailable
from beatsync.service.layout import job_folder
from beatsync.service.storage import StorageUnavailable
from beatsync.testkit import BuiltCase, build_case, case_named
from fixtures_servers import TEST_SECRET_KEY, RedisServer
from job_env import FlakyStorage, JobEnv
from worker_process import WorkerProcess

FILES = ("output.mp4", "report.json", "plot.png", "poster.jpg")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("media"))


class Cluster(JobEnv):
    """A migrated PostgreSQL database, local storage, a private Redis, a dispatcher, workers."""

    def __init__(self, root: Path, postgres_url: str, redis_server: RedisServer) -> None:
        super().__init__(
            root,
            database_url=postgres_url,
            redis_url=redis_server.url,
            queue="celery",
            secret_key=TEST_SECRET_KEY,
        )
        self.redis_server = redis_server
        self.env = {
            "BEATSYNC_QUEUE": "celery",
            "BEATSYNC_SECRET_KEY": TEST_SECRET_KEY,
            "BEATSYNC_DATA_DIR": str(root / "data"),
            "BEATSYNC_DATABASE_URL": postgres_url,
            "BEATSYNC_REDIS_URL": redis_server.url,
        }
        self.dispatcher = CeleryDispatcher(self.settings, self.db)
        self.redis = redis.Redis.from_url(redis_server.url)
        self.workers: list[WorkerProcess] = []

    def worker(self, *, concurrency: int = 1, **env: str) -> WorkerProcess:
        log = self.root / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(log, {**self.env, **env}, concurrency=concurrency)
        self.workers.append(worker)
        return worker.start()

    def wait(self, job_id: str, *statuses: str, timeout: float = 90) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.row(job_id)
            if job.status in statuses:
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} is {self.row(job_id).status}, not {statuses}")

    def messages(self) -> list[dict[str, Any]]:
        """The messages waiting in the queue, oldest first, their bodies decoded."""
        raw = self.redis.lrange(self.settings.celery_queue, 0, -1)
        messages = []
        for entry in reversed(raw):  # kombu pushes on the left, takes from the right
            message = json.loads(entry)
            message["body"] = json.loads(base64.b64decode(message["body"]))
            messages.append(message)
        return messages

    def drained(self, timeout: float = 30) -> None:
        """Wait until no message waits in the queue and none is held unacknowledged."""
        deadline = time.monotonic() + timeout
        while self.redis.llen(self.settings.celery_queue) or self.redis.hlen("unacked"):
            assert time.monotonic() < deadline, "messages are still queued or unacknowledged"
            time.sleep(0.05)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.dispatcher.stop()
        self.redis.close()
        super().close()


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, redis_private: RedisServer) -> Iterator[Cluster]:
    made = Cluster(tmp_path, postgres_url, redis_private)
    yield made
    made.close()


def test_a_job_goes_as_its_id_alone_and_a_worker_runs_it(
    cluster: Cluster, clean: BuiltCase
) -> None:
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)

    [message] = cluster.messages()
    args, kwargs, _embed = message["body"]
    assert (args, kwargs) == ([job_id], {})
    assert message["headers"]["task"] == TASK_NAME
    assert message["content-type"] == "application/json"

    worker = cluster.worker()
    job = cluster.wait(job_id, "succeeded", "failed")
    assert (job.status, job.attempts, job.stage, job.progress) == ("succeeded", 1, "done", 1.0)
    assert job.worker is not None
    assert job.worker.rpartition(":")[2] in {str(pid) for pid in worker.pool_pids()}
    assert job.result is not None
    assert abs(job.result["mapping"]["offset_s"] - clean.truth.offset) < 0.005
    assert cluster.stored(job_id) == sorted(f"{job_folder(job_id)}/{name}" for name in FILES)
    assert job.result["output"]["size_bytes"] == cluster.storage.size(
        f"{job_folder(job_id)}/output.mp4"
    )
    cluster.drained()


def test_the_same_job_sent_twice_runs_once(cluster: Cluster, clean: BuiltCase) -> None:
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)
    cluster.dispatcher.submit(job_id)
    assert [m["body"][0] for m in cluster.messages()] == [[job_id], [job_id]]

    worker = cluster.worker(concurrency=2)  # takes both messages at once
    job = cluster.wait(job_id, "succeeded", "failed")
    cluster.drained()
    assert (job.status, job.attempts) == ("succeeded", 1)
    runs = [m for m in worker.messages(job_id) if m.startswith(f"job {job_id} running")]
    assert runs == [f"job {job_id} running (attempt 1)"]

    # A message for a finished job (a redelivery, a resend) changes nothing.
    files = {name: cluster.storage.size(f"{job_folder(job_id)}/{name}") for name in FILES}
    cluster.dispatcher.submit(job_id)
    cluster.drained()
    again = cluster.row(job_id)
    assert (again.status, again.attempts, again.finished_at) == (
        "succeeded",
        1,
        job.finished_at,
    )
    assert again.result == job.result
    assert {name: cluster.storage.size(f"{job_folder(job_id)}/{name}") for name in FILES} == files
    runs = [m for m in worker.messages(job_id) if m.startswith(f"job {job_id} running")]
    assert len(runs) == 1


def _cancel(cluster: Cluster, job_id: str) -> None:
    """What the API does: the row says canceled, then the dispatcher is told."""
    with cluster.db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(["queued", "running"]))
            .values(status="canceled", cancel_requested=True, finished_at=utcnow())
        )
    cluster.dispatcher.cancel(job_id)


def test_a_cancel_reaches_the_running_task(cluster: Cluster, clean: BuiltCase) -> None:
    worker = cluster.worker()
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)
    running = cluster.wait(job_id, "running", "succeeded", timeout=30)
    assert running.status == "running"
    pid = int((running.worker or "").rpartition(":")[2])
    assert pid in worker.pool_pids()
    # Hold the pool process still, so that the cancel lands in the middle of the run.
    os.kill(pid, signal.SIGSTOP)
    try:
        _cancel(cluster, job_id)
        deadline = time.monotonic() + 10
        while f"job {job_id}: stopping its run in process {pid}" not in worker.messages(job_id):
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while f"job {job_id} stopped: it is canceled" not in worker.messages(job_id):
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.02)

    job = cluster.row(job_id)
    assert (job.status, job.result, job.error_code) == ("canceled", None, None)
    assert job.stage != "done"
    assert cluster.stored(job_id) == []
    cluster.drained()

    # The worker goes on with the next job.
    following = cluster.job(clean)
    cluster.dispatcher.submit(following)
    assert cluster.wait(following, "succeeded", "failed").status == "succeeded"


def test_soft_time_limit_fails_the_job_timeout(cluster: Cluster, clean: BuiltCase) -> None:
    cluster.worker(BEATSYNC_JOB_SOFT_TIME_LIMIT_S="0.3", BEATSYNC_JOB_TIME_LIMIT_S="60")
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)

    job = cluster.wait(job_id, "succeeded", "failed")
    assert (job.status, job.error_code) == ("failed", "TIMEOUT")
    assert job.error_message == "the job ran longer than 0.3 s"
    assert cluster.stored(job_id) == []
    cluster.drained()


def test_hard_time_limit_kills_the_process_and_fails_the_job(
    cluster: Cluster, clean: BuiltCase
) -> None:
    worker = cluster.worker(
        BEATSYNC_JOB_SOFT_TIME_LIMIT_S="1",
        BEATSYNC_JOB_TIME_LIMIT_S="2",
        BEATSYNC_STORAGE_RETRY_S="1",  # Celery kills at the hard limit plus this
    )
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)
    running = cluster.wait(job_id, "running", "succeeded", timeout=30)
    pid = int((running.worker or "").rpartition(":")[2])
    os.kill(pid, signal.SIGSTOP)  # stuck where no progress is reported: only a kill ends it

    job = cluster.wait(job_id, "failed", "succeeded", timeout=30)
    assert (job.status, job.error_code) == ("failed", "TIMEOUT")
    assert job.error_message == "the job ran longer than 2 s"
    deadline = time.monotonic() + 10
    while pid in worker.pool_pids():  # killed just after the row was failed
        assert time.monotonic() < deadline, "the stuck pool process was not killed"
        time.sleep(0.02)
    assert cluster.stored(job_id) == []
    cluster.drained()


def _kill_attempt(cluster: Cluster, job_id: str, attempt: int) -> int:
    """SIGKILL the pool process running ``attempt`` of the job once the engine works on it."""
    deadline = time.monotonic() + 60
    while True:
        job = cluster.row(job_id)
        if job.status == "running" and job.attempts == attempt and job.stage is not None:
            break
        assert time.monotonic() < deadline, f"attempt {attempt} never ran: {job.status}"
        time.sleep(0.005)
    pid = int((job.worker or "").rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_pool_process_killed_mid_job_is_run_again_once_then_lost(
    cluster: Cluster, clean: BuiltCase
) -> None:
    # No watch runs here: the message comes back because the worker rejects it when its pool
    # process dies, and the next delivery sees that the process holding the job is gone.
    worker = cluster.worker()
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)
    killed = _kill_attempt(cluster, job_id, 1)

    job = cluster.wait(job_id, "succeeded", "failed")
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert job.worker != f"{socket.gethostname()}:{killed}"
    runs = [m for m in worker.messages(job_id) if " running (attempt" in m]
    assert runs == [f"job {job_id} running (attempt {n})" for n in (1, 2)]
    assert cluster.stored(job_id) == sorted(f"{job_folder(job_id)}/{name}" for name in FILES)
    cluster.drained()

    # A job whose process dies at every attempt stops after job_max_attempts.
    doomed = cluster.job(clean)
    cluster.dispatcher.submit(doomed)
    for attempt in range(1, cluster.settings.job_max_attempts + 1):
        _kill_attempt(cluster, doomed, attempt)
    job = cluster.wait(doomed, "failed", "succeeded")
    assert (job.status, job.error_code, job.attempts) == ("failed", "WORKER_LOST", 2)
    assert cluster.stored(doomed) == []
    cluster.drained()


def test_the_watch_requeues_a_job_whose_worker_went_silent(
    cluster: Cluster, clean: BuiltCase
) -> None:
    assert cluster.dispatcher.watch_once() == []  # the broker's marker is set
    an_hour_ago = utcnow() - timedelta(hours=1)
    lost = cluster.job(
        clean,
        status="running",
        attempts=1,
        worker="elsewhere:4242",
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
    )
    exhausted = cluster.job(
        clean,
        status="running",
        attempts=cluster.settings.job_max_attempts,
        worker="elsewhere:4243",
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
    )
    alive = cluster.job(
        clean,
        status="running",
        attempts=1,
        worker="elsewhere:4244",
        started_at=an_hour_ago,
        heartbeat_at=utcnow(),
    )

    assert cluster.dispatcher.watch_once() == [lost]
    assert [m["body"][0] for m in cluster.messages()] == [[lost]]
    assert (cluster.row(lost).status, cluster.row(lost).attempts) == ("queued", 1)
    gone = cluster.row(exhausted)
    assert (gone.status, gone.error_code) == ("failed", "WORKER_LOST")
    assert cluster.row(alive).status == "running"

    # A message for the job of a live worker elsewhere is not the worker's to run.
    cluster.dispatcher.submit(alive)
    cluster.worker()
    job = cluster.wait(lost, "succeeded", "failed")
    assert (job.status, job.attempts) == ("succeeded", 2)
    cluster.drained()
    still = cluster.row(alive)
    assert (still.status, still.worker, still.attempts) == ("running", "elsewhere:4244", 1)


def test_queued_jobs_survive_a_redis_restart(cluster: Cluster, clean: BuiltCase) -> None:
    assert cluster.dispatcher.watch_once() == []  # the marker is set
    job_id = cluster.job(clean)
    cluster.dispatcher.submit(job_id)
    assert len(cluster.messages()) == 1

    cluster.redis_server.restart()  # it keeps nothing on disk: the message is gone
    assert cluster.messages() == []
    assert cluster.dispatcher.watch_once() == [job_id]
    assert cluster.dispatcher.watch_once() == []  # once is enough

    cluster.worker()
    assert cluster.wait(job_id, "succeeded", "failed").status == "succeeded"


def test_a_broker_that_is_down_makes_the_service_unready(cluster: Cluster) -> None:
    app = create_app(cluster.settings, dispatcher=cluster.dispatcher, storage=cluster.storage)
    with TestClient(app) as client:
        liveness.beat(cluster.redis, "elsewhere:4242")
        ready = client.get("/api/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["queue"] == {"ok": True}

        cluster.redis_server.stop()
        with pytest.raises(DispatchUnavailable, match="the broker does not answer"):
            cluster.dispatcher.check()
        with pytest.raises(DispatchUnavailable):
            cluster.dispatcher.submit(new_id("job"))
        ready = client.get("/api/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["queue"]["ok"] is False
        assert "DispatchUnavailable" in body["checks"]["queue"]["error"]
        assert body["checks"]["database"] == {"ok": True}

        cluster.redis_server.start()
        liveness.beat(cluster.redis, "elsewhere:4242")  # the restarted broker forgot it
        ready = client.get("/api/health/ready")
        assert ready.status_code == 200, ready.text


def test_the_app_is_configured_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        queue="celery",
        secret_key=TEST_SECRET_KEY,
        redis_url="redis://127.0.0.1:1/3",
        celery_queue="jobs-eu",
        job_soft_time_limit_s=100,
        job_time_limit_s=130,
        storage_retry_s=45,
        worker_max_tasks_per_child=7,
        worker_max_memory_per_child_mb=900,
    )
    conf = create_celery_app(settings).conf
    assert conf.broker_url == "redis://127.0.0.1:1/3"
    assert conf.task_default_queue == "jobs-eu"
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert conf.worker_prefetch_multiplier == 1
    # The run defers the soft limit by its storage waits (at most 45 s); Celery's hard limit
    # cannot move, so it allows for them.
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 130 + 45)
    assert (conf.worker_max_tasks_per_child, conf.worker_max_memory_per_child) == (7, 900 * 1024)
    # Redis hands a message out again only after the longest a job may hold it.
    longest_hold = settings.job_time_limit_s + settings.storage_retry_s + RETRY_BACKOFF_MAX_S
    assert conf.broker_transport_options["visibility_timeout"] > longest_hold
    assert (conf.task_serializer, conf.accept_content) == ("json", ["json"])
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_pool == "prefork"


def test_transient_faults_retry_and_bad_media_does_not(
    cluster: Cluster, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run in this process (eagerly), with a memory cap that cannot bind the test process.
    settings = cluster.settings.model_copy(update={"job_memory_limit_mb": 10**7})
    app = create_celery_app(settings)
    task = app.tasks[TASK_NAME]
    assert task.autoretry_for == (StorageUnavailable, OperationalError)
    takes: list[str] = []
    faults = [OperationalError("SELECT", {}, ConnectionError("the server went away"))]
    take = JobDelivery._take

    def flaky_take(self: JobDelivery, db: Database, job_id: str, me: str) -> str | None:
        takes.append(job_id)
        if faults:
            raise faults.pop()
        return take(self, db, job_id, me)

    monkeypatch.setattr(JobDelivery, "_take", flaky_take)
    try:
        job_id = cluster.job(clean)
        assert task.apply(args=[job_id]).get() == "succeeded"
        assert takes == [job_id, job_id]  # the database fault was retried
        assert (cluster.row(job_id).status, cluster.row(job_id).attempts) == ("succeeded", 1)

        mismatch = build_case(case_named("small-mismatch"), cluster.root / "media")
        takes.clear()
        job_id = cluster.job(mismatch)
        assert task.apply(args=[job_id]).get() == "failed"
        assert takes == [job_id]  # bad media: no retry
        job = cluster.row(job_id)
        assert (job.status, job.error_code, job.attempts) == ("failed", "MUSIC_MISMATCH", 1)
        assert cluster.stored(job_id) == []
    finally:
        task.delivery.close()


def test_a_storage_outage_is_waited_out_inside_the_task(
    cluster: Cluster, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run in this process (eagerly), with a memory cap that cannot bind the test process.
    settings = cluster.settings.model_copy(update={"job_memory_limit_mb": 10**7})
    task = create_celery_app(settings).tasks[TASK_NAME]
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(cluster.storage.root, fetch=[down] * 6, put=[down] * 2)
    monkeypatch.setattr(celery_task, "open_storage", lambda _: storage)
    waits: list[float] = []
    monkeypatch.setattr(run_module, "_pause", waits.append)
    try:
        job_id = cluster.job(clean)
        assert task.apply(args=[job_id]).get() == "succeeded"
    finally:
        task.delivery.close()

    # 31.5 s of pauses for the download, 1.5 s for the results: one attempt, not a failure.
    assert sum(waits) == pytest.approx(33.0)
    assert storage.calls == {"fetch": 8, "put_file": 6}
    assert (cluster.row(job_id).status, cluster.row(job_id).attempts) == ("succeeded", 1)
    assert len(cluster.stored(job_id)) == 4


def test_worker_ping_answers_only_while_a_worker_on_this_host_runs(cluster: Cluster) -> None:
    def ping() -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEATSYNC_")}
        return subprocess.run(
            [sys.executable, "-m", "beatsync", "worker", "--ping"],
            env={**env, **cluster.env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    alone = ping()
    assert alone.returncode == 5
    assert "no worker on this host answered a ping" in alone.stderr

    worker = cluster.worker()
    answered = ping()
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == [f"beatsync-{worker.pid}@{socket.gethostname()}"]

    worker.kill()
    assert ping().returncode == 5


def _workers_metrics(client: TestClient) -> dict[str, float]:
    found = {}
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("beatsync_workers_alive", "beatsync_worker_heartbeat_oldest_age_seconds"):
            found[name] = float(value)
    return found


def test_readiness_and_metrics_follow_the_workers_heartbeats(cluster: Cluster) -> None:
    app = create_app(cluster.settings, dispatcher=cluster.dispatcher, storage=cluster.storage)
    with TestClient(app) as client:
        # No worker: jobs would only wait, so the service is not ready.
        ready = client.get("/api/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["workers"] == {
            "ok": False,
            "error": "RuntimeError: no worker has sent a heartbeat in the last 30 s",
        }
        assert _workers_metrics(client) == {
            "beatsync_workers_alive": 0.0,
            "beatsync_worker_heartbeat_oldest_age_seconds": 0.0,
        }
        # A worker that stopped beating a minute ago is not alive either.
        liveness.beat(cluster.redis, "elsewhere:4242", now=time.time() - 60)
        assert client.get("/api/health/ready").status_code == 503

        worker = cluster.worker()
        name = f"{socket.gethostname()}:{worker.pid}"
        assert cluster.redis.hexists(liveness.WORKERS_KEY, name)
        ready = client.get("/api/health/ready")
        assert ready.status_code == 200, ready.text
        seen = ready.json()["checks"]["workers"]
        assert (seen["ok"], seen["alive"]) == (True, 1)
        assert 0 <= seen["oldest_heartbeat_age_s"] < liveness.STALE_S
        metrics = _workers_metrics(client)
        assert metrics["beatsync_workers_alive"] == 1.0
        assert 0 <= metrics["beatsync_worker_heartbeat_oldest_age_seconds"] < liveness.STALE_S

        worker.stop()  # a worker that stops on purpose says so at once
        assert not cluster.redis.hexists(liveness.WORKERS_KEY, name)
        assert client.get("/api/health/ready").status_code == 503

    # Heartbeats an hour old are forgotten by whoever reads them.
    liveness.beat(cluster.redis, "long-gone:1", now=time.time() - 2 * liveness.FORGET_S)
    assert liveness.read_liveness(cluster.redis) == liveness.Liveness(0, None)
    assert not cluster.redis.hexists(liveness.WORKERS_KEY, "long-gone:1")


def test_a_backlog_is_resent_once_per_period_by_one_replica(
    cluster: Cluster, clean: BuiltCase
) -> None:
    replicas = [cluster.dispatcher, CeleryDispatcher(cluster.settings, cluster.db)]
    try:
        assert replicas[0].watch_once() == []  # the broker's marker is set
        stuck_since = utcnow() - timedelta(seconds=RESEND_AFTER_S + 60)
        backlog = [cluster.job(clean, updated_at=stuck_since) for _ in range(3)]
        fresh = cluster.job(clean)

        # With no worker alive, more messages would only pile up behind those waiting.
        assert [r.watch_once() for r in replicas] == [[], []]
        assert cluster.messages() == []

        liveness.beat(cluster.redis, "elsewhere:4242")
        sent = [r.watch_once() for r in replicas] + [r.watch_once() for r in replicas]
        assert sent == [backlog, [], [], []]  # one replica, once, for the stuck jobs only
        assert [m["body"][0] for m in cluster.messages()] == [[j] for j in backlog]
        assert fresh not in sent[0]
        row = cluster.row(backlog[0])
        assert row.updated_at == stuck_since  # the claim does not make the job look fresh
        assert row.resent_at is not None

        # A period later, still stuck: sent again, once more in all.
        with cluster.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(backlog))
                .values(resent_at=stuck_since, updated_at=stuck_since)
            )
        sent = [r.watch_once() for r in reversed(replicas)] + [r.watch_once() for r in replicas]
        assert sent == [backlog, [], [], []]
        assert len(cluster.messages()) == 6
    finally:
        replicas[1].stop()


def test_a_worker_sweeps_the_scratch_that_killed_runs_left(
    cluster: Cluster, clean: BuiltCase
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = cluster.job(
        clean,
        status="running",
        worker=f"{socket.gethostname()}:{dead.pid}",
        started_at=utcnow(),
        heartbeat_at=utcnow(),
    )
    finished = cluster.job(clean, status="failed")
    young = cluster.job(clean, status="failed")
    an_hour_ago = time.time() - 3600
    for job_id in (killed, finished, young):
        cluster.work(job_id).mkdir(parents=True)
        (cluster.work(job_id) / "dance.mp4").write_bytes(b"x" * 1000)
        if job_id != young:
            os.utime(cluster.work(job_id), (an_hour_ago, an_hour_ago))

    cluster.worker()  # sweeps when it starts, before any job comes

    deadline = time.monotonic() + 30
    while cluster.work(killed).exists() or cluster.work(finished).exists():
        assert time.monotonic() < deadline, "the worker left the scratch of killed runs"
        time.sleep(0.05)
    assert cluster.work(young).is_dir()  # a run may be starting in it
