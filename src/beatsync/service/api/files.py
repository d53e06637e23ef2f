"""``/api/v1/files/{job_id}/{name}``: a job's video or audio track, report, plot and poster by
signed URL.

The URL's ``exp`` and ``sig`` are the only credentials, so it works in ``<video src>``,
``<img src>`` and ``wx.downloadFile``, none of which can send an Authorization header. Files
stream from storage in chunks with single-range support (players seek with ``Range``); a store
that can hand out its own URLs (S3) gets a redirect instead.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from beatsync.service.db.models import Job, JobStatus
from beatsync.service.errors import ServiceError
from beatsync.service.layout import job_folder
from beatsync.service.ranges import ByteRange, Unsatisfiable, parse_range
from beatsync.service.signing import verify

from .context import ServiceContext
from .deps import Context

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/files", tags=["results"])

CONTENT_TYPES = {
    "output.mp4": "video/mp4",
    "audio.m4a": "audio/mp4",
    "report.json": "application/json",
    "plot.png": "image/png",
    "poster.jpg": "image/jpeg",
}
_JOB_ID = re.compile(r"job_[A-Za-z0-9_-]{1,36}")
# The bytes never change under one ETag, and only holders of a signed URL get them.
_CACHE_CONTROL = "private, max-age=3600"


def _finished_at(context: ServiceContext, job_id: str, key: str) -> str:
    """When the run that wrote ``key`` finished; NOT_FOUND when the job no longer has it."""
    with context.db.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.SUCCEEDED.value:
            raise ServiceError("NOT_FOUND", f"job {job_id} has no results")
        stored = ((job.result or {}).get("files") or {}).values()
        if key not in stored:
            raise ServiceError("NOT_FOUND", f"job {job_id} has no {key.rsplit('/', 1)[-1]}")
        return job.finished_at.isoformat() if job.finished_at else ""


def _etag(key: str, size: int, finished: str) -> str:
    """A strong validator: the file of one run of the job (a retry writes new files)."""
    digest = hashlib.sha256(f"{key}\n{size}\n{finished}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file."},
    206: {"description": "One byte range (`Content-Range`)."},
    307: {"description": "The file is at a storage URL (`Location`)."},
    403: {"description": "`LINK_EXPIRED`: the signature is not valid or has expired."},
    416: {"description": "`RANGE_NOT_SATISFIABLE`."},
}


# Two routes rather than one with two methods, so each has its own OpenAPI operation id.
@router.get("/{job_id}/{name}", response_class=StreamingResponse, responses=_RESPONSES)
@router.head("/{job_id}/{name}", response_class=StreamingResponse, responses=_RESPONSES)
def result_file(
    job_id: str,
    name: str,
    request: Request,
    context: Context,
    exp: Annotated[str | None, Query(max_length=20)] = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
    download: bool = False,
) -> Response:
    """A result file; ``?download=1`` asks the browser to save it as ``beatsync-<job>.<ext>``."""
    if name not in CONTENT_TYPES or not _JOB_ID.fullmatch(job_id):
        raise ServiceError("NOT_FOUND", f"no file {name}")
    secret = context.settings.secret_key.get_secret_value()
    path = f"/api/v1/files/{job_id}/{name}"
    if not verify(secret, path, exp, sig, max_ttl_s=context.settings.signed_url_ttl_s):
        raise ServiceError("LINK_EXPIRED", "the link's signature is not valid or has expired")
    key = f"{job_folder(job_id)}/{name}"
    filename = f"beatsync-{job_id}{name[name.rindex('.') :]}"
    finished = _finished_at(context, job_id, key)  # a deleted job's links stop working
    presigned = context.storage.presigned_url(
        key, expires_s=context.settings.signed_url_ttl_s, filename=filename if download else None
    )
    if presigned:
        return RedirectResponse(presigned, status_code=307)
    size = context.storage.size(key)
    if size is None:
        raise ServiceError("NOT_FOUND", f"job {job_id} has no {name}")
    etag = _etag(key, size, finished)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Cache-Control": _CACHE_CONTROL,
        "Content-Type": CONTENT_TYPES[name],
    }
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={k: headers[k] for k in ("ETag", "Cache-Control")})
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None  # the client's copy is another version: send the whole file
    wanted = parse_range(range_header, size)
    if isinstance(wanted, Unsatisfiable):
        raise ServiceError(
            "RANGE_NOT_SATISFIABLE",
            f"the file has {size} bytes",
            headers={"Content-Range": wanted.content_range, "Accept-Ranges": "bytes"},
        )
    status = 200
    start, stop = 0, size
    if isinstance(wanted, ByteRange):
        status = 206
        start, stop = wanted.start, wanted.stop
        headers["Content-Range"] = wanted.content_range
    headers["Content-Length"] = str(stop - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    try:
        chunks = context.storage.read(key, start, stop)
    except FileNotFoundError as exc:
        raise ServiceError("NOT_FOUND", f"job {job_id} has no {name}") from exc
    return StreamingResponse(chunks, status_code=status, headers=headers)
