"""A job's life as clients drive it: create, read, list, cancel, delete, retry, render a variant.

The job row is the truth. A job is committed as ``queued`` before its id is handed to the
dispatcher, and marked ``canceled`` before the dispatcher hears of the cancel, so whatever runs
it always finds the row already saying what it should do. Creating a job first looks for a
finished twin (same inputs by content, same options, same engine version) and answers with it
instead of computing the same video twice; quotas apply only to work that will really be queued.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from beatsync.service.codes import CODES
from beatsync.service.config import Settings
from beatsync.service.db.models import Job, JobStatus, Upload, UploadStatus, utcnow
from beatsync.service.errors import ServiceError, plain_errors
from beatsync.service.layout import job_folder, new_dated_id
from beatsync.service.metrics import record_job_end
from beatsync.service.storage import Storage

from .audiofirst import AUDIO_FIRST_KEYS, AudioFirstInput, answer_frames, check_audio_first
from .dispatch import Dispatcher, DispatchUnavailable
from .options import JobOptions, RenderRequest, cache_key, options_dict

__all__ = [
    "JobPage",
    "cancel_job",
    "create_job",
    "delete_job",
    "get_job",
    "list_jobs",
    "render_variant",
    "retry_job",
    "send_frames",
]

logger = logging.getLogger(__name__)

_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_RETRYABLE = (JobStatus.FAILED.value, JobStatus.CANCELED.value)
_BUSY_RETRY_AFTER_S = 30
# How far up a chain of variants to look for the candidates of the search they came from.
_MAX_ANCESTRY = 32


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[Job]
    next_cursor: str | None


# ---------------------------------------------------------------- reading


def get_job(session: Session, owner_id: str, job_id: str) -> Job:
    """The job ``job_id`` of ``owner_id``; another owner's job is as absent as a missing one."""
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise ServiceError("NOT_FOUND", f"no job {job_id}")
    return job


def list_jobs(session: Session, owner_id: str, *, limit: int, cursor: str | None) -> JobPage:
    """The owner's jobs, newest first, ``limit`` at a time after ``cursor``."""
    query = select(Job).where(Job.owner_id == owner_id)
    if cursor:
        created, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    items = rows[:limit]
    return JobPage(items, _encode_cursor(items[-1]) if more else None)


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(job_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ServiceError("VALIDATION_ERROR", "cursor: not a cursor this API gave") from exc
    return when, job_id


# ---------------------------------------------------------------- creating


def create_job(
    session: Session,
    *,
    settings: Settings,
    storage: Storage,
    dispatcher: Dispatcher,
    owner_id: str,
    dance_upload_id: str,
    bgm_upload_id: str,
    options: JobOptions,
    client_address: str | None = None,
    video_manifest: dict[str, Any] | None = None,
    keyframes: str | None = None,
) -> tuple[Job, bool]:
    """A queued job, or the owner's finished twin from the result cache; whether it is new.

    ``client_address`` is where the request came from: each address has a share of the queue.
    With ``video_manifest`` the job is audio-first: the dance upload is the class video's sound,
    ``keyframes`` (base64) the thumbnails of its keyframes (see :mod:`.audiofirst`).
    """
    stored = options_dict(options)
    inputs = None
    if video_manifest is not None:
        dance = _usable_upload(
            session, storage, owner_id, dance_upload_id, role="dance", audio_first=True
        )
        inputs = check_audio_first(video_manifest, keyframes, dance, settings, stored)
        stored.update(inputs.options())
    elif keyframes is not None:
        raise ServiceError("VALIDATION_ERROR", "thumbnails: only with a video_manifest")
    return _enqueue(
        session,
        settings=settings,
        storage=storage,
        dispatcher=dispatcher,
        owner_id=owner_id,
        dance_upload_id=dance_upload_id,
        bgm_upload_id=bgm_upload_id,
        options=stored,
        parent_id=None,
        client_address=client_address,
        inputs=inputs,
    )


def _usable_upload(
    session: Session,
    storage: Storage,
    owner_id: str,
    upload_id: str,
    *,
    role: str,
    audio_first: bool = False,
) -> Upload:
    upload = session.get(Upload, upload_id)
    if upload is None or upload.owner_id != owner_id:
        raise ServiceError("NOT_FOUND", f"{role}_upload_id: no upload {upload_id}")
    if upload.status == UploadStatus.REJECTED.value:
        code = upload.error_code if upload.error_code in CODES else "INVALID_FORMAT"
        raise ServiceError(code, f"the {role} upload was refused: {upload.error_message or code}")
    if upload.status != UploadStatus.READY.value:
        raise ServiceError(
            "UPLOAD_INCOMPLETE",
            f"the {role} upload has {upload.offset} of {upload.size} bytes",
        )
    if upload.expires_at <= utcnow():
        raise ServiceError("FILE_NOT_FOUND", f"the {role} upload has expired; upload it again")
    media = upload.media or {}
    # An audio-first job's dance upload is the sound alone (a picture in it is not read).
    if role == "dance" and not audio_first and media.get("has_video") is False:
        raise ServiceError("NO_VIDEO_TRACK", "the dance upload has no video track")
    if media.get("has_audio") is False:
        raise ServiceError("NO_AUDIO_TRACK", f"the {role} upload has no audio track")
    if upload.storage_key is None or storage.size(upload.storage_key) is None:
        raise ServiceError("FILE_NOT_FOUND", f"the {role} upload's file is gone; upload it again")
    return upload


def _check_cut(dance: Upload, options: dict[str, Any]) -> None:
    duration = (dance.media or {}).get("duration_s")
    start = options.get("start_s")
    if isinstance(duration, int | float) and start is not None and start >= duration:
        raise ServiceError(
            "VALIDATION_ERROR",
            f"options.start_s ({start}) is not before the dance video's end ({duration} s)",
        )


def _enqueue(
    session: Session,
    *,
    settings: Settings,
    storage: Storage,
    dispatcher: Dispatcher,
    owner_id: str,
    dance_upload_id: str,
    bgm_upload_id: str,
    options: dict[str, Any],
    parent_id: str | None,
    client_address: str | None = None,
    inputs: AudioFirstInput | None = None,
    parent: Job | None = None,
) -> tuple[Job, bool]:
    audio_first = bool(options.get("audio_first"))
    dance = _usable_upload(
        session, storage, owner_id, dance_upload_id, role="dance", audio_first=audio_first
    )
    bgm = _usable_upload(session, storage, owner_id, bgm_upload_id, role="bgm")
    _check_cut(dance, options)
    key = cache_key(dance.sha256 or dance.id, bgm.sha256 or bgm.id, options)
    cached = _cached(session, storage, owner_id, key)
    if cached is not None:
        logger.info("job %s answers from the result cache", cached.id, extra={"job_id": cached.id})
        return cached, False
    _check_quotas(session, settings, owner_id, daily=True, address=client_address)
    job = Job(
        id=new_dated_id("job"),
        owner_id=owner_id,
        dance_upload_id=dance.id,
        bgm_upload_id=bgm.id,
        parent_id=parent_id,
        options=options,
        cache_key=key,
        status=JobStatus.QUEUED.value,
        client_address=client_address,
    )
    if inputs is not None:
        job.manifest = inputs.manifest_json
        job.thumbnails, job.thumbnail_samples = inputs.thumbnails, inputs.samples
    elif parent is not None and audio_first:
        # A variant sees the same picture: the manifest and every thumbnail the parent had.
        job.manifest = parent.manifest
        job.thumbnails, job.thumbnail_samples = parent.thumbnails, parent.thumbnail_samples
    session.add(job)
    session.commit()
    try:
        dispatcher.submit(job.id)
    except DispatchUnavailable as exc:
        # Nobody will run it: take it back rather than leave a job queued forever.
        session.delete(job)
        session.commit()
        raise _busy(f"the job queue is unavailable: {exc}") from exc
    logger.info("job %s queued", job.id, extra={"job_id": job.id})
    return job, True


def _cached(session: Session, storage: Storage, owner_id: str, key: str) -> Job | None:
    candidates = session.scalars(
        select(Job)
        .where(
            Job.owner_id == owner_id,
            Job.cache_key == key,
            Job.status == JobStatus.SUCCEEDED.value,
        )
        .order_by(Job.finished_at.desc())
        .limit(5)
    )
    for job in candidates:
        files = (job.result or {}).get("files") or {}
        keys = [k for k in files.values() if k]
        if keys and all(storage.size(k) is not None for k in keys):
            return job
    return None


def _busy(detail: str) -> ServiceError:
    return ServiceError("SERVER_BUSY", detail, headers={"Retry-After": str(_BUSY_RETRY_AFTER_S)})


def _check_quotas(
    session: Session, settings: Settings, owner_id: str, *, daily: bool, address: str | None = None
) -> None:
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == owner_id, Job.status.in_(_UNFINISHED))
    )
    if (active or 0) >= settings.max_running_jobs_per_owner:
        raise ServiceError(
            "QUOTA_EXCEEDED",
            f"{active} of your jobs are queued or running; "
            f"the limit is {settings.max_running_jobs_per_owner}",
        )
    if daily:
        since = utcnow() - timedelta(hours=24)
        recent = session.scalars(
            select(Job.created_at)
            .where(Job.owner_id == owner_id, Job.created_at >= since)
            .order_by(Job.created_at)
        ).all()
        if len(recent) >= settings.max_daily_jobs_per_owner:
            # The quota frees up when the oldest job of the window leaves it.
            frees = recent[len(recent) - settings.max_daily_jobs_per_owner] + timedelta(hours=24)
            wait = max(1, int((frees - utcnow()).total_seconds()) + 1)
            raise ServiceError(
                "QUOTA_EXCEEDED",
                f"{len(recent)} jobs in the last 24 h; "
                f"the limit is {settings.max_daily_jobs_per_owner}",
                headers={"Retry-After": str(wait)},
            )
    if address is not None:
        _check_address_share(session, settings, address)
    queued = session.scalar(
        select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)
    )
    if (queued or 0) >= settings.max_queued_jobs:
        raise _busy(f"{queued} jobs are waiting; try again shortly")


def _check_address_share(session: Session, settings: Settings, address: str) -> None:
    # Owners are free to make, so the per-owner cap alone lets one address fill the queue.
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.client_address == address, Job.status.in_(_UNFINISHED))
    )
    if (active or 0) >= settings.max_active_jobs_per_address:
        raise ServiceError(
            "QUOTA_EXCEEDED",
            f"{active} jobs from your address are queued or running; "
            f"the limit is {settings.max_active_jobs_per_address}",
            headers={"Retry-After": str(_BUSY_RETRY_AFTER_S)},
        )


# ---------------------------------------------------------------- changing


def cancel_job(session: Session, dispatcher: Dispatcher, owner_id: str, job_id: str) -> Job:
    """Mark a queued or running job canceled, then tell the dispatcher to stop it."""
    job = get_job(session, owner_id, job_id)
    if not _mark_canceled(session, job):
        raise ServiceError("JOB_NOT_CANCELLABLE", f"job {job_id} is already {job.status}")
    _tell_cancel(dispatcher, job.id)
    return job


def _mark_canceled(session: Session, job: Job) -> bool:
    # Conditional, so a worker finishing at this very moment keeps its final status.
    changed = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(_UNFINISHED))
        .values(
            status=JobStatus.CANCELED.value,
            cancel_requested=True,
            finished_at=utcnow(),
            message="canceled",
        )
        .execution_options(synchronize_session=False)
    )
    done = bool(getattr(changed, "rowcount", 0))
    if done:
        record_job_end(session.connection(), job.id)
    session.commit()
    session.refresh(job)
    if done:
        logger.info("job %s canceled", job.id, extra={"job_id": job.id})
    return done


def _tell_cancel(dispatcher: Dispatcher, job_id: str) -> None:
    try:
        dispatcher.cancel(job_id)
    except DispatchUnavailable:
        # The row already says canceled, and a runner never overwrites a finished status.
        logger.warning("could not reach the queue to stop job %s", job_id)


def delete_job(
    session: Session, storage: Storage, dispatcher: Dispatcher, owner_id: str, job_id: str
) -> None:
    """Cancel the job if it is unfinished, then remove its files and its row."""
    job = get_job(session, owner_id, job_id)
    if job.status in _UNFINISHED and _mark_canceled(session, job):
        _tell_cancel(dispatcher, job.id)
    removed = storage.delete_prefix(job_folder(job.id))
    session.delete(job)
    session.commit()
    logger.info("job %s deleted with %d files", job_id, removed, extra={"job_id": job_id})


def retry_job(
    session: Session,
    *,
    settings: Settings,
    storage: Storage,
    dispatcher: Dispatcher,
    owner_id: str,
    job_id: str,
) -> Job:
    """Queue a failed or canceled job again from the start."""
    job = get_job(session, owner_id, job_id)
    if job.status not in _RETRYABLE:
        raise ServiceError("JOB_NOT_RETRYABLE", f"job {job_id} is {job.status}")
    audio_first = bool(job.options.get("audio_first"))
    _usable_upload(
        session, storage, owner_id, job.dance_upload_id, role="dance", audio_first=audio_first
    )
    _usable_upload(session, storage, owner_id, job.bgm_upload_id, role="bgm")
    _check_quotas(session, settings, owner_id, daily=False, address=job.client_address)
    storage.delete_prefix(job_folder(job.id))  # whatever a canceled run left half-written
    changed = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(_RETRYABLE))
        .values(
            status=JobStatus.QUEUED.value,
            stage=None,
            progress=0.0,
            message=None,
            error_code=None,
            error_message=None,
            result=None,
            attempts=0,
            cancel_requested=False,
            worker=None,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
            expires_at=None,
            frames_request=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(job)
    if not getattr(changed, "rowcount", 0):
        raise ServiceError("JOB_NOT_RETRYABLE", f"job {job_id} is {job.status}")
    try:
        dispatcher.submit(job.id)
    except DispatchUnavailable as exc:
        detail = f"the job queue is unavailable: {exc}"
        # Conditional, as every final write: a runner that saw the queued row and took it
        # keeps it, and only the write that ended the job counts it.
        failed = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.FAILED.value,
                error_code="SERVER_BUSY",
                error_message=detail,
                finished_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(failed, "rowcount", 0):
            record_job_end(session.connection(), job.id)
        session.commit()
        session.refresh(job)
        raise _busy(detail) from exc
    logger.info("job %s queued again", job.id, extra={"job_id": job.id})
    return job


def send_frames(
    session: Session, owner_id: str, job_id: str, *, request_id: str, thumbnails: str
) -> Job:
    """Answer the frame request of the owner's running audio-first job (see :mod:`.audiofirst`)."""
    return answer_frames(session, get_job(session, owner_id, job_id), request_id, thumbnails)


def render_variant(
    session: Session,
    *,
    settings: Settings,
    storage: Storage,
    dispatcher: Dispatcher,
    owner_id: str,
    job_id: str,
    request: RenderRequest,
    client_address: str | None = None,
) -> tuple[Job, bool]:
    """A new job from a succeeded one with a fixed mapping, so no search runs again.

    The mapping is the chosen candidate's, or without one the mapping the job itself used
    before its nudge; the request's fields replace the job's options.
    """
    parent = get_job(session, owner_id, job_id)
    if parent.status != JobStatus.SUCCEEDED.value or not parent.result:
        raise ServiceError(
            "JOB_NOT_FINISHED",
            f"job {job_id} is {parent.status}; only a succeeded job can be rendered again",
        )
    given = request.model_fields_set
    merged = {k: v for k, v in parent.options.items() if k in JobOptions.model_fields}
    if request.nudge_ms is not None:
        merged["nudge_ms"] = request.nudge_ms
    if request.trim is not None:
        merged["trim"] = request.trim
    for name in ("start_s", "end_s"):
        if name in given:
            merged[name] = getattr(request, name)
    try:
        options = JobOptions.model_validate(merged)
    except ValidationError as exc:
        raise ServiceError(
            "VALIDATION_ERROR", f"the resulting options: {plain_errors(exc.errors())}"
        ) from exc
    if request.candidate is not None:
        mapping = _candidate_mapping(session, parent, request.candidate)
    else:
        mapping = _base_mapping(parent)
    stored = options_dict(options, mapping)
    stored.update({k: parent.options[k] for k in AUDIO_FIRST_KEYS if k in parent.options})
    if _keeps_the_cut(parent, request, stored):
        # A nudge moves the music, not the picture: the run makes the audio track again for
        # the parent's copied samples and nothing else.
        stored["retrack_of"] = parent.id
    return _enqueue(
        session,
        settings=settings,
        storage=storage,
        dispatcher=dispatcher,
        owner_id=owner_id,
        dance_upload_id=parent.dance_upload_id,
        bgm_upload_id=parent.bgm_upload_id,
        options=stored,
        parent_id=parent.id,
        client_address=client_address,
        parent=parent,
    )


def _keeps_the_cut(parent: Job, request: RenderRequest, options: dict[str, Any]) -> bool:
    """Whether a variant of an audio-first ``parent`` only nudges: the same mapping and cut
    options, so the parent's cut and copied samples stand."""
    if not parent.options.get("audio_first") or not (parent.result or {}).get("copy_run"):
        return False
    if request.candidate is not None:
        return False
    same = ("trim", "start_s", "end_s", "mix_live_db")
    return all(options.get(k) == parent.options.get(k) for k in same)


def _plain_mapping(entry: dict[str, Any]) -> dict[str, Any]:
    return _with_kind({"offset_s": float(entry["offset_s"]), "scale": float(entry["scale"])}, entry)


def _with_kind(mapping: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The mapping, marked ``pitch_kept`` when ``entry``'s is (a pitch-kept tempo change is
    rendered by time-stretching); the default kind adds nothing, as before there were two."""
    return {**mapping, "pitch_kept": True} if entry.get("pitch_kept") else mapping


def _base_mapping(job: Job) -> dict[str, Any]:
    """The mapping a variant of ``job`` renders with before its own nudge: with the pieces of
    an edit (and their seams) when the job found or used several."""
    given = job.options.get("mapping")
    if given:
        plain = _plain_mapping(given)
        if given.get("pieces"):
            plain["pieces"] = [dict(p) for p in given["pieces"]]
        return plain
    used = (job.result or {}).get("mapping")
    if not used:
        raise ServiceError("JOB_NOT_FINISHED", f"job {job.id} has no mapping to render with")
    # The result's mapping has the job's nudge in it (offset − nudge); the variant nudges anew.
    nudge_s = float(job.options.get("nudge_ms") or 0.0) / 1000.0
    base: dict[str, Any] = _with_kind(
        {"offset_s": float(used["offset_s"]) + nudge_s, "scale": float(used["scale"])}, used
    )
    pieces = (job.result or {}).get("pieces") or []
    if len(pieces) > 1:
        base["pieces"] = [
            {
                "start_s": float(p["start_s"]),
                "end_s": float(p["end_s"]),
                "offset_s": float(p["offset_s"]) + nudge_s,
                "scale": float(p["scale"]),
            }
            for p in pieces
        ]
    return base


def _candidate_mapping(session: Session, job: Job, index: int) -> dict[str, Any]:
    # A variant rendered with a fixed mapping lists no candidates of its own: the ones to
    # choose from are those of the search it came from.
    source: Job | None = job
    for _ in range(_MAX_ANCESTRY):
        if source is None or not source.options.get("mapping") or not source.parent_id:
            break
        parent = session.get(Job, source.parent_id)
        if parent is None or parent.owner_id != job.owner_id:
            break
        source = parent
    candidates = list(((source or job).result or {}).get("candidates") or [])
    if not 0 <= index < len(candidates):
        raise ServiceError(
            "VALIDATION_ERROR",
            f"candidate: {index} is out of range; the job has {len(candidates)} candidates",
        )
    return _plain_mapping(candidates[index])
