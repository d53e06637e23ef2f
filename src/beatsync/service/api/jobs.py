"""``/api/v1/jobs``: create, read, list, cancel, delete, retry and render variants of jobs.

Handlers parse, call :mod:`beatsync.service.jobs.lifecycle` and answer with
:func:`~beatsync.service.jobs.views.job_json`; every rule (ownership, quotas, the result cache,
which state allows what) lives in the lifecycle.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from beatsync.service.codes import Locale
from beatsync.service.db.models import Job
from beatsync.service.jobs import lifecycle
from beatsync.service.jobs.options import JobOptions, RenderRequest
from beatsync.service.jobs.views import job_json

from .context import ServiceContext
from .deps import ClientAddress, Context, DbSession, LocaleDep, OwnerId

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

_ID = Field(min_length=1, max_length=40)


class Thumbnails(BaseModel):
    """Grey 96×54 pictures laid end to end, row by row, one byte a pixel, base64."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["gray8"] = "gray8"
    width: Literal[96] = 96
    height: Literal[54] = 54
    keyframes: str = Field(
        description="One picture per keyframe of the manifest, in the order of `video.sync` "
        "(every sample when `sync` is null)."
    )


class JobCreate(BaseModel):
    """Two ready uploads of the caller and the options of the run.

    With ``video_manifest`` the job is audio-first: the dance upload is the class video's sound,
    the manifest describes its picture, and the result is an audio track and the video samples
    to copy (see docs/audio-first.md).
    """

    model_config = ConfigDict(extra="forbid")

    dance_upload_id: str = _ID
    bgm_upload_id: str = _ID
    options: JobOptions = JobOptions()  # frozen, so one shared default is safe
    video_manifest: dict[str, Any] | None = Field(
        default=None, description="The class video's sample tables (docs/audio-first.md)."
    )
    thumbnails: Thumbnails | None = Field(
        default=None,
        description="The keyframes' thumbnails, for the picture check. Optional: without them "
        "the run asks for the keyframes it reads in its frame requests.",
    )


class FramesAnswer(BaseModel):
    """The frames an audio-first run asked for (``frames_request`` of the job)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=40)
    thumbnails: str = Field(
        description="One 96×54 grey picture per sample of the request, in its order, base64."
    )


def _job(
    job: Job, context: ServiceContext, locale: Locale, *, status: int = 200, located: bool = False
) -> JSONResponse:
    body = job_json(job, settings=context.settings, storage=context.storage, locale=locale)
    headers = {"Location": body["links"]["self"]} if located else None
    return JSONResponse(body, status_code=status, headers=headers)


_NUMBER = {"type": "number"}
_ASSEMBLY = {
    "type": "object",
    "description": "How an audio-first client assembles its output (docs/audio-first.md): "
    "copy video samples [first_sample, end_sample) but excluded_samples, decode times shifted "
    "so the first is 0, and mux the AAC packets of audio_url as they are.",
    "required": [
        "audio_url",
        "first_sample",
        "end_sample",
        "excluded_samples",
        "video_start",
        "video_end",
        "first_frame_time",
        "audio",
    ],
    "properties": {
        "audio_url": {"type": ["string", "null"], "description": "Signed URL of the M4A."},
        "first_sample": {"type": "integer", "description": "Keyframe the copy starts from."},
        "end_sample": {"type": "integer", "description": "One past the last sample copied."},
        "excluded_samples": {"type": "array", "items": {"type": "integer"}},
        "video_start": _NUMBER,
        "video_end": _NUMBER,
        "first_frame_time": _NUMBER,
        "audio": {
            "type": "object",
            "required": ["codec", "sample_rate", "channels", "duration"],
            "properties": {
                "codec": {"type": "string"},
                "sample_rate": {"type": "integer"},
                "channels": {"type": "integer"},
                "duration": _NUMBER,
            },
        },
    },
}
_JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The job. Fields of audio-first jobs are described here; the rest in "
    "the README.",
    "properties": {
        "audio_first": {"type": "boolean"},
        "frames_request": {
            "description": "Frames an audio-first run waits for: answer at links.frames.",
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["id", "samples"],
                    "properties": {
                        "id": {"type": "string"},
                        "samples": {"type": "array", "items": {"type": "integer"}},
                    },
                },
            ],
        },
        "result": {
            "anyOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "properties": {"assembly": {"anyOf": [{"type": "null"}, _ASSEMBLY]}},
                },
            ]
        },
    },
}
_JOB_CONTENT = {"application/json": {"schema": _JOB_SCHEMA}}
_JOB: dict[str, Any] = {"description": "The job.", "content": _JOB_CONTENT}
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A finished job with the same inputs and options (result cache).",
        "content": _JOB_CONTENT,
    },
    202: {"description": "The job was queued; `Location` is its address.", "content": _JOB_CONTENT},
}


@router.post("", status_code=202, responses=_CREATED)
def create_job(
    body: JobCreate,
    owner: OwnerId,
    session: DbSession,
    context: Context,
    locale: LocaleDep,
    address: ClientAddress,
) -> JSONResponse:
    """Queue a job for two ready uploads (202), or answer with an identical finished job (200)."""
    job, created = lifecycle.create_job(
        session,
        settings=context.settings,
        storage=context.storage,
        dispatcher=context.dispatcher,
        owner_id=owner,
        dance_upload_id=body.dance_upload_id,
        bgm_upload_id=body.bgm_upload_id,
        options=body.options,
        client_address=address,
        video_manifest=body.video_manifest,
        keyframes=body.thumbnails.keyframes if body.thumbnails is not None else None,
    )
    return _job(job, context, locale, status=202 if created else 200, located=True)


@router.get("", responses={200: {"description": "`{items: [Job], next_cursor}`"}})
def list_jobs(
    owner: OwnerId,
    session: DbSession,
    context: Context,
    locale: LocaleDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """My jobs, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = lifecycle.list_jobs(session, owner, limit=limit, cursor=cursor)
    items = [
        job_json(j, settings=context.settings, storage=context.storage, locale=locale)
        for j in page.items
    ]
    return {"items": items, "next_cursor": page.next_cursor}


@router.get("/{job_id}", responses={200: _JOB})
async def get_job(job_id: str, owner: OwnerId, context: Context, locale: LocaleDep) -> JSONResponse:
    """The job now: the truth that the progress streams only repeat."""
    # The route clients poll. A read of the local SQLite file by primary key takes tens of
    # microseconds, less than a trip to the thread pool (WAL readers never wait for writers);
    # a database over the network is read from the pool.
    if context.db.local:
        return _read_job(context, owner, job_id, locale)
    return await run_in_threadpool(_read_job, context, owner, job_id, locale)


def _read_job(context: ServiceContext, owner: str, job_id: str, locale: Locale) -> JSONResponse:
    with context.db.session() as session:
        return _job(lifecycle.get_job(session, owner, job_id), context, locale)


@router.post("/{job_id}/cancel", responses={200: _JOB})
def cancel_job(
    job_id: str, owner: OwnerId, session: DbSession, context: Context, locale: LocaleDep
) -> JSONResponse:
    """Stop a queued or running job (409 ``JOB_NOT_CANCELLABLE`` once it has finished)."""
    job = lifecycle.cancel_job(session, context.dispatcher, owner, job_id)
    return _job(job, context, locale)


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: str, owner: OwnerId, session: DbSession, context: Context) -> Response:
    """Cancel the job if needed and delete it with its files."""
    lifecycle.delete_job(session, context.storage, context.dispatcher, owner, job_id)
    return Response(status_code=204)


@router.post("/{job_id}/retry", status_code=202, responses={202: _JOB})
def retry_job(
    job_id: str, owner: OwnerId, session: DbSession, context: Context, locale: LocaleDep
) -> JSONResponse:
    """Queue a failed or canceled job again (409 ``JOB_NOT_RETRYABLE`` otherwise)."""
    job = lifecycle.retry_job(
        session,
        settings=context.settings,
        storage=context.storage,
        dispatcher=context.dispatcher,
        owner_id=owner,
        job_id=job_id,
    )
    return _job(job, context, locale, status=202, located=True)


@router.post("/{job_id}/render", status_code=202, responses=_CREATED)
def render_variant(
    job_id: str,
    owner: OwnerId,
    session: DbSession,
    context: Context,
    locale: LocaleDep,
    address: ClientAddress,
    body: RenderRequest | None = None,
) -> JSONResponse:
    """Render a succeeded job again with another candidate, a nudge or another cut.

    The new job's ``parent_id`` is this job; it reuses the mapping, so no search runs again.
    """
    job, created = lifecycle.render_variant(
        session,
        settings=context.settings,
        storage=context.storage,
        dispatcher=context.dispatcher,
        owner_id=owner,
        job_id=job_id,
        request=body or RenderRequest(),
        client_address=address,
    )
    return _job(job, context, locale, status=202 if created else 200, located=True)


@router.post("/{job_id}/frames", responses={200: _JOB})
def send_frames(
    job_id: str,
    body: FramesAnswer,
    owner: OwnerId,
    session: DbSession,
    context: Context,
    locale: LocaleDep,
) -> JSONResponse:
    """Answer an audio-first job's ``frames_request`` with the thumbnails of its samples
    (409 ``FRAMES_NOT_REQUESTED`` when the job waits for no such request)."""
    job = lifecycle.send_frames(
        session, owner, job_id, request_id=body.request_id, thumbnails=body.thumbnails
    )
    return _job(job, context, locale)
