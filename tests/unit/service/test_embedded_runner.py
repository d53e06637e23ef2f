"""The embedded runner: real child processes running real jobs, killed, canceled and recovered."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from beatsync.service.api.app import create_app
from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Job
from beatsync.service.db.models import utcnow
from beatsync.service.jobs import run as run_module
from beatsync.service.jobs.celery_dispatch import CeleryDispatcher
from beatsync.service.jobs.dispatch import Dispatcher, DispatchUnavailable
from beatsync.service.jobs.embedded import PRELOAD, EmbeddedRunner
from beatsync.service.jobs.factory import make_dispatcher
from beatsync.service.jobs.liveness import STALE_S, Liveness
from beatsync.service.storage import StorageUnavailable
from beatsync.testkit import BuiltCase, build_case, case_named
from fixtures_servers import TEST_SECRET_KEY
from job_env import FlakyStorage
from job_env import JobEnv as Env
from waiting_child import wait_for_storage_then_work_past_the_hard_limit

# -- what misbehaving children run (module level: a child imports them by name) -------------


def die_at_once(job_id: str, settings: Settings) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hang_past_every_signal(job_id: str, settings: Settings) -> None:
    """A job stuck where no signal reaches Python code: only SIGKILL ends it."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Event().wait()


HUGE = 3 << 30  # more than the default 2048 MB limit; the pages are never touched


def allocate_hugely(job_id: str, settings: Settings) -> None:
    """The real run, with an engine that asks for 3 GiB right after it starts."""

    def hungry_sync(dance: Path, bgm: Path, out: Path, **kw: Any) -> None:
        kw["on_progress"]("probe", 0.0, "reading the files")
        np.empty(HUGE, dtype=np.uint8)

    run_module.sync = hungry_sync  # type: ignore[assignment]
    run_module.run_job(job_id, settings=settings)


def run_through_a_storage_outage(job_id: str, settings: Settings) -> None:
    """The real run on storage that is away for its first six downloads (31.5 s of pauses,
    counted rather than slept) and its first two uploads."""
    waits: list[float] = []
    run_module._pause = waits.append
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(settings.storage_root, fetch=[down] * 6, put=[down] * 2)
    run_module.run_job(job_id, settings=settings, storage=storage)
    assert sum(waits) == 31.5 + 1.5


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("kit"))


@pytest.fixture
def runners() -> Iterator[Callable[..., EmbeddedRunner]]:
    """``runners(env, target=None)``: a runner on ``env``, stopped after the test."""
    made: list[tuple[EmbeddedRunner, Env]] = []

    def make(env: Env, **kw: Any) -> EmbeddedRunner:
        runner = EmbeddedRunner(env.settings, env.db, env.storage, **kw)
        made.append((runner, env))
        return runner

    yield make
    for runner, env in made:
        runner.stop()
        env.db.dispose()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


def running_with_stage(env: Env, job_id: str) -> Callable[[], bool]:
    def check() -> bool:
        job = env.row(job_id)
        assert job.status in ("queued", "running"), (job.status, job.error_code)
        return job.status == "running" and job.stage is not None

    return check


def ended(pid: int) -> bool:
    """Whether the process ``pid`` has stopped (a zombie waiting for its reaper has)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    assert process.wait() == 0
    return process.pid


def start_a_busy_job(env: Env, runner: EmbeddedRunner, case: BuiltCase) -> tuple[str, int]:
    """Start ``runner`` on a new job of ``case`` and wait until it runs: its id and child's pid."""
    job_id = env.job(case, {"reencode": True})  # the slower render keeps it busy
    runner.start()
    runner.submit(job_id)
    wait_for(running_with_stage(env, job_id), 30, "the job running")
    return job_id, runner.running()[job_id]


def assert_offset(env: Env, job_id: str, case: BuiltCase) -> None:
    result = env.row(job_id).result
    assert result is not None
    assert abs(result["mapping"]["offset_s"] - case.truth.offset) <= 0.005


# -- tests ------------------------------------------------------------------------------------


def test_two_jobs_run_at_once_with_two_workers(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, workers=2)
    runner = runners(env)
    jobs = [env.job(clean), env.job(clean)]
    runner.start()
    for job_id in jobs:
        runner.submit(job_id)

    runner.run_until_empty(60)

    rows = [env.row(job_id) for job_id in jobs]
    assert [(r.status, r.stage, r.progress, r.attempts) for r in rows] == [
        ("succeeded", "done", 1.0, 1)
    ] * 2
    for job_id in jobs:
        assert_offset(env, job_id, clean)
        assert len(env.stored(job_id)) == 4
        assert not env.work(job_id).exists()
    # They overlapped in time, in two different processes (not this one).
    started = [r.started_at for r in rows if r.started_at is not None]
    finished = [r.finished_at for r in rows if r.finished_at is not None]
    assert max(started) < min(finished)
    pids = {int((r.worker or "").rpartition(":")[2]) for r in rows}
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert {r.worker.rpartition(":")[0] for r in rows if r.worker} == {socket.gethostname()}


def test_cancel_kills_the_child_quickly_and_keeps_nothing(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    runner = runners(env)
    job_id, pid = start_a_busy_job(env, runner, clean)

    # What the API does: the row first, then the dispatcher.
    began = time.monotonic()
    with env.db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="canceled", cancel_requested=True, finished_at=utcnow())
        )
    runner.cancel(job_id)
    wait_for(lambda: job_id not in runner.running(), 5, "the child gone")
    took = time.monotonic() - began

    assert took < 1.5, took
    assert ended(pid)
    job = env.row(job_id)
    assert (job.status, job.error_code, job.result) == ("canceled", None, None)
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()
    runner.run_until_empty(5)
    assert env.row(job_id).status == "canceled"


def test_a_retry_right_after_a_cancel_runs_once_on_its_own(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    runner = runners(env)
    job_id, old_pid = start_a_busy_job(env, runner, clean)

    # Canceled and retried before the runner has seen the cancel: the row is queued again
    # while the first run's process still lives.
    with env.db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="queued", cancel_requested=False, attempts=0, stage=None, progress=0)
        )
    runner.submit(job_id)

    def second_run() -> bool:
        pid = runner.running().get(job_id)
        return pid is not None and pid != old_pid

    wait_for(second_run, 30, "the second run")
    assert ended(old_pid)  # the first run was stopped before the second began
    runner.run_until_empty(120)
    job = env.row(job_id)
    assert (job.status, job.stage, job.progress, job.attempts) == ("succeeded", "done", 1.0, 1)
    assert int((job.worker or "").rpartition(":")[2]) != old_pid
    assert_offset(env, job_id, clean)
    assert len(env.stored(job_id)) == 4


def test_a_child_killed_mid_job_is_requeued_and_succeeds(
    tmp_path: Path,
    clean: BuiltCase,
    runners: Callable[..., EmbeddedRunner],
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = Env(tmp_path)
    runner = runners(env)
    job_id, first = start_a_busy_job(env, runner, clean)

    with caplog.at_level(logging.INFO, logger="beatsync.service.jobs"):
        os.kill(first, signal.SIGKILL)
        runner.run_until_empty(60)

    job = env.row(job_id)
    assert (job.status, job.attempts, job.error_code) == ("succeeded", 2, None)
    assert job.worker is not None
    assert not job.worker.endswith(f":{first}")
    assert_offset(env, job_id, clean)
    assert len(env.stored(job_id)) == 4
    requeued = [r.getMessage() for r in caplog.records if "requeued" in r.getMessage()]
    assert requeued == [
        f"job {job_id} requeued after attempt 1: its process ended with signal SIGKILL"
    ]


def test_a_job_whose_child_always_dies_is_lost(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, job_max_attempts=3)
    runner = runners(env, target=die_at_once)
    job_id = env.job(clean)

    runner.run_until_empty(30)

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "WORKER_LOST", 3)
    assert job.error_message == (
        "the worker running the job was lost 3 times (its process ended with signal SIGKILL)"
    )
    assert job.finished_at is not None


def test_hard_time_limit_kills_the_child(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, job_soft_time_limit_s=0.3, job_time_limit_s=2.0)
    runner = runners(env, target=hang_past_every_signal)
    job_id = env.job(clean)

    began = time.monotonic()
    runner.run_until_empty(20)
    took = time.monotonic() - began

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "TIMEOUT", 1)
    assert job.error_message == "the job ran longer than 2 s"
    assert 2.0 <= took < 5.0, took
    assert runner.running() == {}


def test_the_hard_time_limit_allows_for_the_time_spent_waiting_for_storage(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, job_soft_time_limit_s=0.3, job_time_limit_s=4.0)
    runner = runners(env, target=wait_for_storage_then_work_past_the_hard_limit)
    job_id = env.job(clean)

    runner.run_until_empty(120)

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("succeeded", None, 1), job.error_message
    assert runner.running() == {}


def test_soft_time_limit_stops_the_run_inside(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, job_soft_time_limit_s=0.3, job_time_limit_s=30.0)
    runner = runners(env)
    job_id = env.job(clean)

    runner.run_until_empty(30)

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "TIMEOUT", 1)
    assert job.error_message == "the job ran longer than 0.3 s"
    assert job.started_at is not None
    assert job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() < 5.0  # not the hard limit
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()


def test_memory_limit_fails_a_runaway_allocation(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    assert env.settings.job_memory_limit_mb == 2048
    runner = runners(env, target=allocate_hugely)
    job_id = env.job(clean)

    runner.run_until_empty(30)

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "RESOURCE_LIMIT", 1)
    assert job.error_message is not None
    assert "2048 MB" in job.error_message
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()
    # Without the limit (this process) the same request is granted: the limit refused it.
    assert np.empty(HUGE, dtype=np.uint8).nbytes == HUGE


def test_a_child_waits_out_a_storage_outage(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    runner = runners(env, target=run_through_a_storage_outage)
    job_id = env.job(clean)

    runner.run_until_empty(60)

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("succeeded", None, 1)
    assert_offset(env, job_id, clean)
    assert len(env.stored(job_id)) == 4


def test_the_pool_is_alive_while_its_supervisor_goes_round(
    tmp_path: Path, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path, workers=3)
    runner = runners(env)
    assert runner.workers() == Liveness(0, None)

    runner.start()
    seen = runner.workers()
    assert seen.alive == 3
    assert seen.oldest_heartbeat_age_s is not None
    assert 0 <= seen.oldest_heartbeat_age_s < STALE_S

    app = create_app(env.settings, dispatcher=runner, storage=env.storage)
    with TestClient(app) as client:
        workers = client.get("/api/health/ready").json()["checks"]["workers"]
        assert (workers["ok"], workers["alive"]) == (True, 3)
        metrics = client.get("/metrics").text.splitlines()
        assert "beatsync_workers_alive 3.0" in metrics
    # The app's shutdown stopped the pool: no worker takes jobs now.
    assert runner.workers() == Liveness(0, None)


def test_start_sweeps_the_scratch_that_killed_runs_left(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    failed = env.job(clean, status="failed", worker=f"{socket.gethostname()}:{dead_pid()}")
    env.work(failed).mkdir(parents=True)
    an_hour_ago = time.time() - 3600
    os.utime(env.work(failed), (an_hour_ago, an_hour_ago))

    runners(env).start()

    assert not env.work(failed).exists()


def test_restart_recovers_running_jobs_once(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    gone = f"{socket.gethostname()}:{dead_pid()}"
    now = utcnow()
    # Left running by a crash, on its second start already: no third start.
    lost = env.job(clean, status="running", attempts=2, worker=gone, started_at=now, stage="align")
    # Held by a process that is alive: not an orphan.
    held = env.job(
        clean, status="running", attempts=1, worker=f"{socket.gethostname()}:{os.getpid()}",
        started_at=now,
    )  # fmt: skip
    first = runners(env)
    job_id = env.job(clean, {"reencode": True})
    first.start()
    first.check()
    first.submit(job_id)
    wait_for(running_with_stage(env, job_id), 30, "the job running")
    pid = first.running()[job_id]

    first.stop()  # what a server restart does to a running job

    with pytest.raises(DispatchUnavailable):
        first.check()
    job = env.row(job_id)
    assert (job.status, job.attempts) == ("running", 1)
    assert job.worker == f"{socket.gethostname()}:{pid}"
    assert ended(pid)
    assert not env.work(job_id).exists()
    assert env.stored(job_id) == []

    second = runners(env)
    second.start()
    assert (env.row(lost).status, env.row(lost).error_code) == ("failed", "WORKER_LOST")
    second.run_until_empty(60)

    job = env.row(job_id)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert_offset(env, job_id, clean)
    assert (env.row(held).status, env.row(held).attempts) == ("running", 1)


CRASHING_API = """
import sys, time
from beatsync.service.config import load_settings
from beatsync.service.db import Database, Job
from beatsync.service.jobs.embedded import EmbeddedRunner
from beatsync.service.storage import LocalStorage

if __name__ == "__main__":
    data, job_id = sys.argv[1], sys.argv[2]
    settings = load_settings(data_dir=data, workers=1, min_free_disk_mb=0, log_json=False)
    db = Database(settings.database)
    runner = EmbeddedRunner(settings, db, LocalStorage(settings.storage_root))
    runner.start()
    while True:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job.status == "running" and job.stage is not None:
                break
        time.sleep(0.01)
    print(runner.running()[job_id], flush=True)
    time.sleep(600)
"""


def test_children_end_when_the_api_process_dies(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    job_id = env.job(clean, {"reencode": True})
    script = tmp_path / "api.py"
    script.write_text(CRASHING_API)
    api = subprocess.Popen(
        [sys.executable, str(script), str(env.settings.data_dir), job_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert api.stdout is not None
    child = int(api.stdout.readline())
    api.stdout.close()

    api.kill()  # a crash: no stop(), no cleanup
    assert api.wait() == -signal.SIGKILL
    # Within seconds, not at once: the child notices its parent's death, then removes its
    # scratch folder, on a machine that may be busy with other tests.
    wait_for(lambda: ended(child), 5.0, "the orphaned child stopped")

    job = env.row(job_id)
    assert (job.status, job.attempts) == ("running", 1)  # for recovery to decide
    assert not env.work(job_id).exists()  # the child cleaned up after itself
    runner = runners(env)
    runner.start()
    runner.run_until_empty(60)
    job = env.row(job_id)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert_offset(env, job_id, clean)


def test_two_runners_never_take_the_same_job(
    tmp_path: Path, clean: BuiltCase, runners: Callable[..., EmbeddedRunner]
) -> None:
    env = Env(tmp_path)
    given = {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}}
    jobs = [env.job(clean, given) for _ in range(3)]
    pair = [runners(env), runners(env)]
    for runner in pair:
        runner.start()

    for runner in pair:
        runner.run_until_empty(60)

    rows = [env.row(job_id) for job_id in jobs]
    assert [(r.status, r.attempts) for r in rows] == [("succeeded", 1)] * 3


def test_make_dispatcher(tmp_path: Path) -> None:
    env = Env(tmp_path)
    dispatcher = make_dispatcher(env.settings, env.db, env.storage)
    assert isinstance(dispatcher, EmbeddedRunner)
    assert isinstance(dispatcher, Dispatcher)
    with pytest.raises(DispatchUnavailable):
        dispatcher.check()  # not started

    # The distributed mode sends jobs to Celery workers; nothing connects until it is used.
    celery = load_settings(data_dir=tmp_path / "data", queue="celery", secret_key=TEST_SECRET_KEY)
    distributed = make_dispatcher(celery, env.db, env.storage)
    assert isinstance(distributed, CeleryDispatcher)
    assert isinstance(distributed, Dispatcher)
    env.db.dispose()


def test_ctrl_c_at_a_terminal_is_left_to_serve_by_the_fork_server_and_its_jobs() -> None:
    """Ctrl-C reaches the whole process group: the fork server (even while it still imports
    the engine) and the job processes it forks ignore it; ``serve`` stops them itself."""
    script = (
        "import multiprocessing, signal\n"
        "from beatsync.service.jobs.embedded import PRELOAD\n"
        "context = multiprocessing.get_context('forkserver')\n"
        "context.set_forkserver_preload(list(PRELOAD[:1]))\n"
        "with context.Pool(1) as pool:\n"
        "    print(pool.apply(signal.getsignal, (signal.SIGINT,)) is signal.SIG_IGN)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
    assert PRELOAD[0] == "beatsync.service.jobs.forkserver_init"
