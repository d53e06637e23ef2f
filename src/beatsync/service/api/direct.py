"""``/api/v1/uploads/direct``: uploads whose bytes go from the client straight to S3.

For clients that opt in, in S3 mode only (elsewhere 400): the API signs one URL per part and
records the upload; the client sends the parts to the store itself and then asks the API to
complete. See :mod:`beatsync.service.direct`.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from beatsync.service import direct, uploads

from .deps import Context, LocaleDep, OwnerId
from .uploads import UploadOut

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/uploads/direct", tags=["uploads"])

# Creation checks the owner's quota, then inserts: one at a time in this process.
_creating = threading.Lock()


class DirectIn(BaseModel):
    size: int = Field(ge=1, le=2**63 - 1, description="The file's exact size in bytes.")
    filename: str = Field("", max_length=4096, description="For display only.")
    content_type: str = Field("", max_length=255)


class PartOut(BaseModel):
    number: int = Field(description="1-based; the part holds bytes from (number-1)·part_size.")
    url: str = Field(description="Presigned: `PUT` the part's bytes here, no other headers.")


class DirectOut(BaseModel):
    upload: UploadOut
    part_size: int = Field(description="Bytes of every part but the last.")
    parts: list[PartOut]


@router.post(
    "",
    status_code=201,
    response_model=DirectOut,
    responses={
        400: {"description": "VALIDATION_ERROR: the service does not store files in S3"},
        413: {"description": "FILE_TOO_LARGE"},
    },
)
def start(
    body: DirectIn, owner: OwnerId, context: Context, locale: LocaleDep, response: Response
) -> dict[str, Any]:
    """Begin an upload whose bytes go straight to object storage.

    The answer lists one presigned URL per part. `PUT` bytes `[(n-1)·part_size, n·part_size)`
    of the file to part `n`'s URL (parts in any order, a failed part sent again), then call
    `POST /api/v1/uploads/direct/{id}/complete`. The URLs live as long as the unfinished
    upload (`BEATSYNC_TUS_EXPIRY_H`, at most seven days). A browser needs the bucket's CORS to
    allow `PUT` from its origin; the ETags the store answers need not be read.
    """
    with _creating, context.db.session() as session:
        made = direct.start_direct(
            session,
            context.settings,
            context.storage,
            owner_id=owner,
            filename=uploads.sanitize_filename(body.filename),
            size=body.size,
            content_type=uploads.sanitize_text(body.content_type) or None,
        )
        answer = {
            "upload": uploads.upload_json(made.row, locale),
            "part_size": made.part_size,
            "parts": [{"number": n, "url": url} for n, url in enumerate(made.urls, start=1)],
        }
    response.headers["Location"] = f"/api/v1/uploads/{made.row.id}"
    return answer


@router.post(
    "/{upload_id}/complete",
    response_model=UploadOut,
    responses={409: {"description": "UPLOAD_INCOMPLETE: a part was not sent"}},
)
async def complete(
    upload_id: str, owner: OwnerId, context: Context, locale: LocaleDep
) -> dict[str, Any]:
    """Join the parts sent and record the upload: the answer's `status` is `ready`, with
    `sha256` and `media` still null, for the API reads none of the file. The first job that
    uses it checks it; a file that is no usable media fails that job with the reason's code
    and the upload turns `rejected`. Calling it again gives the same answer."""
    row = await run_in_threadpool(
        direct.complete_direct, context.db, context.storage, context.settings, owner, upload_id
    )
    return uploads.upload_json(row, locale)
