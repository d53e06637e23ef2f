"""A worker's scratch sweep: work folders of runs killed on this host go, live runs' stay."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beatsync.service.db.models import new_id, utcnow
from beatsync.service.jobs.scratch import MIN_AGE_S, sweep_scratch
from beatsync.testkit import BuiltCase, build_case, case_named
from job_env import JobEnv as Env

HOST = socket.gethostname()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    return build_case(case_named("small-clean"), tmp_path_factory.mktemp("kit"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    yield made
    made.close()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    assert process.wait() == 0
    return process.pid


def scratch(env: Env, job_id: str, *, age_s: float) -> Path:
    folder = env.work(job_id)
    folder.mkdir(parents=True)
    (folder / "dance.mp4").write_bytes(b"x" * 100)
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_folders_of_killed_runs_go_and_live_runs_keep_theirs(env: Env, clean: BuiltCase) -> None:
    old = MIN_AGE_S + 600
    now = utcnow()
    finished = env.job(clean, status="succeeded")
    killed = env.job(clean, status="running", worker=f"{HOST}:{dead_pid()}", started_at=now)
    live = env.job(clean, status="running", worker=f"{HOST}:{os.getpid()}", started_at=now)
    elsewhere = env.job(clean, status="running", worker="another-host:12", started_at=now)
    young = env.job(clean, status="failed")
    unknown = new_id("job")  # its row expired with its files
    for job_id in (finished, killed, live, elsewhere, unknown):
        scratch(env, job_id, age_s=old)
    scratch(env, young, age_s=MIN_AGE_S / 2)
    notes = env.settings.spool_root / "work" / "notes"
    notes.mkdir()

    removed = sweep_scratch(env.settings, env.db)

    assert sorted(removed) == sorted([finished, killed, unknown])
    left = sorted(p.name for p in (env.settings.spool_root / "work").iterdir())
    assert left == sorted([live, elsewhere, young, "notes"])
    assert sweep_scratch(env.settings, env.db) == []


def test_no_spool_no_sweep(env: Env) -> None:
    assert sweep_scratch(env.settings, env.db) == []
