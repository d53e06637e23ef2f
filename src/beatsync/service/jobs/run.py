"""``run_job(job_id)``: one job from its row to its stored results, the same in every mode.

The job row is the truth. :func:`run_job` fetches both uploads into a private work folder, runs
:func:`beatsync.engine.sync` with a progress callback that writes the row, stores the four
results under ``jobs/{id}/`` and finishes the row. Every write after the claim is conditional
(``WHERE status = 'running'``), so a job that was canceled meanwhile is never brought back: the
next progress write finds it and stops the run, and a finished run discards what it stored.

How a run ends::

    succeeded                    result, stage done, progress 1, expires_at
    failed  <engine code>        BeatSyncError (bad media never retries)
            RESOURCE_LIMIT       MemoryError (the process's memory limit)
            TIMEOUT              JobTimeLimit (the soft time limit, raised inside the run)
            STORAGE_UNAVAILABLE  StorageUnavailable for longer than ``storage_retry_s``
                                 (the run waits, trying again with backoff: :mod:`.backoff`)
            FILE_NOT_FOUND       an upload that is gone
            VALIDATION_ERROR     options the engine cannot take
            PROCESSING_FAILED    anything else (summarised in the row, logged in full)
    canceled                     the row said so; nothing is kept
    (row untouched)              JobInterrupted: the process is being stopped, recovery decides

With ``holder`` (the distributed mode), every write also requires the row to still name that
worker: a run whose job was given to another worker (its heartbeat went stale) can neither
report progress nor finish the job, and leaves the other run's files alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Table, select, update

from beatsync.engine import Mapping, Piece, RenderParams, SyncOptions, SyncResult, sync
from beatsync.engine.audiofirst import AudioFirstResult, CopyRun, sync_audio_first
from beatsync.engine.cut.clientframes import split_thumbnails
from beatsync.engine.errors import BeatSyncError
from beatsync.engine.media.manifest import ManifestLimits, parse_manifest
from beatsync.engine.output.report import report_dict
from beatsync.engine.retrack import retrack, retracked_report
from beatsync.service.checkup import check_fetched
from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus, Upload, UploadStatus, job_database
from beatsync.service.db.models import utcnow
from beatsync.service.errors import ServiceError
from beatsync.service.layout import job_folder
from beatsync.service.metrics import record_job_end
from beatsync.service.storage import Storage, StorageUnavailable, open_storage
from beatsync.service.stored import data_key
from beatsync.service.wechat import notify_job_end

from .audiofirst import FrameWaiter
from .backoff import StorageWaits, storage_pauses

__all__ = [
    "ARTIFACTS",
    "AUDIO_FIRST_ARTIFACTS",
    "JobInterrupted",
    "JobTimeLimit",
    "claim_job",
    "fail_job",
    "run_job",
    "sync_options",
    "worker_name",
]

log = logging.getLogger(__name__)

# Result name in the row's ``files`` → file name under ``jobs/{id}/``.
ARTIFACTS = {
    "video": "output.mp4",
    "report": "report.json",
    "plot": "plot.png",
    "poster": "poster.jpg",
}
# An audio-first job writes the clean audio track instead of a video, and no poster.
AUDIO_FIRST_ARTIFACTS = {
    "audio": "audio.m4a",
    "report": "report.json",
    "plot": "plot.png",
}

_JOBS = cast(Table, Job.__table__)
_MAX_DETAIL = 500
_pause = time.sleep  # the one place a run waits (for storage); tests count the waits here
_clock = time.monotonic  # what the soft time limit is measured against
_T = TypeVar("_T")


class JobInterrupted(BaseException):
    """The process running the job is being stopped: unwind, clean up, leave the row alone.

    A ``BaseException`` so that no ``except Exception`` on the way turns it into a failure.
    """


class JobTimeLimit(BaseException):
    """The job's soft time limit has passed; raised inside the run, which then fails ``TIMEOUT``."""


class _Canceled(BaseException):
    """A conditional write found the job no longer running: stop the run where it is."""


class _ClaimLostError(Exception):
    """Another worker claimed the queued job first."""


class _RunError(Exception):
    """A failure the service names itself (not the engine's)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


JOB_NICENESS = 19
"""Job processes run this much nicer than the API, so status reads stay fast under load."""


def worker_name(pid: int | None = None) -> str:
    """``host:pid`` of the process holding a job (this one by default)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def claim_job(db: Database, job_id: str, worker: str) -> bool:
    """Take the queued job ``job_id`` for ``worker``; False when someone else took it first."""
    now = utcnow()
    with db.engine.begin() as conn:
        claimed = conn.execute(
            update(_JOBS)
            .where(_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.RUNNING.value,
                attempts=_JOBS.c.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                finished_at=None,
                worker=worker,
                stage=None,
                progress=0.0,
                message=None,
                error_code=None,
                error_message=None,
                frames_request=None,
            )
        )
    return claimed.rowcount == 1


def fail_job(
    db: Database, job_id: str, code: str, detail: str, *, holder: str | None = None
) -> bool:
    """Mark the running job ``job_id`` failed with ``code``; False when it was not running (or,
    with ``holder``, when another worker holds it)."""
    now = utcnow()
    with db.engine.begin() as conn:
        done = conn.execute(
            update(_JOBS)
            .where(*_held(job_id, holder))
            .values(
                status=JobStatus.FAILED.value,
                error_code=code,
                error_message=detail[:_MAX_DETAIL],
                finished_at=now,
                heartbeat_at=now,
                frames_request=None,
            )
        )
        if done.rowcount == 1:
            record_job_end(conn, job_id)
    if done.rowcount == 1:
        log.info("job %s failed: %s: %s", job_id, code, detail, extra={"job_id": job_id})
        return True
    return False


def sync_options(options: dict[str, Any]) -> SyncOptions:
    """The engine's options from a job's ``options`` column (already validated by the API).

    Raises ``ValueError``, ``TypeError`` or ``KeyError`` for a column that does not fit.
    """
    given = options.get("mapping")
    mapping = (
        None
        if given is None
        else Mapping(
            offset=float(given["offset_s"]),
            scale=float(given.get("scale", 1.0)),
            pitch_kept=bool(given.get("pitch_kept", False)),
        )
    )
    # An edit's pieces, kept with their seams when an earlier answer is rendered again.
    pieces = tuple(
        Piece(
            float(p["start_s"]),
            float(p["end_s"]),
            Mapping(offset=float(p["offset_s"]), scale=float(p.get("scale", 1.0))),
        )
        for p in ((given or {}).get("pieces") or ())
    )
    max_height = options.get("max_height")
    return SyncOptions(
        offset=_float_or_none(options.get("offset_s")),
        mapping=mapping,
        pieces=pieces if len(pieces) > 1 else None,
        nudge_ms=float(options.get("nudge_ms") or 0.0),
        start=_float_or_none(options.get("start_s")),
        end=_float_or_none(options.get("end_s")),
        trim=bool(options.get("trim", True)),
        render=RenderParams(
            reencode=bool(options.get("reencode", False)),
            max_height=None if max_height is None else int(max_height),
            live_mix_db=_float_or_none(options.get("mix_live_db")),
        ),
    )


def run_job(
    job_id: str,
    *,
    settings: Settings,
    db: Database | None = None,
    storage: Storage | None = None,
    storage_backoff_s: Sequence[float] | None = None,
    stop_requested: Callable[[], BaseException | None] | None = None,
    holder: str | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> str:
    """Run the job ``job_id`` to its end and return its final status.

    The row must be ``running`` (claimed by a dispatcher) or ``queued`` (claimed here). A job
    that is already finished is left as it is and its status returned. ``storage_backoff_s``
    are the pauses between attempts of a storage operation that found the backend unavailable
    (by default :func:`~.backoff.storage_pauses` of ``settings.storage_retry_s``).

    ``stop_requested`` is asked at every progress report and before every storage operation;
    the exception it returns (:class:`JobInterrupted`, :class:`JobTimeLimit`) is raised there.
    The soft time limit measures work: a run that waited for storage stops that much later
    (:class:`~.backoff.StorageWaits`), and ``on_wait(seconds)`` tells whoever enforces the hard
    time limit to move it alike. The waiting of a whole run is bounded by the sum of
    ``storage_backoff_s``.
    Signal handlers set what it returns rather than raising themselves: an exception raised
    from a handler lands wherever the main thread happens to be, and inside PyAV it can be lost.

    ``holder`` (``host:pid``) makes every write conditional on the row naming that worker; a
    row that names another one is not run.
    """
    database = db or job_database(
        settings.database, prepared_statements=settings.db_prepared_statements
    )
    try:
        work = settings.spool_root / "work" / job_id
        run = _Run(
            job_id,
            settings=settings,
            db=database,
            storage=storage or open_storage(settings),
            work=work,
            backoff=tuple(
                storage_pauses(settings.storage_retry_s)
                if storage_backoff_s is None
                else storage_backoff_s
            ),
            stop_requested=stop_requested,
            holder=holder,
            on_wait=on_wait,
        )
        try:
            status = run.run()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if settings.wechat_notify_template_id and status in _ENDED:
            _notify(settings, database, job_id, status)
        return status
    finally:
        if db is None:
            database.dispose()


_ENDED = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value)


def _notify(settings: Settings, db: Database, job_id: str, status: str) -> None:
    """A job-end notice to its owner when that is a WeChat user."""
    with db.engine.connect() as conn:
        owner = conn.execute(select(_JOBS.c.owner_id).where(_JOBS.c.id == job_id)).scalar()
    if owner is not None:
        notify_job_end(settings, str(owner), job_id, status)


class _Run:
    def __init__(
        self,
        job_id: str,
        *,
        settings: Settings,
        db: Database,
        storage: Storage,
        work: Path,
        backoff: tuple[float, ...],
        stop_requested: Callable[[], BaseException | None] | None,
        holder: str | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.settings = settings
        self.db = db
        self.storage = storage
        self.work = work
        self.backoff = backoff
        self.stop_requested = stop_requested
        self.holder = holder
        self.waits = StorageWaits(sum(backoff), on_wait=on_wait)
        self.prefix = job_folder(job_id)
        self._stage: str | None = None
        self._message: str | None = None
        self._last_write = 0.0
        self._last_fraction = 0.0
        self.artifacts = ARTIFACTS
        self.assembly: dict[str, Any] | None = None
        self.copy_run: dict[str, Any] | None = None

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> str:
        try:
            job = self._begin()
        except _ClaimLostError:
            return self._current_status()
        if job.status != JobStatus.RUNNING.value:
            return job.status
        began = time.monotonic()
        log.info(
            "job %s running (attempt %d)", self.job_id, job.attempts, extra={"job_id": self.job_id}
        )
        try:
            result = self._work(job)
            return self._succeed(result, time.monotonic() - began)
        except _Canceled:
            return self._canceled()
        except JobInterrupted:
            self._discard()
            log.debug("job %s interrupted", self.job_id, extra={"job_id": self.job_id})
            raise
        except JobTimeLimit:
            limit = self.settings.job_soft_time_limit_s
            return self._fail("TIMEOUT", f"the job ran longer than {limit:g} s")
        except _RunError as exc:
            return self._fail(exc.code, exc.detail)
        except MemoryError as exc:
            return self._fail("RESOURCE_LIMIT", _memory_detail(self.settings, exc))
        except BeatSyncError as exc:
            if _in_chain(exc, MemoryError):
                return self._fail("RESOURCE_LIMIT", _memory_detail(self.settings, exc))
            return self._fail(exc.code, exc.message)
        except Exception as exc:
            log.exception("job %s broke", self.job_id, extra={"job_id": self.job_id})
            return self._fail("PROCESSING_FAILED", _summary(exc))

    def _begin(self) -> Job:
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            if job is None:
                raise LookupError(f"no job {self.job_id}")
            status = job.status
        worker = self.holder or worker_name()
        if status == JobStatus.QUEUED.value and not claim_job(self.db, self.job_id, worker):
            raise _ClaimLostError
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            assert job is not None
        running = job.status == JobStatus.RUNNING.value
        if running and self.holder is not None and job.worker != self.holder:
            raise _ClaimLostError
        return job

    def _work(self, job: Job) -> SyncResult | dict[str, Any]:
        try:
            options = sync_options(job.options or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise _RunError("VALIDATION_ERROR", f"the job's options cannot be used: {exc}") from exc
        shutil.rmtree(self.work, ignore_errors=True)  # a crashed attempt's leftovers
        self.work.mkdir(parents=True)
        audio_first = bool((job.options or {}).get("audio_first"))
        # An audio-first job's dance upload is the sound alone (a picture in it is not read).
        dance = self._fetch(job.dance_upload_id, "dance", video=not audio_first)
        bgm = self._fetch(job.bgm_upload_id, "bgm")
        if audio_first:
            parent = (job.options or {}).get("retrack_of")
            nudged = self._work_retrack(str(parent), dance, bgm, options) if parent else None
            if nudged is not None:
                return nudged
            return self._work_audio_first(dance, bgm, options)
        result = sync(
            dance,
            bgm,
            self.work / ARTIFACTS["video"],
            options=options,
            on_progress=self._progress,
            report=self.work / ARTIFACTS["report"],
            plot=self.work / ARTIFACTS["plot"],
            poster=self.work / ARTIFACTS["poster"],
        )
        # Storing may take a while on a remote store; say so, and stop here if canceled.
        self._write_progress("render", max(self._last_fraction, 0.97), "storing the results")
        return result

    def _work_audio_first(self, audio: Path, bgm: Path, options: SyncOptions) -> SyncResult:
        """The run of an audio-first job: the clean audio track and the samples to copy."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(_JOBS.c.manifest, _JOBS.c.thumbnails, _JOBS.c.thumbnail_samples).where(
                    _JOBS.c.id == self.job_id
                )
            ).one()
        limits = ManifestLimits(
            max_samples=self.settings.max_manifest_samples,
            max_duration=self.settings.max_duration_s,
        )
        manifest = parse_manifest(row.manifest, limits=limits)
        keyframes = split_thumbnails(row.thumbnails or b"", row.thumbnail_samples or [])
        waiter = FrameWaiter(
            self.db,
            self.job_id,
            held=_held(self.job_id, self.holder),
            beat=lambda: self._progress(
                "trim", self._last_fraction, "waiting for the client's frames"
            ),
            wait_s=self.settings.frames_wait_s,
        )
        self.artifacts = AUDIO_FIRST_ARTIFACTS
        done: AudioFirstResult = sync_audio_first(
            audio,
            bgm,
            manifest,
            self.work / AUDIO_FIRST_ARTIFACTS["audio"],
            keyframes=keyframes,
            fetch=waiter,
            options=options,
            on_progress=self._progress,
            report=self.work / AUDIO_FIRST_ARTIFACTS["report"],
            plot=self.work / AUDIO_FIRST_ARTIFACTS["plot"],
        )
        self.copy_run = dataclasses.asdict(done.run)
        out = done.sync.output
        self.assembly = {
            "first_sample": done.run.first_sample,
            "end_sample": done.run.end_sample,
            "excluded_samples": list(done.run.excluded),
            "video_start": round(out.video_start, 6),
            "video_end": round(out.video_end, 6),
            "first_frame_time": round(out.first_frame_time, 6),
            "audio": {
                "codec": "aac",
                "sample_rate": out.sample_rate,
                "channels": out.channels,
                "duration": round(done.audio_duration, 6),
            },
        }
        self._write_progress("render", max(self._last_fraction, 0.97), "storing the results")
        return done.sync

    def _work_retrack(
        self, parent_id: str, audio: Path, bgm: Path, options: SyncOptions
    ) -> dict[str, Any] | None:
        """A nudge of an audio-first answer: its cut and copied samples kept, the track made
        again (:func:`~beatsync.engine.retrack.retrack`); the report and plot are the parent's
        with the new mapping. None when that answer is gone (deleted, expired): the nudge then
        runs as a whole job with its mapping."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(_JOBS.c.manifest, _JOBS.c.result).where(_JOBS.c.id == parent_id)
            ).one_or_none()
        kept = (row.result or {}).get("copy_run") if row is not None else None
        files = (row.result or {}).get("files") or {} if row is not None else {}
        if row is None or not kept or not files.get("report"):
            log.info(
                "job %s: job %s is gone, the nudge runs whole",
                self.job_id,
                parent_id,
                extra={"job_id": self.job_id},
            )
            return None
        self.artifacts = AUDIO_FIRST_ARTIFACTS
        try:
            # The report is read, not fetched: a fetched file may be a link to the stored one,
            # and this run writes its own report where it lands.
            previous = json.loads(
                self._retry(
                    f"reading the report of job {parent_id}",
                    lambda: b"".join(self.storage.read(files["report"])),
                )
            )
            if files.get("plot"):
                self._retry(
                    f"fetching the plot of job {parent_id}",
                    partial(self.storage.fetch, files["plot"], self.work / ARTIFACTS["plot"]),
                )
            else:
                self.artifacts = {k: v for k, v in AUDIO_FIRST_ARTIFACTS.items() if k != "plot"}
        except FileNotFoundError:
            log.info(
                "job %s: job %s's files are gone, the nudge runs whole",
                self.job_id,
                parent_id,
                extra={"job_id": self.job_id},
            )
            self.work.joinpath(ARTIFACTS["plot"]).unlink(missing_ok=True)
            return None
        limits = ManifestLimits(
            max_samples=self.settings.max_manifest_samples,
            max_duration=self.settings.max_duration_s,
        )
        run = CopyRun(**{**kept, "excluded": tuple(kept["excluded"])})
        assert options.mapping is not None
        mapping = options.mapping.nudged(options.nudge_ms)
        pieces = tuple(p.nudged(options.nudge_ms) for p in options.pieces or ())
        self._progress("render", 0.5, "writing the audio track")
        done = retrack(
            audio,
            bgm,
            parse_manifest(row.manifest, limits=limits),
            self.work / AUDIO_FIRST_ARTIFACTS["audio"],
            run=run,
            mapping=mapping,
            pieces=pieces or None,
            params=options.render,
        )
        self.copy_run = dict(kept)
        self.assembly = {
            **(previous.get("assembly") or {}),
            "audio": {
                "codec": "aac",
                "sample_rate": done.output.sample_rate,
                "channels": done.output.channels,
                "duration": round(done.audio_duration, 6),
            },
        }
        self._write_progress("render", max(self._last_fraction, 0.97), "storing the results")
        report = retracked_report(previous, done, mapping=mapping, pieces=pieces or None)
        report["output"]["path"] = AUDIO_FIRST_ARTIFACTS["audio"]
        report["assembly"] = self.assembly
        report["artifacts"] = dict(self.artifacts)
        return report

    def _fetch(self, upload_id: str, role: str, *, video: bool = False) -> Path:
        """The upload's file in the work folder; a direct upload is checked here, where its
        bytes are (:mod:`beatsync.service.checkup`)."""
        path = self._fetch_file(upload_id, role)
        try:
            media = check_fetched(self.db, self.storage, self.settings, upload_id, path)
        except ServiceError as exc:
            raise _RunError(exc.code, f"the {role} upload was refused: {exc.detail}") from exc
        if video and media.get("has_video") is False:
            raise _RunError("NO_VIDEO_TRACK", f"the {role} upload has no video track")
        return path

    def _fetch_file(self, upload_id: str, role: str) -> Path:
        with self.db.session() as session:
            upload = session.get(Upload, upload_id)
            if upload is None or upload.status != UploadStatus.READY.value:
                raise _RunError("FILE_NOT_FOUND", f"the {role} upload {upload_id} is not available")
            key = upload.storage_key or data_key(upload_id)
            suffix = _safe_suffix(upload.filename)
        dest = self.work / f"{role}{suffix}"
        try:
            return self._retry(
                f"fetching the {role} upload", partial(self.storage.fetch, key, dest)
            )
        except FileNotFoundError as exc:
            raise _RunError("FILE_NOT_FOUND", f"the {role} upload {upload_id} is gone") from exc

    # -- progress --------------------------------------------------------------------------

    def _check_stop(self) -> None:
        stop = self.stop_requested() if self.stop_requested is not None else None
        if stop is None:
            return
        if isinstance(stop, JobTimeLimit) and not self.waits.limit_stands(_clock()):
            return  # the limit measures work: time spent waiting for storage moves it later
        raise stop

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        self._check_stop()
        if stage == "done":
            return  # written with the final status, once the results are stored
        # A new stage (or message) is written at once, more of the same at most every interval.
        same = (stage, message) == (self._stage, self._message)
        if same and time.monotonic() - self._last_write < self.settings.progress_interval_s:
            return
        self._write_progress(stage, fraction, message)

    def _write_progress(self, stage: str, fraction: float, message: str) -> None:
        self._stage, self._message, self._last_write = stage, message, time.monotonic()
        self._last_fraction = fraction
        with self.db.engine.begin() as conn:
            written = conn.execute(
                update(_JOBS)
                .where(*_held(self.job_id, self.holder))
                .values(stage=stage, progress=fraction, message=message, heartbeat_at=utcnow())
            )
        if written.rowcount != 1:
            raise _Canceled

    # -- endings ---------------------------------------------------------------------------

    def _succeed(self, result: SyncResult | dict[str, Any], seconds: float) -> str:
        report = self._public_report(result) if isinstance(result, SyncResult) else result
        self.work.joinpath(ARTIFACTS["report"]).write_text(
            json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        files: dict[str, str] = {}
        try:
            for name, filename in self.artifacts.items():
                key = f"{self.prefix}/{filename}"
                self._retry(
                    f"storing {filename}", partial(self.storage.put_file, key, self.work / filename)
                )
                files[name] = key
        except BaseException:
            self._discard()
            raise
        # Scratch space goes before the row says the job is over: a client that sees the end
        # sees nothing left behind.
        shutil.rmtree(self.work, ignore_errors=True)
        now = utcnow()
        with self.db.engine.begin() as conn:
            done = conn.execute(
                update(_JOBS)
                .where(*_held(self.job_id, self.holder))
                .values(
                    status=JobStatus.SUCCEEDED.value,
                    stage="done",
                    progress=1.0,
                    message="done",
                    result=_result_row(report, files, self.assembly, self.copy_run),
                    frames_request=None,
                    finished_at=now,
                    heartbeat_at=now,
                    expires_at=now + timedelta(hours=self.settings.result_ttl_h),
                )
            )
            if done.rowcount == 1:
                record_job_end(conn, self.job_id)
        if done.rowcount != 1:
            return self._canceled()
        log.info(
            "job %s succeeded in %.1f s: offset %.4f s, confidence %.2f",
            self.job_id,
            seconds,
            report["mapping"]["offset_s"],
            report["alignment"]["confidence"],
            extra={"job_id": self.job_id},
        )
        return JobStatus.SUCCEEDED.value

    def _fail(self, code: str, detail: str) -> str:
        self._discard()
        shutil.rmtree(self.work, ignore_errors=True)
        if fail_job(self.db, self.job_id, code, detail, holder=self.holder):
            return JobStatus.FAILED.value
        return self._current_status()

    def _canceled(self) -> str:
        self._discard()
        status = self._current_status()
        log.debug("job %s stopped: it is %s", self.job_id, status, extra={"job_id": self.job_id})
        return status

    def _discard(self) -> None:
        """Remove whatever this run stored; a run that did not succeed keeps nothing.

        The files are the job's, not the run's: when another run has since finished the job, or
        (with ``holder``) holds it now, they are that run's and stay.
        """
        try:
            with self.db.engine.connect() as conn:
                row = conn.execute(
                    select(_JOBS.c.status, _JOBS.c.worker).where(_JOBS.c.id == self.job_id)
                ).first()
            if row is not None and (
                row.status == JobStatus.SUCCEEDED.value
                or (
                    self.holder is not None
                    and row.status == JobStatus.RUNNING.value
                    and row.worker != self.holder
                )
            ):
                return
            self.storage.delete_prefix(self.prefix)
        except Exception:
            log.warning(
                "job %s: could not remove its stored files",
                self.job_id,
                exc_info=True,
                extra={"job_id": self.job_id},
            )

    def _current_status(self) -> str:
        with self.db.engine.connect() as conn:
            status = conn.execute(select(_JOBS.c.status).where(_JOBS.c.id == self.job_id)).scalar()
        return str(status) if status is not None else JobStatus.CANCELED.value

    # -- helpers ---------------------------------------------------------------------------

    def _retry(self, what: str, operation: Callable[[], _T]) -> _T:
        for pause in (*self.backoff, None):
            self._check_stop()
            try:
                return operation()
            except StorageUnavailable as exc:
                # The window is the whole run's: hard time limits allow for that much waiting.
                pause = None if pause is None else min(pause, self.waits.left())
                if not pause:
                    # The cause names internal endpoints: the log has it, the row does not.
                    log.error("job %s: %s: storage unavailable: %s", self.job_id, what, exc)
                    raise _RunError("STORAGE_UNAVAILABLE", f"{what}: storage unavailable") from exc
                log.warning(
                    "job %s: %s: storage unavailable (%s), again in %g s",
                    self.job_id,
                    what,
                    exc,
                    pause,
                    extra={"job_id": self.job_id},
                )
                self._wait(pause, f"{what}: storage unavailable, trying again")
        raise AssertionError("unreachable")

    def _wait(self, seconds: float, message: str) -> None:
        """Pause ``seconds``, saying why in the row, and stop early when asked to."""
        with self.db.engine.begin() as conn:
            written = conn.execute(
                update(_JOBS)
                .where(*_held(self.job_id, self.holder))
                .values(message=message, heartbeat_at=utcnow())
            )
        if written.rowcount != 1:
            raise _Canceled
        self._message = message  # the next progress report replaces it
        left = seconds
        while left > 0:
            # A signal handler only sets what stop_requested returns: look at it every second.
            step = min(left, 1.0)
            _pause(step)
            self.waits.add(step)
            left -= step
            self._check_stop()

    def _public_report(self, result: SyncResult) -> dict[str, Any]:
        """The engine's report with this server's paths replaced by the stored files' names."""
        report = report_dict(result)
        report["inputs"]["dance"]["path"] = "dance"
        report["inputs"]["bgm"]["path"] = "bgm"
        if self.assembly is not None:
            report["output"]["path"] = AUDIO_FIRST_ARTIFACTS["audio"]
            report["assembly"] = self.assembly
        else:
            report["output"]["path"] = ARTIFACTS["video"]
        report["artifacts"] = dict(self.artifacts)
        return report


def _result_row(
    report: dict[str, Any],
    files: dict[str, str],
    assembly: dict[str, Any] | None = None,
    copy_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The row's ``result``: what the API shows, with storage keys for the files (and for an
    audio-first job, how its client assembles the output, and the copied samples' times that a
    nudge keeps)."""
    alignment = report["alignment"]
    output = report["output"]
    return {
        "confidence": alignment["confidence"],
        "mapping": report["mapping"],
        "pieces": [
            {k: p[k] for k in ("start_s", "end_s", "offset_s", "scale", "drift_ppm")}
            for p in report["pieces"]
        ],
        "candidates": [
            {
                "index": index,
                "offset_s": c["offset_s"],
                "scale": c["scale"],
                "drift_ppm": c["drift_ppm"],
                "pitch_kept": c.get("pitch_kept", False),
                "confidence": c["confidence"],
                "support": c["support"],
            }
            for index, c in enumerate(alignment["candidates"])
        ],
        "cut": {k: report["cut"][k] for k in ("start_s", "end_s", "duration_s")},
        "music": report["music"],
        "output": {k: output[k] for k in ("duration_s", "size_bytes", "width", "height")},
        "timings": report["timings"],
        "files": files,
        "assembly": assembly,
        "copy_run": copy_run,
    }


def _held(job_id: str, holder: str | None) -> tuple[Any, ...]:
    """The conditions of a write to a running job: running, and held by ``holder`` if given."""
    running = (_JOBS.c.id == job_id, _JOBS.c.status == JobStatus.RUNNING.value)
    return running if holder is None else (*running, _JOBS.c.worker == holder)


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _safe_suffix(filename: str | None) -> str:
    """The upload's extension when it is plain (helps the demuxer guess), else none."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else ""


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _memory_detail(settings: Settings, exc: BaseException) -> str:
    return f"the job needed more than {settings.job_memory_limit_mb} MB of memory ({exc})"


def _summary(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:_MAX_DETAIL] if text else type(exc).__name__
