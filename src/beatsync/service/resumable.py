"""Resumable uploads (tus 1.0): creation, appends at an offset, completion.

Appends hold an exclusive lock on the upload (in this process and, through ``flock``, across
processes on the host) and record the new offset with a conditional UPDATE on the old one, so two
writers can never both win. Bytes that arrived before a client went away are kept and counted:
that is what lets the client resume. Completion hashes, probes and stores the file exactly as
:func:`beatsync.service.uploads.accept_file` does for a whole one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from .config import Settings
from .db import Database, Upload, UploadStatus
from .db.models import utcnow
from .errors import ServiceError
from .layout import new_dated_id, upload_folder
from .metrics import count_upload_bytes
from .quota import check_room
from .storage import Storage
from .stored import shared_copy
from .tus_parts import PartAppender, assemble, commit_offset, multipart_id, start_parts
from .uploads import (
    READ_CHUNK,
    data_key,
    durable,
    inspect_media,
    require_free_disk,
    require_size_allowed,
    spool_path,
    write_all,
)

try:  # POSIX; elsewhere the in-process lock alone guards an upload
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "ChunkAppender",
    "commit_offset",
    "create_resumable",
    "finish_resumable",
    "open_appender",
    "receiving_upload",
]

logger = logging.getLogger(__name__)

CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")


def receiving_upload(
    settings: Settings,
    *,
    owner_id: str,
    filename: str,
    content_type: str | None,
    size: int,
    metadata: dict[str, Any],
) -> Upload:
    """A new ``receiving`` upload row of ``size`` bytes, not yet added to a session; it expires
    after ``tus_expiry_h`` unless bytes keep arriving."""
    now = utcnow()
    return Upload(
        id=new_dated_id("upl"),
        owner_id=owner_id,
        filename=filename,
        content_type=content_type,
        size=size,
        offset=0,
        status=UploadStatus.RECEIVING.value,
        tus_metadata=metadata,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=settings.tus_expiry_h),
    )


def create_resumable(
    session: Session,
    settings: Settings,
    storage: Storage,
    *,
    owner_id: str,
    length: int,
    filename: str,
    content_type: str | None,
    metadata_header: str | None,
    expected_sha256: str | None,
) -> Upload:
    """A ``receiving`` upload of ``length`` bytes and its empty part file (in S3 mode, its
    multipart upload: :mod:`beatsync.service.tus_parts`); the length is reserved in the owner's
    quota until the upload settles."""
    require_size_allowed(length, settings)
    require_free_disk(settings)
    check_room(session, settings, owner_id, size=length, files=1)
    row = receiving_upload(
        settings,
        owner_id=owner_id,
        filename=filename,
        content_type=content_type,
        size=length,
        metadata={"upload_metadata": metadata_header, "sha256": expected_sha256},
    )
    if settings.storage == "s3":
        row.tus_metadata = {**(row.tus_metadata or {}), **start_parts(storage, row.id)}
        session.add(row)
        session.flush()
        return row
    part = spool_path(settings, row.id)
    part.touch(exist_ok=False)
    try:
        session.add(row)
        session.flush()
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return row


_busy: set[str] = set()
_busy_lock = threading.Lock()


class ChunkAppender:
    """One request's bytes appended to a resumable upload's part file, holding its lock.

    Entering takes the lock; a second writer of the same upload is refused with
    UPLOAD_CONFLICT instead of waiting (its client resumes from the offset a HEAD reports).
    :meth:`begin` cuts the file back to the recorded offset, which the caller reads under the
    lock: bytes written by a request that died before its offset was recorded are not part of
    the upload.
    """

    def __init__(
        self, path: Path, upload_id: str, *, checksum: tuple[str, bytes] | None = None
    ) -> None:
        self.path = path
        self.upload_id = upload_id
        self.offset = 0
        self.length = 0
        self.received = 0
        self._checksum = checksum
        self._hash = hashlib.new(checksum[0], usedforsecurity=False) if checksum else None
        self._handle: IO[bytes] | None = None
        self._claimed = False
        self._written = False  # bytes went to the file after begin(), whole or not

    def __enter__(self) -> ChunkAppender:
        with _busy_lock:
            if self.upload_id in _busy:
                raise _conflict()
            _busy.add(self.upload_id)
            self._claimed = True
        try:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:
                raise ServiceError(
                    "NOT_FOUND", "the received part of this upload is gone", status=410
                ) from None
            # Unbuffered: a full disk shows at the write that hits it, and a discard can
            # always cut the file back.
            self._handle = os.fdopen(fd, "r+b", buffering=0)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise _conflict() from None
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and (self.received or self._written):
            self.discard()
        self._release()

    def begin(self, offset: int, length: int) -> None:
        """Start appending at ``offset`` (the recorded one) of a ``length``-byte upload."""
        assert self._handle is not None, "the appender is not open"
        self.offset = offset
        self.length = length
        self._handle.truncate(offset)
        self._handle.seek(offset)

    def write(self, data: bytes) -> None:
        """Append ``data``; FILE_TOO_LARGE when it would pass the declared length."""
        if self.offset + self.received + len(data) > self.length:
            raise ServiceError(
                "FILE_TOO_LARGE",
                f"the data goes past Upload-Length ({self.length} bytes)",
                extra={"max_bytes": self.length},
            )
        assert self._handle is not None, "the appender is not open"
        self._written = True
        write_all(self._handle, data)
        if self._hash is not None:
            self._hash.update(data)
        self.received += len(data)

    def seal(self, *, complete: bool) -> int:
        """Make the received bytes durable; the new offset.

        A chunk with a checksum is kept only whole and matching (CHECKSUM_MISMATCH otherwise);
        a chunk without one keeps whatever arrived, even from a client that went away.
        """
        assert self._handle is not None, "the appender is not open"
        if self._checksum is not None and self._hash is not None:
            if not complete:
                self.discard()
            elif self._hash.digest() != self._checksum[1]:
                self.discard()
                raise ServiceError(
                    "CHECKSUM_MISMATCH",
                    f"the chunk's {self._checksum[0]} does not match Upload-Checksum",
                )
        durable(self._handle)
        return self.offset + self.received

    def record(self, db: Database, settings: Settings) -> datetime | None:
        """Record the sealed bytes as received (see :func:`commit_offset`); the new expiry,
        or None when the upload moved on without them (they are then discarded on exit)."""
        new = self.offset + self.received
        with db.session() as session:
            expires = commit_offset(session, settings, self.upload_id, old=self.offset, new=new)
        if expires is not None:
            count_upload_bytes("tus", self.received)
            self.offset, self.received = new, 0
        return expires

    def discard(self) -> None:
        """Forget this request's bytes."""
        if self._handle is not None and not self._handle.closed:
            self._handle.truncate(self.offset)
            self._handle.seek(self.offset)
        self.received = 0
        if self._checksum is not None:
            self._hash = hashlib.new(self._checksum[0], usedforsecurity=False)

    def _release(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()  # also releases the flock
        if self._claimed:
            with _busy_lock:
                _busy.discard(self.upload_id)
            self._claimed = False


def open_appender(
    settings: Settings,
    storage: Storage,
    row: Upload,
    *,
    checksum: tuple[str, bytes] | None,
) -> ChunkAppender | PartAppender:
    """What appends a request's bytes to ``row``: a part file in the spool, or (S3 mode) parts
    in the bucket, which every replica sees."""
    if settings.storage == "s3":
        return PartAppender(storage, row.id, multipart_id(row), checksum=checksum)
    return ChunkAppender(spool_path(settings, row.id), row.id, checksum=checksum)


def _conflict() -> ServiceError:
    return ServiceError("UPLOAD_CONFLICT", "another request is writing this upload")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def finish_resumable(db: Database, storage: Storage, settings: Settings, upload_id: str) -> Upload:
    """Settle a resumable upload whose last byte arrived: ``ready`` (stored, with its media
    facts) or ``rejected`` (with the code and detail of the refusal). Idempotent."""
    with db.session() as session:
        row = session.get(Upload, upload_id)
    if row is None:
        raise ServiceError("NOT_FOUND", f"no upload {upload_id}")
    if row.status != UploadStatus.RECEIVING or row.offset != row.size:
        return row
    path = spool_path(settings, upload_id)
    in_parts = settings.storage == "s3"
    if in_parts:
        path = assemble(storage, row, path)
    digest = _file_sha256(path)
    expected = (row.tus_metadata or {}).get("sha256")
    values: dict[str, Any] = {"sha256": digest, "updated_at": utcnow()}
    try:
        if expected and expected != digest:
            raise ServiceError(
                "CHECKSUM_MISMATCH",
                f"the file's sha256 is {digest}, not the {expected} declared at creation",
            )
        values["media"] = inspect_media(path, settings)
    except ServiceError as exc:
        values.update(
            status=UploadStatus.REJECTED.value, error_code=exc.code, error_message=exc.detail
        )
        path.unlink(missing_ok=True)
        if in_parts:
            storage.delete_prefix(upload_folder(upload_id))
    else:
        with db.session() as session:
            shared = shared_copy(session, storage, row.owner_id, digest, row.offset)
        key = shared or data_key(upload_id)
        if shared is None and not in_parts:
            storage.put_file(key, path)
        elif shared is not None and in_parts:
            storage.delete_prefix(upload_folder(upload_id))
        path.unlink(missing_ok=True)
        values.update(status=UploadStatus.READY.value, storage_key=key)
    values["expires_at"] = utcnow() + timedelta(hours=settings.upload_ttl_h)
    with db.session() as session:
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id, Upload.status == UploadStatus.RECEIVING.value)
                .values(**values)
            ),
        )
        settled = session.get(Upload, upload_id)
    if result.rowcount != 1 or settled is None:
        # Terminated while it was being probed: nothing of it may stay (a shared object stays
        # with the uploads that refer to it).
        with contextlib.suppress(Exception):
            storage.delete_prefix(upload_folder(upload_id))
        raise ServiceError("NOT_FOUND", f"upload {upload_id} was deleted")
    logger.info("upload %s %s", upload_id, settled.status)
    return settled
