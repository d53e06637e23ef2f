"""Uploads: files received whole (multipart) or in pieces (tus), probed, then kept for a while.

An upload's bytes first land in the spool (``<spool_root>/<upload id>.part``), counted and
hashed as they arrive, and move into storage (``uploads/<id>/data``) only once the whole file
has been probed and found usable. A multipart upload that is unusable leaves nothing behind; a
resumable one is kept as a ``rejected`` row so its client can learn why. The file name a client
sends is a display string only: no path is ever built from it.

Identical bytes of one owner are stored once: a file whose sha256 and size match a ready upload
of the same owner refers to that upload's stored object (``storage_key``) instead of storing a
copy, so a repeated upload costs no quota twice (:mod:`.quota`). An object stays while any
upload row refers to it (:mod:`.stored`); owners never share objects, since finding a
file by its hash would hand it to anyone who knows the hash.

The resumable (tus) side lives in :mod:`.resumable`.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from beatsync.engine import MediaInfo
from beatsync.engine.errors import NoAudioTrackError

from .codes import Locale, message
from .config import Settings
from .db import Database, Upload, UploadStatus
from .db.models import utcnow
from .errors import ServiceError, from_engine
from .layout import upload_folder
from .metrics import count_upload_bytes
from .probing import read_media
from .quota import check_room
from .storage import Storage
from .stored import data_key, release_files, shared_copy

__all__ = [
    "ReceivedFile",
    "Spool",
    "UploadPage",
    "accept_file",
    "data_key",
    "delete_upload",
    "disk_full",
    "durable",
    "get_upload",
    "inspect_media",
    "instant_upload",
    "list_uploads",
    "media_facts",
    "require_free_disk",
    "require_size_allowed",
    "sanitize_filename",
    "sanitize_text",
    "spool_path",
    "too_large",
    "upload_json",
    "write_all",
]

logger = logging.getLogger(__name__)

MAX_FILENAME_CHARS = 255
_MIB = 1024 * 1024
READ_CHUNK = 1 << 20
_UPLOAD_ID = re.compile(r"upl_[A-Za-z0-9_-]{1,64}")
# Controls, formatting (bidi overrides), surrogates, private use, line/paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# FFmpeg's demuxers for single pictures: such a "video" is a photo, not a recording.
_PICTURE_FORMATS = re.compile(r"(^image2$|_pipe$)")


# --- names and limits ------------------------------------------------------------------------


def sanitize_text(raw: str | bytes | None, *, limit: int = MAX_FILENAME_CHARS) -> str:
    """``raw`` as a short printable display string: invalid UTF-8 replaced, controls removed."""
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    # Lone surrogates (undecodable bytes smuggled through str) cannot be stored or shown.
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = "".join(c for c in text if unicodedata.category(c) not in _HIDDEN)
    return text.strip()[:limit].strip()


def sanitize_filename(raw: str | bytes | None) -> str:
    """The last component of a client's file name, fit for display (never for a path)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    base = re.split(r"[/\\]", text)[-1]
    name = sanitize_text(base)
    return "" if name in (".", "..") else name


def spool_path(settings: Settings, upload_id: str) -> Path:
    """Where the bytes of ``upload_id`` wait until the upload is complete."""
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return settings.spool_root / f"{upload_id}.part"


def require_free_disk(settings: Settings) -> None:
    """Refuse (507) before a byte is written when the spool's disk is nearly full."""
    settings.spool_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.spool_root).free
    if free < settings.min_free_disk_mb * _MIB:
        raise ServiceError(
            "INSUFFICIENT_STORAGE",
            f"{free // _MIB} MB free on the upload disk, below the "
            f"{settings.min_free_disk_mb} MB kept in reserve",
            headers={"Retry-After": "60"},
        )


def too_large(limit: int) -> ServiceError:
    return ServiceError(
        "FILE_TOO_LARGE",
        f"the file is larger than the limit of {limit} bytes",
        extra={"max_bytes": limit},
    )


def require_size_allowed(size: int, settings: Settings) -> None:
    if size > settings.max_upload_bytes:
        raise too_large(settings.max_upload_bytes)


# --- receiving a whole file ------------------------------------------------------------------


def disk_full(exc: OSError) -> ServiceError | None:
    """INSUFFICIENT_STORAGE when ``exc`` says the disk (or the quota) is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ServiceError(
            "INSUFFICIENT_STORAGE", "the server's disk is full", headers={"Retry-After": "60"}
        )
    return None


def write_all(handle: IO[bytes], data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file; INSUFFICIENT_STORAGE on a full disk."""
    view = memoryview(data)
    try:
        while view:
            written = handle.write(view)
            view = view[written or 0 :]
    except OSError as exc:
        raise (disk_full(exc) or exc) from exc


def durable(handle: IO[bytes]) -> None:
    """Flush ``handle`` to the disk; INSUFFICIENT_STORAGE on a full disk."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        raise (disk_full(exc) or exc) from exc


class Spool:
    """A file being received into the spool, counted and hashed as it is written.

    Used as a context manager: leaving the block removes the file unless it was moved away
    (into storage), so no failure — refusal, bad media, a client gone — leaves a spool file.
    """

    def __init__(
        self, path: Path, *, limit: int, counted: Callable[[int], None] | None = None
    ) -> None:
        self.path = path
        self.limit = limit
        self.counted = counted  # told of each chunk before it is written (the owner's quota)
        self.size = 0
        self._hash = hashlib.sha256()
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> Spool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: a full disk shows at the write that hits it, not at a later flush.
        self._handle = self.path.open("xb", buffering=0)
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.close()
        except (OSError, ServiceError):
            pass  # the file goes anyway
        finally:
            self.path.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        """Append ``data``; FILE_TOO_LARGE the moment the total passes the limit."""
        if self.size + len(data) > self.limit:
            raise too_large(self.limit)
        if self.counted is not None:
            self.counted(len(data))
        assert self._handle is not None, "the spool is not open"
        write_all(self._handle, data)
        self._hash.update(data)
        self.size += len(data)
        count_upload_bytes("multipart", len(data))

    def close(self) -> None:
        """Flush the bytes to disk and close the file (it stays until the block ends)."""
        if self._handle is not None and not self._handle.closed:
            try:
                durable(self._handle)
            finally:
                self._handle.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def media_facts(info: MediaInfo) -> dict[str, Any]:
    """The ``media`` object of the Upload JSON. ``width``/``height`` are the coded picture size;
    ``rotation`` (degrees counter-clockwise) says how a player turns it."""
    video, audio = info.video, info.audio
    return {
        "duration_s": round(info.duration, 3),
        "has_video": video is not None,
        "has_audio": audio is not None,
        "width": video.width if video else None,
        "height": video.height if video else None,
        "fps": round(video.fps, 3) if video else None,
        "video_codec": video.codec if video else None,
        "audio_codec": audio.codec if audio else None,
        "rotation": video.rotation if video else None,
    }


def inspect_media(
    path: Path,
    settings: Settings,
    *,
    read: Callable[[Path], tuple[MediaInfo, int]] = read_media,
) -> dict[str, Any]:
    """Probe a received file (in the media reader process: :mod:`.probing`) and apply the
    service's limits; its media facts, or a coded :class:`ServiceError` (INVALID_FORMAT,
    NO_AUDIO_TRACK, DURATION_TOO_LONG).

    The audio requirement is checked after the probe's own format checks, so a photo (which
    FFmpeg reads as a one-frame video without sound) is refused as INVALID_FORMAT.
    """
    try:
        info, streams = read(path)
        if _PICTURE_FORMATS.search(info.format_name):
            raise ServiceError("INVALID_FORMAT", "the file is a still picture, not a recording")
        if info.audio is None:
            raise from_engine(NoAudioTrackError("the file has no audio track"))
    except ServiceError as error:
        # FFmpeg's messages name the file read: the spool path is nobody's business.
        error.detail = (error.detail or "").replace(f": '{path}'", "").replace(str(path), "file")
        raise
    if streams > settings.max_streams:
        raise ServiceError(
            "INVALID_FORMAT",
            f"the file holds {streams} streams; at most {settings.max_streams} are accepted",
        )
    if info.duration > settings.max_duration_s:
        raise ServiceError(
            "DURATION_TOO_LONG",
            f"the media lasts {info.duration:.1f} s; the limit is {settings.max_duration_s:g} s",
            extra={"max_duration_s": settings.max_duration_s},
        )
    if info.video is not None:
        pixels = info.video.width * info.video.height
        if pixels > settings.max_video_pixels:
            raise ServiceError(
                "INVALID_FORMAT",
                f"the picture is {info.video.width}×{info.video.height}; "
                f"at most {settings.max_video_pixels} pixels are accepted",
            )
    return media_facts(info)


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A complete file in the spool and what was learned while receiving it."""

    upload_id: str
    owner_id: str
    path: Path
    size: int
    sha256: str
    filename: str
    content_type: str | None


def accept_file(db: Database, storage: Storage, settings: Settings, file: ReceivedFile) -> Upload:
    """Probe a whole received file; usable, store it and record a ``ready`` upload.

    Unusable input raises the coded error and records nothing (the caller's spool removes
    the bytes).
    """
    media = inspect_media(file.path, settings)
    key = data_key(file.upload_id)
    with db.session() as session:
        shared = shared_copy(session, storage, file.owner_id, file.sha256, file.size)
        if shared is None:
            # Not a copy: it must fit without the allowance it may have streamed on, and
            # within the number of files (it counts itself while it streams).
            check_room(session, settings, file.owner_id, size=0, files=0)
    if shared is None:
        storage.put_file(key, file.path)
    now = utcnow()
    row = Upload(
        id=file.upload_id,
        owner_id=file.owner_id,
        filename=file.filename,
        content_type=file.content_type,
        size=file.size,
        offset=file.size,
        sha256=file.sha256,
        status=UploadStatus.READY.value,
        media=media,
        storage_key=shared or key,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=settings.upload_ttl_h),
    )
    try:
        with db.session() as session:
            session.add(row)
    except BaseException:
        if shared is None:
            storage.delete_prefix(upload_folder(file.upload_id))
        raise
    logger.info(
        "upload %s ready: %d bytes%s", row.id, row.size, " (a stored copy)" if shared else ""
    )
    return row


# --- reading and deleting --------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def upload_json(row: Upload, locale: Locale) -> dict[str, Any]:
    """The Upload JSON of the API: status, sizes, hash, media facts, the error in plain words."""
    error = None
    if row.error_code:
        error = {
            "code": row.error_code,
            "message": message(row.error_code, locale),
            "detail": row.error_message,
        }
    return {
        "id": row.id,
        "filename": row.filename,
        "size": row.size,
        "offset": row.offset,
        "sha256": row.sha256,
        "status": row.status,
        "error": error,
        "media": row.media,
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
    }


def get_upload(
    session: Session, owner_id: str, upload_id: str, *, expired_status: int = 404
) -> Upload:
    """The owner's upload; NOT_FOUND for a missing, foreign or expired one (the status of the
    last is ``expired_status``: tus answers 410 Gone)."""
    row = session.get(Upload, upload_id) if _UPLOAD_ID.fullmatch(upload_id) else None
    if row is None or row.owner_id != owner_id:
        raise ServiceError("NOT_FOUND", f"no upload {upload_id}")
    if row.expires_at <= utcnow():
        raise ServiceError("NOT_FOUND", f"upload {upload_id} has expired", status=expired_status)
    return row


@dataclass(frozen=True, slots=True)
class UploadPage:
    items: list[Upload]
    next_cursor: str | None


def _encode_cursor(row: Upload) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, upload_id = raw.split("|", 1)
        parsed = datetime.fromisoformat(moment)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError("VALIDATION_ERROR", "cursor: not a cursor this API gave") from exc
    if parsed.tzinfo is None:
        raise ServiceError("VALIDATION_ERROR", "cursor: not a cursor this API gave")
    return parsed, upload_id


def list_uploads(
    session: Session,
    owner_id: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
    offset: int | None = None,
) -> UploadPage:
    """The owner's unexpired uploads, newest first; ``cursor`` (from the previous page) or
    ``offset`` picks where the page starts."""
    if cursor is not None and offset is not None:
        raise ServiceError("VALIDATION_ERROR", "give cursor or offset, not both")
    query = select(Upload).where(Upload.owner_id == owner_id, Upload.expires_at > utcnow())
    if cursor is not None:
        moment, upload_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Upload.created_at < moment,
                and_(Upload.created_at == moment, Upload.id < upload_id),
            )
        )
    query = query.order_by(Upload.created_at.desc(), Upload.id.desc()).limit(limit + 1)
    if offset:
        query = query.offset(offset)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return UploadPage(rows, _encode_cursor(rows[-1]) if more and rows else None)


def delete_upload(
    session: Session, storage: Storage, settings: Settings, owner_id: str, upload_id: str
) -> None:
    """Delete the owner's upload (expired or not): its row, stored file and spool part."""
    row = session.get(Upload, upload_id) if _UPLOAD_ID.fullmatch(upload_id) else None
    if row is None or row.owner_id != owner_id:
        raise ServiceError("NOT_FOUND", f"no upload {upload_id}")
    key = row.storage_key
    session.delete(row)
    session.flush()
    release_files(session, storage, upload_id, key)
    spool_path(settings, upload_id).unlink(missing_ok=True)
    logger.info("upload %s deleted", upload_id)


def instant_upload(
    session: Session, storage: Storage, settings: Settings, owner_id: str, sha256: str, size: int
) -> Upload:
    """The owner's newest ready upload with this content, kept for another ``upload_ttl_h``.

    Only the owner's own uploads are found: matching across owners would hand a file to
    anyone who knows its hash.
    """
    now = utcnow()
    rows = session.scalars(
        select(Upload)
        .where(
            Upload.owner_id == owner_id,
            Upload.sha256 == sha256.lower(),
            Upload.size == size,
            Upload.status == UploadStatus.READY.value,
            Upload.expires_at > now,
        )
        .order_by(Upload.created_at.desc())
    )
    for row in rows:
        if row.storage_key and storage.size(row.storage_key) == size:
            row.expires_at = max(row.expires_at, now + timedelta(hours=settings.upload_ttl_h))
            session.flush()
            return row
    raise ServiceError("NOT_FOUND", "no ready upload of yours has this sha256 and size")
