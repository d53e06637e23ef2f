"""Stored upload files: where they are kept, and copies shared within one owner.

A ready upload's bytes are one object in storage, ``<folder>/data`` in the folder of the upload
that first stored them (:func:`beatsync.service.layout.upload_folder`: under the day that
upload was made). A later upload of the same owner with the same sha256 and size
refers to that object (its ``storage_key``) instead of storing a copy. An object, and the
folder it sits in, stays while any upload row refers to it: deleting an upload, the sweeper's
expiry and its orphan search all ask :func:`referenced_folders` before removing a folder.

Owners never share objects: finding a file by its hash would hand it to anyone who knows the
hash. A copy may refer to an object in an earlier day's folder: the sweeper retires a day's
folder only once no row refers to anything in it (:mod:`beatsync.service.cleanup.days`), so
the object stays as long as a copy refers to it, whatever its day. Two uploads racing (one
being deleted as the last reference while another finds it as its copy) can leave the new one
without its file; the sweeper then marks it ``rejected`` (``FILE_NOT_FOUND``), as it does for
any lost file.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import Upload, UploadStatus
from .layout import upload_folder
from .storage import Storage

__all__ = ["data_key", "referenced_folders", "release_files", "shared_copy"]


def data_key(upload_id: str) -> str:
    return f"{upload_folder(upload_id)}/data"


def shared_copy(
    session: Session, storage: Storage, owner_id: str, sha256: str, size: int
) -> str | None:
    """The storage key of a ready upload of ``owner_id`` with these bytes, if its object is
    still there; a new upload of the same bytes refers to it instead of storing a copy."""
    keys = session.scalars(
        select(Upload.storage_key)
        .where(
            Upload.owner_id == owner_id,
            Upload.sha256 == sha256.lower(),
            Upload.size == size,
            Upload.status == UploadStatus.READY.value,
            Upload.storage_key.is_not(None),
        )
        .order_by(Upload.created_at)
    )
    seen: set[str] = set()
    for key in keys:
        if key and key not in seen and storage.size(key) == size:
            return key
        seen.add(key or "")
    return None


def _folder(key: str) -> str | None:
    """The id of the upload whose folder holds ``key`` (either layout)."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "uploads":
        return None
    upload_id = parts[-2]
    return upload_id if key == data_key(upload_id) else None


def referenced_folders(session: Session, folder_ids: list[str]) -> set[str]:
    """Which of the upload folders (by upload id) an upload row still needs: its own upload's
    (ready or receiving), or one whose stored object another upload refers to."""
    if not folder_ids:
        return set()
    owners = session.scalars(
        select(Upload.id).where(
            Upload.id.in_(folder_ids),
            Upload.status.in_((UploadStatus.READY.value, UploadStatus.RECEIVING.value)),
        )
    )
    keys = session.scalars(
        select(Upload.storage_key).where(
            Upload.storage_key.in_([data_key(f) for f in folder_ids]),
            Upload.status == UploadStatus.READY.value,
        )
    )
    return set(owners) | {f for f in map(_folder, (k for k in keys if k)) if f}


def release_files(session: Session, storage: Storage, upload_id: str, key: str | None) -> int:
    """After the row of ``upload_id`` (which referred to ``key``) is gone: delete each stored
    folder that no upload needs any more; the number of files deleted."""
    folders = {upload_id}
    if key and _folder(key):
        folders.add(str(_folder(key)))
    needed = referenced_folders(session, sorted(folders))
    return sum(storage.delete_prefix(upload_folder(f)) for f in sorted(folders - needed))
