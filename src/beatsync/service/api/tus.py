"""``/api/v1/tus``: resumable uploads over tus 1.0.

Extensions: creation, creation-with-upload, termination, expiration and checksum (sha1, sha256,
md5). Clients that cannot send PATCH (a WeChat mini-program's ``wx.request``) POST to the
upload with ``X-HTTP-Method-Override: PATCH`` (or ``DELETE``, ``HEAD``). The tus resource and
the upload record share one id, so ``GET /api/v1/uploads/{id}`` tells whether a finished upload
was found ``ready`` or ``rejected``. Every answer, refusals included, carries ``Tus-Resumable``.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from beatsync.service import resumable, uploads
from beatsync.service.db import Upload, UploadStatus
from beatsync.service.errors import ServiceError
from beatsync.service.storage import StorageUnavailable

from .context import ServiceContext
from .deps import Context, OwnerId
from .uploads import content_length

__all__ = [
    "DIGEST_SIZES",
    "MAX_METADATA_CHARS",
    "OFFSET_OCTET_STREAM",
    "TUS_EXTENSIONS",
    "TUS_VERSION",
    "parse_checksum",
    "parse_metadata",
    "parse_size",
    "router",
]

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "md5": 16}
MAX_METADATA_CHARS = 8192
_MAX_SIZE = 2**63 - 1
_SIZE = re.compile(r"[0-9]{1,19}")
# Printable ASCII without space and comma, the two separators of Upload-Metadata.
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


# --- header parsing --------------------------------------------------------------------------


def _bad(detail: str) -> ServiceError:
    return ServiceError("VALIDATION_ERROR", detail, status=400)


def parse_size(value: str | None, name: str) -> int:
    """A byte count header (``Upload-Length``, ``Upload-Offset``): ASCII digits, nothing else."""
    if value is None:
        raise _bad(f"{name} is required")
    text = value.strip(" \t")
    if not _SIZE.fullmatch(text) or int(text) > _MAX_SIZE:
        raise _bad(f"{name} must be a whole number of bytes, not {value[:40]!r}")
    return int(text)


def _base64(text: str, what: str) -> bytes:
    if not _BASE64.fullmatch(text):
        raise _bad(f"{what}: not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise _bad(f"{what}: not base64") from exc


def parse_metadata(value: str | None) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent).

    Keys are printable ASCII and appear once; values are decoded to bytes (their meaning —
    UTF-8 text for ``filename`` — is up to the reader).
    """
    if value is None or not value.strip(" \t"):
        return {}
    if len(value) > MAX_METADATA_CHARS:
        raise _bad(f"Upload-Metadata is longer than {MAX_METADATA_CHARS} characters")
    pairs: dict[str, bytes] = {}
    for item in value.split(","):
        item = item.strip(" \t")
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        if not _KEY.fullmatch(key):
            raise _bad(f"Upload-Metadata: bad key {key[:40]!r}")
        if key in pairs:
            raise _bad(f"Upload-Metadata: key {key!r} appears twice")
        pairs[key] = _base64(encoded.strip(" \t"), f"Upload-Metadata value of {key!r}")
    return pairs


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>`` as (algorithm, digest), or None."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip(" \t").partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in DIGEST_SIZES:
        raise _bad(
            f"Upload-Checksum: algorithm {algorithm[:20]!r} is not one of "
            + ", ".join(resumable.CHECKSUM_ALGORITHMS)
        )
    digest = _base64(encoded.strip(" \t"), "Upload-Checksum")
    if len(digest) != DIGEST_SIZES[algorithm]:
        raise _bad(f"Upload-Checksum: a {algorithm} digest has {DIGEST_SIZES[algorithm]} bytes")
    return algorithm, digest


def _expected_sha256(metadata: dict[str, bytes]) -> str | None:
    raw = metadata.get("sha256")
    if not raw:
        return None
    text = raw.decode("ascii", "replace").strip()
    if not _SHA256.fullmatch(text):
        raise _bad("Upload-Metadata: sha256 must be 64 hexadecimal digits")
    return text.lower()


def _http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)


def _is_octet_stream(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == OFFSET_OCTET_STREAM


def _has_body(request: Request) -> bool:
    declared = content_length(request)
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    return chunked or bool(declared)


def _require_version(request: Request) -> None:
    if request.headers.get("tus-resumable", "").strip() != TUS_VERSION:
        raise ServiceError(
            "UNSUPPORTED_VERSION",
            f"send Tus-Resumable: {TUS_VERSION}",
            headers={"Tus-Version": TUS_VERSION},
        )


# --- the routes ------------------------------------------------------------------------------


class _TusRoute(APIRoute):
    """Puts ``Tus-Resumable`` on every answer of the tus routes, refusals included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except ServiceError as exc:
                exc.headers.setdefault("Tus-Resumable", TUS_VERSION)
                raise
            except StorageUnavailable as exc:
                logger.warning("storage unavailable: %s", exc)
                raise ServiceError(
                    "STORAGE_UNAVAILABLE",
                    "file storage is unavailable",
                    headers={"Retry-After": "5", "Tus-Resumable": TUS_VERSION},
                ) from exc
            except (RequestValidationError, StarletteHTTPException):
                raise
            except Exception as exc:
                logger.exception("unexpected error on %s %s", request.method, request.url.path)
                raise ServiceError(
                    "INTERNAL_ERROR",
                    "internal server error",
                    headers={"Tus-Resumable": TUS_VERSION},
                ) from exc
            response.headers.setdefault("Tus-Resumable", TUS_VERSION)
            return response

        return route


router = APIRouter(prefix="/api/v1/tus", tags=["tus"], route_class=_TusRoute)


def _load(context: ServiceContext, owner: str, upload_id: str) -> Upload:
    with context.db.session() as session:
        return uploads.get_upload(session, owner, upload_id, expired_status=410)


# Creation checks the owner's quota, then inserts: one at a time in this process, so two
# creations at once cannot both fit into the same room.
_creating = threading.Lock()


def _create(
    context: ServiceContext,
    owner: str,
    length: int,
    metadata: dict[str, bytes],
    metadata_header: str | None,
) -> Upload:
    content_type = uploads.sanitize_text(metadata.get("filetype") or metadata.get("type"))
    with _creating, context.db.session() as session:
        return resumable.create_resumable(
            session,
            context.settings,
            context.storage,
            owner_id=owner,
            length=length,
            filename=uploads.sanitize_filename(metadata.get("filename") or metadata.get("name")),
            content_type=content_type or None,
            metadata_header=metadata_header,
            expected_sha256=_expected_sha256(metadata),
        )


def _check_offset(row: Upload, claimed: int) -> None:
    if claimed != row.offset:
        raise ServiceError(
            "UPLOAD_CONFLICT",
            f"the upload is at offset {row.offset}, not {claimed}",
            headers={"Upload-Offset": str(row.offset)},
            extra={"offset": row.offset},
        )


async def _receive(
    request: Request,
    context: ServiceContext,
    owner: str,
    upload_id: str,
    *,
    claimed: int,
    checksum: tuple[str, bytes] | None,
) -> tuple[int, datetime]:
    """Append the request body at ``claimed``; the new offset and expiry. The last byte
    settles the upload (probe, store) before the answer goes out."""
    first = await run_in_threadpool(_load, context, owner, upload_id)
    appender = resumable.open_appender(context.settings, context.storage, first, checksum=checksum)
    with appender:
        # Read again under the lock: another request may have moved on since.
        row = await run_in_threadpool(_load, context, owner, upload_id)
        _check_offset(row, claimed)
        if row.status != UploadStatus.RECEIVING or row.size is None:
            raise ServiceError("UPLOAD_CONFLICT", "the upload is already complete")
        appender.begin(row.offset, row.size)
        complete = True
        try:
            async for chunk in request.stream():
                appender.write(chunk)
        except ClientDisconnect:
            complete = False  # what arrived is kept: that is what a resume continues from
        offset = await run_in_threadpool(appender.seal, complete=complete)
        expires = row.expires_at
        if appender.received:
            committed = await run_in_threadpool(appender.record, context.db, context.settings)
            if committed is None:
                raise ServiceError("UPLOAD_CONFLICT", "the upload changed while this chunk came")
            expires = committed
        if offset == row.size:
            settled = await run_in_threadpool(
                resumable.finish_resumable, context.db, context.storage, context.settings, upload_id
            )
            expires = settled.expires_at
    return offset, expires


def _progress(offset: int, expires: datetime) -> dict[str, str]:
    return {"Upload-Offset": str(offset), "Upload-Expires": _http_date(expires)}


@router.options("", status_code=204)
@router.options("/{upload_id}", status_code=204, include_in_schema=False)
def discover(context: Context) -> Response:
    """What this tus server supports."""
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(context.settings.max_upload_bytes),
            "Tus-Checksum-Algorithm": ",".join(resumable.CHECKSUM_ALGORITHMS),
        },
    )


@router.post(
    "",
    status_code=201,
    responses={
        201: {"description": "Created; `Location` is the upload's URL"},
        413: {"description": "FILE_TOO_LARGE"},
        412: {"description": "UNSUPPORTED_VERSION"},
    },
)
async def create(request: Request, owner: OwnerId, context: Context) -> Response:
    """Create an upload of ``Upload-Length`` bytes, optionally with its first bytes."""
    _require_version(request)
    settings = context.settings
    if request.headers.get("upload-defer-length") is not None:
        raise _bad("Upload-Defer-Length is not supported: send Upload-Length")
    length = parse_size(request.headers.get("upload-length"), "Upload-Length")
    uploads.require_size_allowed(length, settings)
    metadata_header = request.headers.get("upload-metadata")
    metadata = parse_metadata(metadata_header)
    with_body = _is_octet_stream(request)
    if not with_body and _has_body(request):
        raise ServiceError(
            "VALIDATION_ERROR", f"data sent with creation must be {OFFSET_OCTET_STREAM}", status=415
        )
    checksum = parse_checksum(request.headers.get("upload-checksum")) if with_body else None
    declared = content_length(request)
    if with_body and declared is not None and declared > length:
        raise uploads.too_large(length)
    row = await run_in_threadpool(
        _create, context, owner, length, metadata, metadata_header or None
    )
    location = f"/api/v1/tus/{row.id}"
    offset, expires = 0, row.expires_at
    try:
        if with_body or length == 0:
            offset, expires = await _receive(
                request, context, owner, row.id, claimed=0, checksum=checksum
            )
    except ServiceError as exc:
        exc.headers.setdefault("Location", location)
        raise
    logger.info("upload %s created for %d bytes", row.id, length)
    return Response(status_code=201, headers={"Location": location, **_progress(offset, expires)})


async def _head(upload_id: str, request: Request, owner: str, context: ServiceContext) -> Response:
    _require_version(request)
    row = await run_in_threadpool(_load, context, owner, upload_id)
    headers = {
        **_progress(row.offset, row.expires_at),
        "Upload-Length": str(row.size),
        "Cache-Control": "no-store",
    }
    metadata_header = (row.tus_metadata or {}).get("upload_metadata")
    if metadata_header:
        headers["Upload-Metadata"] = metadata_header
    return Response(status_code=200, headers=headers)


async def _patch(upload_id: str, request: Request, owner: str, context: ServiceContext) -> Response:
    _require_version(request)
    if not _is_octet_stream(request):
        raise ServiceError(
            "VALIDATION_ERROR", f"PATCH needs Content-Type: {OFFSET_OCTET_STREAM}", status=415
        )
    claimed = parse_size(request.headers.get("upload-offset"), "Upload-Offset")
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    row = await run_in_threadpool(_load, context, owner, upload_id)
    _check_offset(row, claimed)
    size = row.size or 0
    declared = content_length(request)
    if row.status != UploadStatus.RECEIVING:
        if _has_body(request):
            raise ServiceError(
                "FILE_TOO_LARGE", "the upload is complete: no more bytes are accepted"
            )
        return Response(status_code=204, headers=_progress(row.offset, row.expires_at))
    if declared is not None and row.offset + declared > size:
        raise ServiceError(
            "FILE_TOO_LARGE",
            f"{declared} bytes at offset {row.offset} go past Upload-Length ({size})",
            extra={"max_bytes": size},
        )
    if declared != 0:
        uploads.require_free_disk(context.settings)
    offset, expires = await _receive(
        request, context, owner, upload_id, claimed=claimed, checksum=checksum
    )
    return Response(status_code=204, headers=_progress(offset, expires))


def _delete(context: ServiceContext, owner: str, upload_id: str) -> None:
    with context.db.session() as session:
        uploads.delete_upload(session, context.storage, context.settings, owner, upload_id)


async def _terminate(
    upload_id: str, request: Request, owner: str, context: ServiceContext
) -> Response:
    _require_version(request)
    await run_in_threadpool(_delete, context, owner, upload_id)
    return Response(status_code=204)


@router.head("/{upload_id}", responses={410: {"description": "Expired"}})
async def head(upload_id: str, request: Request, owner: OwnerId, context: Context) -> Response:
    """How many bytes the server has (``Upload-Offset``) of ``Upload-Length``."""
    return await _head(upload_id, request, owner, context)


_CHUNK_BODY = {"content": {OFFSET_OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}}


@router.patch(
    "/{upload_id}",
    status_code=204,
    openapi_extra={"requestBody": _CHUNK_BODY},
    responses={
        409: {"description": "UPLOAD_CONFLICT: Upload-Offset is not the server's"},
        415: {"description": f"Content-Type is not {OFFSET_OCTET_STREAM}"},
        460: {"description": "CHECKSUM_MISMATCH: the chunk was discarded"},
    },
)
async def patch(upload_id: str, request: Request, owner: OwnerId, context: Context) -> Response:
    """Append the body at ``Upload-Offset``; the answer's ``Upload-Offset`` is the new one."""
    return await _patch(upload_id, request, owner, context)


@router.delete("/{upload_id}", status_code=204)
async def terminate(upload_id: str, request: Request, owner: OwnerId, context: Context) -> Response:
    """Abandon the upload and delete what was received."""
    return await _terminate(upload_id, request, owner, context)


_Handler = Callable[[str, Request, str, ServiceContext], Awaitable[Response]]
_BY_OVERRIDE: dict[str, _Handler] = {"PATCH": _patch, "DELETE": _terminate, "HEAD": _head}


@router.post("/{upload_id}", responses={405: {"description": "No X-HTTP-Method-Override"}})
async def override(upload_id: str, request: Request, owner: OwnerId, context: Context) -> Response:
    """PATCH, DELETE or HEAD for clients that can only POST (``X-HTTP-Method-Override``)."""
    method = request.headers.get("x-http-method-override", "").strip().upper()
    handler = _BY_OVERRIDE.get(method)
    if handler is None:
        raise ServiceError(
            "METHOD_NOT_ALLOWED",
            "POST to an upload needs X-HTTP-Method-Override: " + ", ".join(_BY_OVERRIDE),
            headers={"Allow": "HEAD, PATCH, DELETE, OPTIONS"},
        )
    return await handler(upload_id, request, owner, context)
