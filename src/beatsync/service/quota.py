"""Each owner's share of the storage: bytes and files, counted the way the disk holds them.

An owner's usage is what its upload rows keep on disk: every ready file once per stored object
(identical bytes of one owner share one object, see :func:`beatsync.service.uploads.shared_copy`),
every resumable upload still receiving at its declared ``Upload-Length`` (reserved when it is
created), and the multipart uploads streaming in this process right now. Rows past their expiry
still count until the sweeper has removed their bytes.

Checks happen before a byte is stored (the declared ``Content-Length`` or ``Upload-Length``) and
while a multipart body streams (each chunk is counted as it arrives), so an owner can never get
more than its quota onto the disk, whatever it declares. Whether a multipart upload is a copy of
a stored file is known only at its end (by its sha256), so one upload of an owner at a time may
stream past the quota by the size of the owner's largest stored file (its ``allowance``); at
the end it is either a copy, which costs nothing, or refused and removed. Refusals are ``413
STORAGE_QUOTA_EXCEEDED`` with the numbers in the problem document.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .config import Settings
from .db import Upload, UploadStatus
from .errors import ServiceError

__all__ = ["Reservation", "Usage", "check_room", "largest_file", "usage"]

_ON_DISK = (UploadStatus.READY.value, UploadStatus.RECEIVING.value)


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int
    files: int

    def plus(self, size: int, files: int) -> Usage:
        return Usage(self.bytes + size, self.files + files)


# Multipart uploads streaming in this process: owner → reservation id → bytes so far. Replicas
# each count their own; a file's bytes are in the database once it is stored.
_streaming: dict[str, dict[int, int]] = {}
_lock = threading.Lock()
_ids = itertools.count()
_allowed: set[int] = set()  # the reservations streaming on their owner's allowance


def usage(session: Session, owner_id: str, *, streaming: bool = True) -> Usage:
    """What ``owner_id`` keeps on disk, with ``streaming`` the multipart uploads streaming in
    this process (each counted as one file of the bytes received so far) included."""
    mine = Upload.owner_id == owner_id
    stored = session.execute(
        select(Upload.storage_key, func.max(Upload.size))
        .where(mine, Upload.status == UploadStatus.READY.value, Upload.storage_key.is_not(None))
        .group_by(Upload.storage_key)
    ).all()
    receiving_bytes, receiving_files = session.execute(
        select(func.coalesce(func.sum(Upload.size), 0), func.count()).where(
            mine, Upload.status == UploadStatus.RECEIVING.value
        )
    ).one()
    arriving: list[int] = []
    if streaming:
        with _lock:
            arriving = list((_streaming.get(owner_id) or {}).values())
    return Usage(
        bytes=sum(int(size or 0) for _, size in stored) + int(receiving_bytes or 0) + sum(arriving),
        files=len(stored) + int(receiving_files) + len(arriving),
    )


def _refusal(settings: Settings, used: Usage, *, what: str) -> ServiceError:
    return ServiceError(
        "STORAGE_QUOTA_EXCEEDED",
        f"{what}: your uploads keep {used.bytes} bytes in {used.files} files; the limits are "
        f"{settings.max_stored_bytes_per_owner} bytes and {settings.max_uploads_per_owner} files. "
        "Delete uploads you no longer need, or wait for them to expire.",
        extra={
            "used_bytes": used.bytes,
            "max_bytes": settings.max_stored_bytes_per_owner,
            "uploads": used.files,
            "max_uploads": settings.max_uploads_per_owner,
        },
    )


def check_room(
    session: Session, settings: Settings, owner_id: str, *, size: int, files: int
) -> Usage:
    """Refuse unless ``size`` more bytes and ``files`` more files fit the owner's quota, the
    uploads streaming in this process counted; the owner's usage in the database."""
    stored = usage(session, owner_id, streaming=False)
    used = usage(session, owner_id)
    if used.bytes + size > settings.max_stored_bytes_per_owner:
        raise _refusal(settings, stored, what=f"{size} more bytes do not fit")
    if used.files + files > settings.max_uploads_per_owner:
        raise _refusal(settings, stored, what="one more file does not fit")
    return stored


def largest_file(session: Session, owner_id: str) -> int:
    """The size of the owner's largest stored file: how far a copy of it may pass the quota."""
    size = session.scalar(
        select(func.max(Upload.size)).where(
            Upload.owner_id == owner_id, Upload.status == UploadStatus.READY.value
        )
    )
    return int(size or 0)


class Reservation:
    """A multipart upload of ``owner_id`` streaming in: its bytes count as they arrive.

    ``base`` is the owner's usage when it began (read from the database); other uploads of the
    owner streaming in this process at the same time are added at every chunk.
    """

    def __init__(self, settings: Settings, owner_id: str, base: Usage, *, allowance: int = 0):
        self.settings = settings
        self.owner_id = owner_id
        self.base = base
        self.allowance = allowance
        self.received = 0
        self._id = next(_ids)

    def __enter__(self) -> Reservation:
        with _lock:
            mine = _streaming.setdefault(self.owner_id, {})
            if any(key in _allowed for key in mine):
                self.allowance = 0  # another upload of the owner streams on the allowance
            mine[self._id] = 0
            if self.allowance:
                _allowed.add(self._id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with _lock:
            _allowed.discard(self._id)
            mine = _streaming.get(self.owner_id, {})
            mine.pop(self._id, None)
            if not mine:
                _streaming.pop(self.owner_id, None)

    def add(self, size: int) -> None:
        """Count ``size`` more bytes; STORAGE_QUOTA_EXCEEDED the moment they pass the quota."""
        with _lock:
            mine = _streaming.setdefault(self.owner_id, {})
            others = sum(v for k, v in mine.items() if k != self._id)
            total = self.base.bytes + others + self.received + size
            if total > self.settings.max_stored_bytes_per_owner + self.allowance:
                used = self.base.plus(others + self.received, 0)
                raise _refusal(self.settings, used, what="the upload passed the quota")
            self.received += size
            mine[self._id] = self.received
