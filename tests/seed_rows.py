"""Rows written straight into the service's database, and objects into its storage, as the
service leaves them: for the tests that judge what is kept (the sweeper, day folders, metrics,
the schema) on any database and storage, without the API in between.

Import the module and call its functions by their module name (``seed_rows.upload(...)``).
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from beatsync.service.db import Database, Job, Owner, Upload, UploadStatus
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.storage import Storage
from beatsync.service.stored import data_key

__all__ = ["job", "owner", "put", "upload"]


def owner(db: Database, owner_id: str | None = None) -> str:
    """An anonymous owner: ``owner_id`` (added unless it is there already) or a new one."""
    made = owner_id or new_id("own")
    with db.session() as session:
        if session.get(Owner, made) is None:
            session.add(Owner(id=made, kind="anonymous"))
    return made


def put(storage: Storage, key: str, content: bytes) -> None:
    """Store ``content`` at ``key``."""
    with tempfile.TemporaryDirectory() as folder:
        spare = Path(folder) / "object"
        spare.write_bytes(content)
        storage.put_file(key, spare)


def upload(
    db: Database,
    owner_id: str,
    content: bytes,
    *,
    upload_id: str | None = None,
    key: str | None = None,
    expires_in: timedelta = timedelta(days=1),
    storage: Storage | None = None,
) -> str:
    """A ready upload of ``content`` whose object is ``key`` (its own folder's by default),
    stored into ``storage`` when one is given; it expires ``expires_in`` from now (negative:
    expired already)."""
    made = upload_id or new_id("upl")
    stored_at = key or data_key(made)
    with db.session() as session:
        session.add(
            Upload(
                id=made,
                owner_id=owner_id,
                size=len(content),
                offset=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                status=UploadStatus.READY.value,
                storage_key=stored_at,
                expires_at=utcnow() + expires_in,
            )
        )
    if storage is not None:
        put(storage, stored_at, content)
    return made


def job(db: Database, owner_id: str, *, job_id: str | None = None, **values: Any) -> str:
    """A job of ``owner_id`` with the columns ``values`` (status, times, result…); its uploads
    need not exist unless given as ``dance_upload_id`` and ``bgm_upload_id``."""
    made = job_id or new_id("job")
    columns: dict[str, Any] = {
        "dance_upload_id": new_id("upl"),
        "bgm_upload_id": new_id("upl"),
        "cache_key": made,
        "options": {},
        **values,
    }
    with db.session() as session:
        session.add(Job(id=made, owner_id=owner_id, **columns))
    return made
