"""``/api/v1/uploads``: whole files over multipart, the owner's uploads, instant upload.

The multipart body is parsed while it streams in (python-multipart's push parser fed from
``request.stream()``): the ``file`` part goes straight into a spool file, counted and hashed,
and the request is refused the moment it passes a limit, without reading the rest. FastAPI's
``UploadFile`` is not used because it takes in the whole body before the handler runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from beatsync.service import quota, uploads
from beatsync.service.errors import ServiceError
from beatsync.service.layout import new_dated_id

from .context import ServiceContext
from .deps import Context, LocaleDep, OwnerId

__all__ = ["FORM_OVERHEAD", "MAX_HEADER_BYTES", "MAX_PARTS", "router"]

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])

MAX_PARTS = 8  # parts of one form: the file and a few small fields
MAX_PART_HEADERS = 8  # header lines of one part
MAX_HEADER_BYTES = 8192  # one header line (a 255-character name, percent-encoded, fits)
FORM_OVERHEAD = 1 << 20  # bytes a form may carry besides the file's own


class MediaOut(BaseModel):
    duration_s: float
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    fps: float | None
    video_codec: str | None
    audio_codec: str | None
    rotation: int | None


class UploadErrorOut(BaseModel):
    code: str
    message: str = Field(description="In the client's language (Accept-Language).")
    detail: str | None


class UploadOut(BaseModel):
    id: str
    filename: str = Field(description="The client's file name, for display only.")
    size: int | None = Field(description="Total bytes (declared, for a resumable upload).")
    offset: int = Field(description="Bytes received so far.")
    sha256: str | None
    status: str = Field(description="receiving | ready | rejected")
    error: UploadErrorOut | None
    media: MediaOut | None
    created_at: str = Field(description="ISO 8601, UTC.")
    expires_at: str = Field(description="ISO 8601, UTC.")


class UploadPageOut(BaseModel):
    items: list[UploadOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class InstantIn(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    size: int = Field(ge=0, le=2**63 - 1)  # a database BIGINT
    filename: str = Field("", max_length=4096)


class _FormReceiver:
    """Feeds a multipart body to a push parser and sends the ``file`` part to a spool."""

    def __init__(self, boundary: bytes, spool: uploads.Spool, *, body_limit: int) -> None:
        self.spool = spool
        self.body_limit = body_limit
        self.body_bytes = 0
        self.other_bytes = 0
        self.parts = 0
        self.found = False
        self.ended = False
        self.filename = ""
        self.content_type: str | None = None
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_end": self._end,
                },
                max_header_count=MAX_PART_HEADERS,
                max_header_size=MAX_HEADER_BYTES,
            )
        except FormParserError as exc:
            raise ServiceError("VALIDATION_ERROR", f"multipart boundary: {exc}") from exc

    def feed(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.body_limit:
            raise uploads.too_large(self.spool.limit)
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise ServiceError("VALIDATION_ERROR", f"malformed multipart body: {exc}") from exc

    def finish(self) -> None:
        if not self.ended:
            raise ServiceError("VALIDATION_ERROR", "the multipart body ended before its end")
        if not self.found:
            raise ServiceError("VALIDATION_ERROR", "the form has no `file` field")

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ServiceError("VALIDATION_ERROR", f"a form may have at most {MAX_PARTS} parts")
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") != b"file":
            return
        if self.found:
            raise ServiceError("VALIDATION_ERROR", "the form has more than one `file` field")
        self.found = True
        self._in_file = True
        self.filename = uploads.sanitize_filename(params.get(b"filename", b""))
        content_type = uploads.sanitize_text(self._headers.get(b"content-type", b""))
        self.content_type = content_type or None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.spool.write(data[start:end])
            return
        self.other_bytes += end - start
        if self.other_bytes > FORM_OVERHEAD:
            raise ServiceError(
                "VALIDATION_ERROR", f"form fields besides the file exceed {FORM_OVERHEAD} bytes"
            )

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True


def _boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ServiceError(
            "VALIDATION_ERROR",
            "send the file as multipart/form-data in a field named `file`",
            status=415,
        )
    return boundary


def content_length(request: Request) -> int | None:
    """The declared body size, or None when the body is chunked."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


_FORM_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        }
    },
}


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    openapi_extra={"requestBody": _FORM_BODY},
    responses={
        413: {"description": "FILE_TOO_LARGE, STORAGE_QUOTA_EXCEEDED"},
        422: {"description": "INVALID_FORMAT, NO_AUDIO_TRACK, DURATION_TOO_LONG, or a bad form"},
        507: {"description": "INSUFFICIENT_STORAGE"},
    },
)
async def create_upload(
    request: Request, response: Response, owner: OwnerId, context: Context, locale: LocaleDep
) -> dict[str, Any]:
    """Upload one file as the multipart field ``file``; it is probed before it is kept."""
    settings = context.settings
    boundary = _boundary(request.headers.get("content-type"))
    body_limit = settings.max_upload_bytes + FORM_OVERHEAD
    declared = content_length(request)
    if declared is not None and declared > body_limit:
        raise uploads.too_large(settings.max_upload_bytes)
    uploads.require_free_disk(settings)
    base, allowance = await run_in_threadpool(_room, context, owner, declared or 0)
    upload_id = new_dated_id("upl")
    spool_path = uploads.spool_path(settings, upload_id)
    with (
        quota.Reservation(settings, owner, base, allowance=allowance) as reservation,
        uploads.Spool(
            spool_path, limit=settings.max_upload_bytes, counted=reservation.add
        ) as spool,
    ):
        form = _FormReceiver(boundary, spool, body_limit=body_limit)
        try:
            async for chunk in request.stream():
                form.feed(chunk)
        except ClientDisconnect as exc:
            raise ServiceError("VALIDATION_ERROR", "the client left before the end") from exc
        form.finish()
        await run_in_threadpool(spool.close)
        received = uploads.ReceivedFile(
            upload_id=upload_id,
            owner_id=owner,
            path=spool_path,
            size=spool.size,
            sha256=spool.sha256,
            filename=form.filename,
            content_type=form.content_type,
        )
        row = await run_in_threadpool(
            uploads.accept_file, context.db, context.storage, settings, received
        )
    response.headers["Location"] = f"/api/v1/uploads/{row.id}"
    return uploads.upload_json(row, locale)


def _room(context: ServiceContext, owner: str, declared: int) -> tuple[quota.Usage, int]:
    """The owner's usage and allowance; refused when the declared body cannot fit even as a
    copy of a stored file (which would cost nothing, but that is known only at the end)."""
    with context.db.session() as session:
        largest = quota.largest_file(session, owner)
        allowance = largest + FORM_OVERHEAD if largest else 0
        size = max(0, declared - allowance)
        return quota.check_room(session, context.settings, owner, size=size, files=0), largest


@router.get("", response_model=UploadPageOut)
def list_uploads(
    owner: OwnerId,
    context: Context,
    locale: LocaleDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    # Bounded: a database integer holds 64 bits, and no one has a million uploads to skip.
    offset: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> dict[str, Any]:
    """My unexpired uploads, newest first."""
    with context.db.session() as session:
        page = uploads.list_uploads(session, owner, limit=limit, cursor=cursor, offset=offset)
    return {
        "items": [uploads.upload_json(row, locale) for row in page.items],
        "next_cursor": page.next_cursor,
    }


@router.post(
    "/instant",
    response_model=UploadOut,
    responses={404: {"description": "NOT_FOUND: upload the file"}},
)
def instant_upload(
    body: InstantIn, owner: OwnerId, context: Context, locale: LocaleDep
) -> dict[str, Any]:
    """My ready upload with this sha256 and size (kept longer), so the bytes need not be sent
    again; 404 when there is none. The upload keeps the name it was first given."""
    with context.db.session() as session:
        row = uploads.instant_upload(
            session, context.storage, context.settings, owner, body.sha256, body.size
        )
        return uploads.upload_json(row, locale)


@router.get("/{upload_id}", response_model=UploadOut)
def get_upload(
    upload_id: str, owner: OwnerId, context: Context, locale: LocaleDep
) -> dict[str, Any]:
    """One of my uploads: its status, size, hash, media facts or why it was refused."""
    with context.db.session() as session:
        return uploads.upload_json(uploads.get_upload(session, owner, upload_id), locale)


@router.delete("/{upload_id}", status_code=204)
def delete_upload(upload_id: str, owner: OwnerId, context: Context) -> Response:
    """Delete one of my uploads and its bytes."""
    with context.db.session() as session:
        uploads.delete_upload(session, context.storage, context.settings, owner, upload_id)
    return Response(status_code=204)
