"""Uploads that go straight from the client to the store (S3 mode); the API signs and records.

A client that opts in declares the file (``POST /api/v1/uploads/direct``) and gets one
presigned URL per part: it ``PUT``\\ s bytes ``[(n-1)·part_size, n·part_size)`` of the file to
part ``n``'s URL, in any order and again after a failure, then asks the API to complete. The
API joins the parts (S3 ``CompleteMultipartUpload``) and records the upload ``ready`` but
unchecked: no byte of the file passes through the API, neither from the client nor from the
store. The first job run that fetches it hashes and probes it (:mod:`beatsync.service.checkup`):
a file that is no usable media is refused there with its code, and the upload turns
``rejected``. Parts never completed are dropped with the upload
when it expires (its multipart upload is aborted).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, NoReturn, cast

from sqlalchemy.orm import Session

from .checkup import settle_unchecked
from .config import Settings
from .db import Database, Upload, UploadStatus
from .errors import ServiceError
from .quota import check_room
from .resumable import commit_offset, receiving_upload
from .storage import Storage
from .stored import data_key
from .tus_parts import multipart_id, start_parts
from .uploads import delete_upload, get_upload, require_size_allowed

if TYPE_CHECKING:
    from .storage.s3 import S3Storage

__all__ = ["DirectUpload", "complete_direct", "start_direct"]

logger = logging.getLogger(__name__)


class DirectUpload:
    """A new direct upload: its row, part size and one presigned URL per part."""

    def __init__(self, row: Upload, part_size: int, urls: list[str]) -> None:
        self.row = row
        self.part_size = part_size
        self.urls = urls


def _store(settings: Settings, storage: Storage) -> S3Storage:
    if settings.storage != "s3":
        raise ServiceError(
            "VALIDATION_ERROR",
            "direct uploads need S3 storage: send the file by tus or as a form instead",
            status=400,
        )
    return cast("S3Storage", storage)


def start_direct(
    session: Session,
    settings: Settings,
    storage: Storage,
    *,
    owner_id: str,
    filename: str,
    size: int,
    content_type: str | None,
) -> DirectUpload:
    """A ``receiving`` upload of ``size`` bytes whose parts the client sends to the store."""
    store = _store(settings, storage)
    if size <= 0:
        raise ServiceError("VALIDATION_ERROR", "a direct upload needs at least one byte")
    require_size_allowed(size, settings)
    check_room(session, settings, owner_id, size=size, files=1)
    row = receiving_upload(
        settings,
        owner_id=owner_id,
        filename=filename,
        content_type=content_type,
        size=size,
        metadata={"direct": True},
    )
    row.tus_metadata = {**(row.tus_metadata or {}), **start_parts(store, row.id)}
    session.add(row)
    session.flush()
    expires_s = int(settings.tus_expiry_h * 3600)
    urls = [
        store.presigned_part_url(data_key(row.id), multipart_id(row), n, expires_s=expires_s)
        for n in range(1, math.ceil(size / store.part_size) + 1)
    ]
    logger.info("upload %s created for %d bytes in %d direct parts", row.id, size, len(urls))
    return DirectUpload(row, store.part_size, urls)


def _refuse(
    db: Database, storage: Storage, settings: Settings, owner_id: str, upload_id: str, why: str
) -> NoReturn:
    """Parts that cannot make the declared file: the upload goes, and the client is told why."""
    with db.session() as session:
        delete_upload(session, storage, settings, owner_id, upload_id)
    raise ServiceError("VALIDATION_ERROR", f"{why}; the upload was deleted")


def complete_direct(
    db: Database, storage: Storage, settings: Settings, owner_id: str, upload_id: str
) -> Upload:
    """Join the parts the client sent and settle the upload (idempotent)."""
    store = _store(settings, storage)
    with db.session() as session:
        row = get_upload(session, owner_id, upload_id)
    if not (row.tus_metadata or {}).get("direct"):
        raise ServiceError("VALIDATION_ERROR", f"upload {upload_id} is not a direct upload")
    if row.status != UploadStatus.RECEIVING:
        return row
    size = row.size or 0
    key = data_key(upload_id)
    if row.offset != size:
        try:
            store.finish_multipart(key, multipart_id(row), parts=math.ceil(size / store.part_size))
        except FileNotFoundError:
            if store.size(key) is None:  # not joined by an earlier call either
                raise ServiceError(
                    "UPLOAD_INCOMPLETE", "send every part before completing the upload"
                ) from None
        except ValueError as exc:
            _refuse(db, storage, settings, owner_id, upload_id, f"{exc}")
        joined = store.size(key)
        if joined != size:
            _refuse(
                db,
                storage,
                settings,
                owner_id,
                upload_id,
                f"the parts add up to {joined} bytes, not the {size} declared",
            )
        with db.session() as session:
            commit_offset(session, settings, upload_id, old=0, new=size)
    return settle_unchecked(db, settings, upload_id)
