"""``run_job`` on audio-first jobs: the frame requests through the row, answered or not."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from beatsync.service.db import Job
from beatsync.service.errors import ServiceError
from beatsync.service.jobs.audiofirst import answer_frames
from beatsync.service.jobs.run import run_job
from beatsync.testkit import BuiltCase, build_case, case_named
from beatsync.testkit.audiofirst import (
    extract_audio,
    frame_thumbnails,
    keyframe_thumbnails,
    video_manifest,
)
from job_env import JobEnv


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> BuiltCase:
    # Black at both ends: the cut's edges rest on the picture.
    return build_case(case_named("small-black-tail"), tmp_path_factory.mktemp("kit"))


@pytest.fixture(scope="module")
def sound(case: BuiltCase, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phone") / "class.m4a"
    extract_audio(case.dance, path)
    return path


def _job(env: JobEnv, case: BuiltCase, sound: Path) -> str:
    manifest = video_manifest(case.dance)
    video = manifest["video"]
    with env.db.session() as session:
        job = Job(
            id=f"job_{case.spec.name}",
            owner_id=env.owner,
            dance_upload_id=env.upload(sound),
            bgm_upload_id=env.upload(case.bgm),
            options={"nudge_ms": 0.0, "trim": True, "audio_first": True},
            cache_key="af",
        )
        job.manifest = manifest
        job.thumbnails = keyframe_thumbnails(case.dance, video["sync"], video["sample_count"])
        job.thumbnail_samples = video["sync"]
        session.add(job)
    return job.id


def _result(env: JobEnv, job_id: str) -> dict[str, Any]:
    row = env.row(job_id)
    assert row.status == "succeeded", (row.error_code, row.error_message)
    assert row.frames_request is None
    assert row.result is not None
    return row.result


def test_frames_answered_through_the_row_cut_at_the_picture(
    tmp_path: Path, case: BuiltCase, sound: Path
) -> None:
    env = JobEnv(tmp_path, frames_wait_s=60.0)
    job_id = _job(env, case, sound)
    answered: list[int] = []
    stop = threading.Event()

    def phone() -> None:
        while not stop.is_set():
            with env.db.session() as session:
                job = session.get(Job, job_id)
                asked = job.frames_request if job is not None else None
                if job is not None and asked:
                    pictures = frame_thumbnails(case.dance, asked["samples"])
                    answer_frames(session, job, asked["id"], base64.b64encode(pictures).decode())
                    answered.extend(asked["samples"])
            time.sleep(0.02)

    helper = threading.Thread(target=phone, daemon=True)
    helper.start()
    try:
        assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == (
            "succeeded"
        )
    finally:
        stop.set()
        helper.join(timeout=10)
    result = _result(env, job_id)
    assert answered
    truth = case.truth
    # The picture turns black at picture_end; the cut ends on that frame, not a frame later.
    assert result["cut"]["end_s"] == pytest.approx(truth.picture_end, abs=1e-6)
    assert set(result["files"]) == {"audio", "report", "plot"}
    report = json.loads(env.storage.root.joinpath(result["files"]["report"]).read_text())
    assert report["cut"]["end_reason"] == "picture"
    assert report["assembly"] == result["assembly"]
    with env.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        # Every frame the phone sent is kept for the job's variants.
        assert set(answered) <= set(job.thumbnail_samples or [])
    env.close()


def test_a_client_that_never_answers_gets_a_cut_without_the_picture(
    tmp_path: Path, case: BuiltCase, sound: Path
) -> None:
    env = JobEnv(tmp_path, frames_wait_s=0.3)
    job_id = _job(env, case, sound)
    assert run_job(job_id, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"
    result = _result(env, job_id)
    report = json.loads(env.storage.root.joinpath(result["files"]["report"]).read_text())
    assert report["cut"]["end_reason"] != "picture"
    assert result["cut"]["end_s"] > case.truth.picture_end + 0.5
    with env.db.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        with pytest.raises(ServiceError) as late:
            answer_frames(session, job, "anything", "")
        assert late.value.code == "FRAMES_NOT_REQUESTED"
    env.close()


def _variant(env: JobEnv, parent_id: str, name: str, nudge_ms: float) -> str:
    """A nudge of ``parent_id`` as ``render_variant`` makes it."""
    with env.db.session() as session:
        parent = session.get(Job, parent_id)
        assert parent is not None
        assert parent.result is not None
        used = parent.result["mapping"]
        job = Job(
            id=name,
            owner_id=env.owner,
            dance_upload_id=parent.dance_upload_id,
            bgm_upload_id=parent.bgm_upload_id,
            parent_id=parent_id,
            options={
                "nudge_ms": nudge_ms,
                "trim": True,
                "audio_first": True,
                "mapping": {"offset_s": used["offset_s"], "scale": used["scale"]},
                "retrack_of": parent_id,
            },
            cache_key=name,
        )
        job.manifest = parent.manifest
        job.thumbnails, job.thumbnail_samples = parent.thumbnails, parent.thumbnail_samples
        session.add(job)
    return name


def _stages(env: JobEnv, result: dict[str, Any]) -> list[str]:
    report = json.loads(env.storage.root.joinpath(result["files"]["report"]).read_text())
    return [t["stage"] for t in report["timings"]["stages"]]


def test_a_nudge_makes_only_the_track_and_runs_whole_when_its_answer_is_gone(
    tmp_path: Path, case: BuiltCase, sound: Path
) -> None:
    env = JobEnv(tmp_path, frames_wait_s=0.3)
    parent_id = _job(env, case, sound)
    assert run_job(parent_id, settings=env.settings, db=env.db, storage=env.storage) == (
        "succeeded"
    )
    parent = _result(env, parent_id)
    assert parent["copy_run"]["first_sample"] == parent["assembly"]["first_sample"]

    nudge = _variant(env, parent_id, "job_nudge", 20.0)
    assert run_job(nudge, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"
    nudged = _result(env, nudge)
    # No search, no assessment, no cut: the parent's cut and samples, the parent's plot.
    assert _stages(env, nudged) == ["probe", "decode", "render"]
    assert nudged["copy_run"] == parent["copy_run"]
    assert nudged["cut"] == parent["cut"]
    assert {k: nudged["assembly"][k] for k in ("first_sample", "end_sample")} == {
        k: parent["assembly"][k] for k in ("first_sample", "end_sample")
    }
    assert nudged["mapping"]["offset_s"] == pytest.approx(
        parent["mapping"]["offset_s"] - 0.020, abs=1e-6
    )
    root = env.storage.root
    assert (
        root.joinpath(nudged["files"]["plot"]).read_bytes()
        == root.joinpath(parent["files"]["plot"]).read_bytes()
    )
    assert (
        root.joinpath(nudged["files"]["audio"]).read_bytes()
        != root.joinpath(parent["files"]["audio"]).read_bytes()
    )

    # The nudged answer's files are gone (expired, say): its nudge runs as a whole job.
    root.joinpath(nudged["files"]["report"]).unlink()
    again = _variant(env, nudge, "job_nudge_again", -10.0)
    assert run_job(again, settings=env.settings, db=env.db, storage=env.storage) == "succeeded"
    whole = _result(env, again)
    assert "align" in _stages(env, whole)
    assert whole["copy_run"] is not None
    env.close()
