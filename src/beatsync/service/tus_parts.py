"""Resumable uploads kept in object storage, so that any API replica can continue any upload.

In S3 mode a tus upload is an S3 multipart upload of its final key (``uploads/<id>/data``),
started at creation; its S3 upload id is kept in the upload's row. Parts have one fixed size
(the store's part size, at least the 5 MiB S3 requires of every part but the last), so part
``n`` always holds bytes ``[(n-1)·P, n·P)`` of the file. Bytes past the last whole part wait in
a small tail object named by the offset it ends at (``uploads/<id>/tail-<offset>``), read back
by whichever replica receives the next chunk. The recorded offset lives in the database and
moves only by the conditional UPDATE of :func:`commit_offset`; the
replicas share nothing else but the bucket.

Two requests writing the same upload at once on different replicas may both store a part
before one of them loses the offset race: a part holds the file's bytes at fixed positions, so
whichever copy stays is the same data, and the file's sha256 is taken from the joined object.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from .config import Settings
from .db import Database, Upload, UploadStatus
from .db.models import utcnow
from .errors import ServiceError
from .layout import upload_folder
from .metrics import count_upload_bytes
from .storage import Storage
from .stored import data_key

if TYPE_CHECKING:
    from .storage.s3 import S3Storage

__all__ = ["PartAppender", "assemble", "commit_offset", "multipart_id", "start_parts", "tail_key"]

_busy: set[str] = set()
_busy_lock = threading.Lock()


def tail_key(upload_id: str, offset: int) -> str:
    """The object holding the bytes past the last whole part of an upload at ``offset``."""
    return f"{upload_folder(upload_id)}/tail-{offset}"


def _store(storage: Storage) -> S3Storage:
    return cast("S3Storage", storage)


def start_parts(storage: Storage, upload_id: str) -> dict[str, str]:
    """Begin the multipart upload of a new resumable upload; what its row keeps of it."""
    return {"multipart": _store(storage).start_multipart(data_key(upload_id))}


def _gone() -> ServiceError:
    return ServiceError("NOT_FOUND", "the received part of this upload is gone", status=410)


def multipart_id(row: Upload) -> str:
    """The S3 upload id of a resumable upload's parts (410 when it has none)."""
    found = (row.tus_metadata or {}).get("multipart")
    if not found:
        raise _gone()
    return str(found)


class PartAppender:
    """One request's bytes appended to a resumable upload kept as S3 parts.

    The same life as :class:`beatsync.service.resumable.ChunkAppender`: enter (one writer per
    upload in this process), :meth:`begin` at the recorded offset, :meth:`write`,
    :meth:`seal`, :meth:`record`. At most one part (plus the chunk being written) is held in
    memory.
    """

    def __init__(
        self,
        storage: Storage,
        upload_id: str,
        multipart: str,
        *,
        checksum: tuple[str, bytes] | None = None,
    ) -> None:
        self.storage = _store(storage)
        self.part_size = self.storage.part_size
        self.upload_id = upload_id
        self.multipart = multipart
        self.offset = 0
        self.length = 0
        self.received = 0
        self._base = 0  # the file offset where the buffer starts (a part boundary)
        self._buffer = bytearray()
        self._checksum = checksum
        self._hash = hashlib.new(checksum[0], usedforsecurity=False) if checksum else None
        self._claimed = False
        self._sealed_tail: str | None = None

    def __enter__(self) -> PartAppender:
        with _busy_lock:
            if self.upload_id in _busy:
                raise ServiceError("UPLOAD_CONFLICT", "another request is writing this upload")
            _busy.add(self.upload_id)
            self._claimed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.discard()
        if self._claimed:
            with _busy_lock:
                _busy.discard(self.upload_id)
            self._claimed = False

    def begin(self, offset: int, length: int) -> None:
        """Start appending at ``offset`` (the recorded one) of a ``length``-byte upload: the
        bytes since the last whole part come back from the tail object."""
        self.offset = offset
        self.length = length
        self._base = offset - offset % self.part_size
        self._buffer = bytearray()
        if offset > self._base:
            try:
                for chunk in self.storage.read(tail_key(self.upload_id, offset)):
                    self._buffer += chunk
            except FileNotFoundError:
                raise _gone() from None
            if len(self._buffer) != offset - self._base:
                raise _gone()

    def write(self, data: bytes) -> None:
        """Append ``data``, storing each part as it fills; FILE_TOO_LARGE past the length."""
        if self.offset + self.received + len(data) > self.length:
            raise ServiceError(
                "FILE_TOO_LARGE",
                f"the data goes past Upload-Length ({self.length} bytes)",
                extra={"max_bytes": self.length},
            )
        if self._hash is not None:
            self._hash.update(data)
        self._buffer += data
        self.received += len(data)
        while len(self._buffer) >= self.part_size:
            number = self._base // self.part_size + 1
            try:
                self.storage.put_part(
                    data_key(self.upload_id),
                    self.multipart,
                    number,
                    bytes(self._buffer[: self.part_size]),
                )
            except FileNotFoundError:
                raise _gone() from None
            del self._buffer[: self.part_size]
            self._base += self.part_size

    def seal(self, *, complete: bool) -> int:
        """Keep the bytes past the last whole part in a tail object; the new offset. Checksums
        are handled as by :meth:`ChunkAppender.seal`."""
        if self._checksum is not None and self._hash is not None:
            if not complete:
                self.discard()
            elif self._hash.digest() != self._checksum[1]:
                self.discard()
                raise ServiceError(
                    "CHECKSUM_MISMATCH",
                    f"the chunk's {self._checksum[0]} does not match Upload-Checksum",
                )
        new = self.offset + self.received
        if self.received and self._buffer:
            self._sealed_tail = tail_key(self.upload_id, new)
            self.storage.put_bytes(self._sealed_tail, bytes(self._buffer))
        return new

    def record(self, db: Database, settings: Settings) -> datetime | None:
        """Record the sealed bytes (see :func:`commit_offset`); the new expiry, or None when
        the upload moved on without them."""
        old, new = self.offset, self.offset + self.received
        with db.session() as session:
            expires = commit_offset(session, settings, self.upload_id, old=old, new=new)
        if expires is None:
            self.discard()
            return None
        count_upload_bytes("tus", self.received)
        if old % self.part_size:
            # The old tail is inside the new data now (or replaced by a newer tail).
            with contextlib.suppress(Exception):
                self.storage.delete_key(tail_key(self.upload_id, old))
        self.offset, self.received, self._sealed_tail = new, 0, None
        return expires

    def discard(self) -> None:
        """Forget this request's bytes (parts it stored are rewritten by the next attempt)."""
        if self._sealed_tail is not None:
            with contextlib.suppress(Exception):
                self.storage.delete_key(self._sealed_tail)
            self._sealed_tail = None
        self.received = 0
        if self._checksum is not None:
            self._hash = hashlib.new(self._checksum[0], usedforsecurity=False)


def assemble(storage: Storage, row: Upload, dest: Path) -> Path:
    """Join a complete upload's parts into its final object and fetch it to ``dest`` for
    hashing and probing. Idempotent: an upload joined before is only fetched."""
    store = _store(storage)
    size = row.size or 0
    key = data_key(row.id)
    if store.size(key) != size:
        whole, rest = divmod(size, store.part_size)
        tail = b""
        if rest:
            try:
                tail = b"".join(store.read(tail_key(row.id, size)))
            except FileNotFoundError:
                raise _gone() from None
        try:
            if whole == 0:
                # Too small for parts: one plain object.
                store.put_bytes(key, tail)
                store.abort_multipart(key, multipart_id(row))
            else:
                if rest:
                    store.put_part(key, multipart_id(row), whole + 1, tail)
                store.finish_multipart(key, multipart_id(row), parts=whole + (1 if rest else 0))
        except FileNotFoundError:
            raise _gone() from None
        if rest:
            with contextlib.suppress(Exception):
                store.delete_key(tail_key(row.id, size))
    return store.fetch(key, dest)


def commit_offset(
    session: Session, settings: Settings, upload_id: str, *, old: int, new: int
) -> datetime | None:
    """Record ``new`` bytes received if the upload still stands at ``old``; the new expiry,
    or None when another writer moved the offset (or the upload is gone or finished)."""
    expires = utcnow() + timedelta(hours=settings.tus_expiry_h)
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Upload)
            .where(
                Upload.id == upload_id,
                Upload.offset == old,
                Upload.status == UploadStatus.RECEIVING.value,
            )
            .values(offset=new, expires_at=expires, updated_at=utcnow())
        ),
    )
    return expires if result.rowcount == 1 else None
