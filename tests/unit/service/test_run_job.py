"""``run_job``: a job row in, stored results and a finished row out, measured against the truth."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.sql import Update

from beatsync.engine import STAGES
from beatsync.service.db import Job
from beatsync.service.db.models import utcnow
from beatsync.service.jobs import run as run_module
from beatsync.service.jobs.backoff import storage_pauses
from beatsync.service.jobs.run import claim_job, run_job
from beatsync.service.layout import job_folder
from beatsync.service.storage import StorageUnavailable
from beatsync.testkit import BuiltCase, build_case, case_named
from job_env import FlakyStorage
from job_env import JobEnv as Env
from truth_checks import assert_report_output_matches

CANDIDATE_KEYS = {"index", "offset_s", "scale", "drift_ppm", "pitch_kept", "confidence", "support"}
FILES = {
    "video": "output.mp4",
    "report": "report.json",
    "plot": "plot.png",
    "poster": "poster.jpg",
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kit")


@pytest.fixture(scope="module")
def clean(kit: Path) -> BuiltCase:
    return build_case(case_named("small-clean"), kit)


@pytest.fixture(scope="module")
def mismatch(kit: Path) -> BuiltCase:
    return build_case(case_named("small-mismatch"), kit)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = Env(tmp_path)
    yield made
    made.close()


def assert_stored_output_matches(
    env: Env, job_id: str, case: BuiltCase, *, expected_ms: float = 0.0, cut: bool = True
) -> None:
    """The stored output and report against the truth: cut edges and sync along the cut."""
    report = json.loads(b"".join(env.storage.read(f"{job_folder(job_id)}/report.json")))
    output = env.storage.path(f"{job_folder(job_id)}/output.mp4")
    assert_report_output_matches(output, case, report, expected_ms=expected_ms, cut=cut)


def test_success_stores_the_results_and_finishes_the_row(env: Env, clean: BuiltCase) -> None:
    job_id = env.job(clean)
    before = utcnow()

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"

    job = env.row(job_id)
    assert (job.status, job.stage, job.progress, job.attempts) == ("succeeded", "done", 1.0, 1)
    assert job.error_code is None
    assert job.error_message is None
    assert job.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert job.started_at is not None
    assert job.finished_at is not None
    assert before <= job.started_at <= job.finished_at <= utcnow()
    assert job.expires_at == job.finished_at + timedelta(hours=env.settings.result_ttl_h)

    result = job.result
    assert result is not None
    truth = clean.truth
    assert abs(result["mapping"]["offset_s"] - truth.offset) <= 0.005
    assert abs(result["mapping"]["drift_ppm"] - truth.drift_ppm) <= 5.0
    assert 0.0 < result["confidence"] <= 1.0
    assert [c["index"] for c in result["candidates"]] == list(range(len(result["candidates"])))
    for candidate in result["candidates"]:  # the runners-up, each a whole mapping
        assert set(candidate) == CANDIDATE_KEYS
        assert 0.0 <= candidate["confidence"] <= 1.0
        assert 0.0 <= candidate["support"] <= 1.0
    assert result["files"] == {name: f"{job_folder(job_id)}/{f}" for name, f in FILES.items()}
    assert sorted(env.stored(job_id)) == sorted(result["files"].values())
    assert (result["output"]["width"], result["output"]["height"]) == (320, 240)
    assert result["output"]["size_bytes"] == env.storage.size(f"{job_folder(job_id)}/output.mp4")

    assert_stored_output_matches(env, job_id, clean)

    report = json.loads(b"".join(env.storage.read(f"{job_folder(job_id)}/report.json")))
    assert report["mapping"] == result["mapping"]
    assert report["cut"]["start_s"] == result["cut"]["start_s"]
    # The stored report names the stored files, not the server's folders.
    assert report["inputs"]["dance"]["path"] == "dance"
    assert report["artifacts"] == {name: f for name, f in FILES.items()}
    assert str(env.settings.data_dir) not in json.dumps(report)
    png = b"".join(env.storage.read(f"{job_folder(job_id)}/plot.png"))
    jpeg = b"".join(env.storage.read(f"{job_folder(job_id)}/poster.jpg"))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000
    assert jpeg.startswith(b"\xff\xd8\xff")
    assert jpeg.endswith(b"\xff\xd9")
    assert not env.work(job_id).exists()


def test_progress_writes_are_monotonic_and_throttled(tmp_path: Path, clean: BuiltCase) -> None:
    env = Env(tmp_path, progress_interval_s=0.2)
    writes: list[tuple[float, dict[str, Any]]] = []

    @event.listens_for(env.db.engine, "after_execute")
    def record(conn: Any, clause: Any, multiparams: Any, params: Any, *rest: Any) -> None:
        if isinstance(clause, Update) and clause.table.name == "jobs":
            writes.append((time.monotonic(), clause.compile().params))

    job_id = env.job(clean)
    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"
    env.close()

    progress = [(t, p) for t, p in writes if p.get("stage") is not None]
    stages = [p["stage"] for _, p in progress]
    fractions = [p["progress"] for _, p in progress]
    # Every stage is written, in order, and the last write is the finished row.
    assert list(dict.fromkeys(stages)) == list(STAGES)
    assert progress[-1][1]["status"] == "succeeded"
    assert fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0
    assert 0.9 < fractions[-2] < 1.0
    # Within a stage (and message) at most one write per progress_interval_s (the throttle
    # reads its clock before the write that is timed here: a busy machine moves the two apart
    # by milliseconds, while an unthrottled run writes a few milliseconds apart).
    for (t0, p0), (t1, p1) in itertools.pairwise(progress):
        if (p0["stage"], p0["message"]) == (p1["stage"], p1["message"]):
            assert t1 - t0 >= 0.2 - 0.02, (p0, p1)
    assert all("heartbeat_at" in p for _, p in progress)


def test_mismatched_songs_fail_and_store_nothing(env: Env, mismatch: BuiltCase) -> None:
    job_id = env.job(mismatch)

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "failed"

    job = env.row(job_id)
    assert (job.status, job.error_code, job.attempts) == ("failed", "MUSIC_MISMATCH", 1)
    assert job.error_message
    assert "Traceback" not in job.error_message
    assert job.result is None
    assert job.finished_at is not None
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()


@pytest.mark.parametrize(
    ("options", "offset_shift_ms", "sync_ms"),
    [
        ({"nudge_ms": 30.0}, -30.0, 30.0),  # the reference plays 30 ms later
        ({"trim": False}, 0.0, 0.0),
        ({"mapping": "truth+40ms"}, 40.0, -40.0),  # used as given: no search
    ],
    ids=["nudge", "no-trim", "given-mapping"],
)
def test_options_are_honoured(
    env: Env,
    clean: BuiltCase,
    options: dict[str, Any],
    offset_shift_ms: float,
    sync_ms: float,
) -> None:
    truth = clean.truth
    if options.get("mapping") == "truth+40ms":
        options = {"mapping": {"offset_s": truth.offset + 0.040, "scale": truth.scale}}
    job_id = env.job(clean, options)

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"

    result = env.row(job_id).result
    assert result is not None
    assert abs(result["mapping"]["offset_s"] - (truth.offset + offset_shift_ms / 1000)) <= 0.005
    # A cut the person chose (no trimming) is theirs, and a mapping 40 ms off hears the music
    # start a little late; a found cut of a found mapping is held to the truth.
    searched = options.get("trim") is not False and "mapping" not in options
    assert_stored_output_matches(env, job_id, clean, expected_ms=sync_ms, cut=searched)
    if "mapping" in options:
        assert result["mapping"]["offset_s"] == round(truth.offset + 0.040, 6)
        assert result["candidates"] == []  # assessed, not searched
    else:
        assert len(result["candidates"]) >= 1
    if options.get("trim") is False:
        assert (result["cut"]["start_s"], result["cut"]["end_s"]) == (0.0, truth.duration)
        assert abs(result["output"]["duration_s"] - truth.duration) < 0.05
    elif not searched:
        assert truth.cut is not None
        assert abs(result["cut"]["end_s"] - truth.cut[1]) <= 0.35


def test_a_claimed_job_runs_without_a_second_claim(env: Env, clean: BuiltCase) -> None:
    job_id = env.job(clean, {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}})
    assert claim_job(env.db, job_id, "runner-host:4242")
    assert not claim_job(env.db, job_id, "other-host:1")  # a claim is exclusive

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"

    job = env.row(job_id)
    assert (job.attempts, job.worker) == (1, "runner-host:4242")


def test_cancel_seen_by_a_progress_write_stops_the_run(env: Env, clean: BuiltCase) -> None:
    job_id = env.job(clean)

    # The API cancels the job while it decodes (written in the decode write's transaction).
    @event.listens_for(env.db.engine, "after_execute")
    def cancel(conn: Any, clause: Any, multiparams: Any, params: Any, *rest: Any) -> None:
        if isinstance(clause, Update) and clause.compile().params.get("stage") == "decode":
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="canceled", cancel_requested=True, finished_at=utcnow())
            )

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "canceled"

    job = env.row(job_id)
    assert (job.status, job.stage, job.error_code, job.result) == ("canceled", "decode", None, None)
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()


def test_a_finished_job_is_left_alone(env: Env, clean: BuiltCase) -> None:
    job_id = env.job(clean)
    with env.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="canceled"))

    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "canceled"

    job = env.row(job_id)
    assert (job.status, job.attempts, job.started_at) == ("canceled", 0, None)


def test_transient_storage_errors_are_retried(env: Env, clean: BuiltCase) -> None:
    job_id = env.job(clean, {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}})
    down = StorageUnavailable("connection reset")
    storage = FlakyStorage(env.storage.root, fetch=[down, down], put=[down])

    # Three pauses for the whole run: two for the download, one for the upload.
    status = run_job(
        job_id,
        settings=env.settings,
        db=env.db,
        storage=storage,
        storage_backoff_s=(0.01, 0.01, 0.01),
    )

    assert status == "succeeded"
    assert storage.calls == {"fetch": 4, "put_file": 5}
    assert len(env.stored(job_id)) == 4


def test_a_storage_outage_of_many_seconds_is_waited_out(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(run_module, "_pause", waits.append)
    job_id = env.job(clean, {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}})
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(env.storage.root, fetch=[down] * 6, put=[down] * 2)

    status = run_job(job_id, settings=env.settings, db=env.db, storage=storage)

    assert status == "succeeded"
    assert storage.calls == {"fetch": 8, "put_file": 6}
    # Pauses of 0.5, 1, 2, 4, 8 and 16 s, looked at every second: 31.5 s of waiting for the
    # download, then 1.5 s for the results.
    assert sum(waits) == pytest.approx(31.5 + 1.5)
    assert max(waits) == 1.0
    assert len(env.stored(job_id)) == 4


class OutageClock:
    """A monotonic clock that only storage waits (and the test) move, and a soft time limit of
    ``limit`` seconds on it, requested the way the signal handlers request it."""

    def __init__(self, limit: float) -> None:
        self.now = 1000.0
        self.deadline = self.now + limit
        self.waits: list[float] = []

    def pause(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def stop_requested(self) -> BaseException | None:
        return run_module.JobTimeLimit() if self.now >= self.deadline else None


def test_waiting_for_storage_does_not_count_against_the_soft_time_limit(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 31.5 s of outage against a 20 s limit: the limit comes during the wait, and the run has
    # worked for almost none of it.
    outage = OutageClock(20.0)
    monkeypatch.setattr(run_module, "_pause", outage.pause)
    monkeypatch.setattr(run_module, "_clock", outage.clock)
    job_id = env.job(clean, {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}})
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(env.storage.root, fetch=[down] * 6, put=[])
    waited: list[float] = []

    status = run_job(
        job_id,
        settings=env.settings,
        db=env.db,
        storage=storage,
        stop_requested=outage.stop_requested,
        on_wait=waited.append,
    )

    assert status == "succeeded", env.row(job_id).error_message
    assert sum(outage.waits) == sum(waited) == pytest.approx(31.5)
    assert len(env.stored(job_id)) == 4


def test_work_after_a_storage_wait_still_meets_the_soft_time_limit(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = OutageClock(20.0)
    monkeypatch.setattr(run_module, "_pause", outage.pause)
    monkeypatch.setattr(run_module, "_clock", outage.clock)
    job_id = env.job(clean, {"mapping": {"offset_s": clean.truth.offset, "scale": 1.0}})
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(env.storage.root, fetch=[down] * 6, put=[])
    seen: list[float] = []

    def work_long_after_the_wait() -> BaseException | None:
        if sum(outage.waits) == pytest.approx(31.5) and not seen:
            seen.append(outage.now)
            outage.now += 25.0  # 25 s of work after the outage: more than 20 s in all
        return outage.stop_requested()

    status = run_job(
        job_id,
        settings=env.settings,
        db=env.db,
        storage=storage,
        stop_requested=work_long_after_the_wait,
    )

    job = env.row(job_id)
    assert (status, job.error_code) == ("failed", "TIMEOUT")
    assert env.stored(job_id) == []


def test_the_storage_window_is_the_whole_runs(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two outages, one per download, of 0.5 + 1 + 2 = 3.5 s each, against a window of 5 s:
    # the second download has 1.5 s left and fails after it.
    waits: list[float] = []
    monkeypatch.setattr(run_module, "_pause", waits.append)
    settings = env.settings.model_copy(update={"storage_retry_s": 5.0})
    job_id = env.job(clean)
    down = StorageUnavailable("connection refused")
    storage = FlakyStorage(env.storage.root, fetch=[down, down, down, None, down] * 5, put=[])

    assert run_job(job_id, settings=settings, db=env.db, storage=storage) == "failed"

    assert env.row(job_id).error_code == "STORAGE_UNAVAILABLE"
    assert sum(waits) == pytest.approx(5.0)
    assert storage.calls["fetch"] == 4 + 3


def test_storage_that_stays_away_fails_the_job_after_the_window(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(run_module, "_pause", waits.append)
    job_id = env.job(clean)
    storage = FlakyStorage(
        env.storage.root, fetch=[StorageUnavailable("connection refused")] * 100, put=[]
    )

    assert run_job(job_id, settings=env.settings, db=env.db, storage=storage) == "failed"

    job = env.row(job_id)
    assert (job.error_code, job.message) == (
        "STORAGE_UNAVAILABLE",
        "fetching the dance upload: storage unavailable, trying again",
    )
    assert sum(waits) == pytest.approx(env.settings.storage_retry_s)
    assert storage.calls["fetch"] == len(storage_pauses(env.settings.storage_retry_s)) + 1 == 12


def test_a_run_waiting_for_storage_stops_when_canceled(
    env: Env, clean: BuiltCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = env.job(clean)

    def cancel_while_waiting(seconds: float) -> None:
        with env.db.session() as session:
            session.execute(update(Job).where(Job.id == job_id).values(status="canceled"))

    monkeypatch.setattr(run_module, "_pause", cancel_while_waiting)
    storage = FlakyStorage(
        env.storage.root, fetch=[StorageUnavailable("connection refused")] * 100, put=[]
    )

    assert run_job(job_id, settings=env.settings, db=env.db, storage=storage) == "canceled"
    assert storage.calls["fetch"] == 2  # the second pause's note found the job canceled


@pytest.mark.parametrize(
    ("error", "code", "detail"),
    [
        (StorageUnavailable("bucket unreachable"), "STORAGE_UNAVAILABLE", "storage unavailable"),
        (FileNotFoundError("uploads/x/data"), "FILE_NOT_FOUND", "is gone"),
        (MemoryError(), "RESOURCE_LIMIT", "2048 MB"),
        (RuntimeError("disk on fire\n  at line 2"), "PROCESSING_FAILED", None),
    ],
    ids=["storage-down", "upload-gone", "memory", "unexpected"],
)
def test_failures_are_named(
    env: Env, clean: BuiltCase, error: BaseException, code: str, detail: str | None
) -> None:
    job_id = env.job(clean)
    storage = FlakyStorage(env.storage.root, fetch=[error] * 3, put=[])

    status = run_job(
        job_id, settings=env.settings, db=env.db, storage=storage, storage_backoff_s=(0.01, 0.01)
    )

    job = env.row(job_id)
    assert (status, job.status, job.error_code) == ("failed", "failed", code)
    assert job.error_message is not None
    assert "Traceback" not in job.error_message
    if detail is None:
        assert job.error_message == "RuntimeError: disk on fire at line 2"
    else:
        assert detail in job.error_message
    assert "bucket unreachable" not in job.error_message  # internal causes stay in the log
    # Only a storage outage is retried (three attempts, then the code); the rest fail at once.
    assert storage.calls["fetch"] == (3 if code == "STORAGE_UNAVAILABLE" else 1)
    assert env.stored(job_id) == []
    assert not env.work(job_id).exists()
