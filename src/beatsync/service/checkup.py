"""Direct uploads are checked where their bytes already are: by the first job run that fetches
them, not by the API.

Completing a direct upload (:mod:`beatsync.service.direct`) only joins its parts in the store
and records it ``ready`` and *unchecked*: no sha256, no media facts, and no byte read by the
API. The run of the first job that uses it has the file on its own disk anyway; it hashes and
probes it there (:func:`check_fetched`) under the same limits as any upload. A file that is
no usable media turns the upload ``rejected`` with the probe's code (``INVALID_FORMAT``,
``NO_AUDIO_TRACK``, ``DURATION_TOO_LONG``…), its object is deleted, and the job fails with that
code, without a retry. A good one gains its sha256 and media facts, after which later uploads
of the same bytes by the same owner find it (:func:`beatsync.service.stored.shared_copy`), as
they find any other.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, update

from .config import Settings
from .db import Database, Upload, UploadStatus
from .db.models import utcnow
from .errors import ServiceError
from .layout import upload_folder
from .probing import read_here
from .storage import Storage
from .stored import data_key
from .uploads import READ_CHUNK, inspect_media

__all__ = ["UNCHECKED", "check_fetched", "is_unchecked", "settle_unchecked"]

logger = logging.getLogger(__name__)

UNCHECKED = "unchecked"
"""The key in an upload's ``tus_metadata`` that marks it stored but not yet hashed or probed."""


def is_unchecked(upload: Upload) -> bool:
    return bool((upload.tus_metadata or {}).get(UNCHECKED))


def settle_unchecked(db: Database, settings: Settings, upload_id: str) -> Upload:
    """Record a receiving upload whose bytes are all in the store as ``ready`` and unchecked
    (idempotent: an upload settled already is answered as it is)."""
    with db.session() as session:
        row = session.get(Upload, upload_id)
        if row is None:
            raise ServiceError("NOT_FOUND", f"no upload {upload_id}")
        if row.status != UploadStatus.RECEIVING.value:
            return row
        now = utcnow()
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Upload)
                .where(Upload.id == upload_id, Upload.status == UploadStatus.RECEIVING.value)
                .values(
                    status=UploadStatus.READY.value,
                    storage_key=data_key(upload_id),
                    tus_metadata={**(row.tus_metadata or {}), UNCHECKED: True},
                    updated_at=now,
                    expires_at=now + timedelta(hours=settings.upload_ttl_h),
                )
                .execution_options(synchronize_session=False)
            ),
        )
    with db.session() as session:
        settled = session.get(Upload, upload_id)
    if settled is None:
        raise ServiceError("NOT_FOUND", f"upload {upload_id} was deleted")
    if result.rowcount == 1:
        logger.info("upload %s ready, to be checked by its first run", upload_id)
    return settled


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_fetched(
    db: Database, storage: Storage, settings: Settings, upload_id: str, path: Path
) -> dict[str, Any]:
    """The media facts of the upload whose file a run fetched to ``path``; an unchecked upload
    is hashed and probed here first. A coded :class:`ServiceError` when the file is refused
    (the upload is then ``rejected`` and its object deleted)."""
    with db.session() as session:
        row = session.get(Upload, upload_id)
    if row is None:
        raise ServiceError("FILE_NOT_FOUND", f"no upload {upload_id}")
    if not is_unchecked(row):
        return dict(row.media or {})
    metadata = {k: v for k, v in (row.tus_metadata or {}).items() if k != UNCHECKED}
    unsettled = (
        Upload.id == upload_id,
        Upload.status == UploadStatus.READY.value,
        Upload.sha256.is_(None),
    )
    digest = _sha256(path)
    try:
        # The run's process is this file's alone: the probe needs no reader process of its own.
        media = inspect_media(path, settings, read=read_here)
    except ServiceError as exc:
        with db.session() as session:
            refused = cast(
                CursorResult[Any],
                session.execute(
                    update(Upload)
                    .where(*unsettled)
                    .values(
                        status=UploadStatus.REJECTED.value,
                        sha256=digest,
                        storage_key=None,
                        error_code=exc.code,
                        error_message=exc.detail,
                        tus_metadata=metadata,
                        updated_at=utcnow(),
                    )
                    .execution_options(synchronize_session=False)
                ),
            )
        if refused.rowcount == 1:
            storage.delete_prefix(upload_folder(upload_id))
            logger.info("upload %s rejected by its first run: %s", upload_id, exc.code)
        raise
    with db.session() as session:
        session.execute(
            update(Upload)
            .where(*unsettled)
            .values(sha256=digest, media=media, tus_metadata=metadata, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    logger.info("upload %s checked by its first run", upload_id)
    return media
