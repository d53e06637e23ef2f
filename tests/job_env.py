"""A job's world without the API: a migrated database, storage, an owner, uploads and job rows.

The runner tests (embedded and Celery) make their jobs here, as the API would have left them,
and read back what the run wrote.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from beatsync.service.config import Settings, load_settings
from beatsync.service.db import Database, Job, Owner, Upload, UploadStatus, migrate
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.layout import job_folder, upload_folder
from beatsync.service.storage import LocalStorage
from beatsync.testkit import BuiltCase

__all__ = ["FlakyStorage", "JobEnv"]


class JobEnv:
    """Settings under ``root/data`` (one worker unless ``overrides`` say otherwise)."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        overrides = {"workers": 1, **overrides}
        self.settings: Settings = load_settings(
            data_dir=root / "data", min_free_disk_mb=0, log_json=False, **overrides
        )
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.settings.database)
        self.db = Database(self.settings.database)
        self.storage = LocalStorage(self.settings.storage_root)
        self.owner = new_id("own")
        with self.db.session() as session:
            session.add(Owner(id=self.owner, kind="anonymous"))

    def upload(self, path: Path) -> str:
        """A ready upload holding a copy of ``path``."""
        upload_id = new_id("upl")
        copy = self.settings.data_dir / f"{upload_id}.part"
        shutil.copyfile(path, copy)
        key = f"{upload_folder(upload_id)}/data"
        size = self.storage.put_file(key, copy)
        with self.db.session() as session:
            session.add(
                Upload(
                    id=upload_id,
                    owner_id=self.owner,
                    filename=path.name,
                    size=size,
                    offset=size,
                    status=UploadStatus.READY.value,
                    storage_key=key,
                    expires_at=utcnow() + timedelta(hours=24),
                )
            )
        return upload_id

    def job(self, case: BuiltCase, options: dict[str, Any] | None = None, **row: Any) -> str:
        """A queued job (unless ``row`` says otherwise) on the case's two files."""
        job_id = new_id("job")
        dance, bgm = self.upload(case.dance), self.upload(case.bgm)
        with self.db.session() as session:
            session.add(
                Job(
                    id=job_id,
                    owner_id=self.owner,
                    dance_upload_id=dance,
                    bgm_upload_id=bgm,
                    options={"nudge_ms": 0.0, "trim": True, **(options or {})},
                    cache_key=job_id,
                    **row,
                )
            )
        return job_id

    def row(self, job_id: str) -> Job:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def work(self, job_id: str) -> Path:
        return self.settings.spool_root / "work" / job_id

    def stored(self, job_id: str) -> list[str]:
        return list(self.storage.keys(f"{job_folder(job_id)}"))

    def close(self) -> None:
        self.db.dispose()


class FlakyStorage(LocalStorage):
    """Local storage whose ``fetch`` or ``put_file`` raises ``errors`` one after the other
    (``None``: that call succeeds)."""

    def __init__(
        self,
        root: Path,
        *,
        fetch: list[BaseException | None],
        put: list[BaseException | None],
    ):
        super().__init__(root)
        self.fetch_errors, self.put_errors = fetch, put
        self.calls = {"fetch": 0, "put_file": 0}

    def fetch(self, key: str, dest: Path) -> Path:
        self.calls["fetch"] += 1
        error = self.fetch_errors.pop(0) if self.fetch_errors else None
        if error is not None:
            raise error
        return super().fetch(key, dest)

    def put_file(self, key: str, path: Path) -> int:
        self.calls["put_file"] += 1
        error = self.put_errors.pop(0) if self.put_errors else None
        if error is not None:
            raise error
        return super().put_file(key, path)
