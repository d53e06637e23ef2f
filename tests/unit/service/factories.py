"""Rows and stored files for job tests: ready uploads, and jobs moved the way a worker moves them.

The API under test reads the same database and storage folder, so writing a row here is how a
test plays the worker (queued → running → succeeded) or the upload path (a probed, ready file).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus, Upload, UploadStatus
from beatsync.service.db.models import new_id, utcnow
from beatsync.service.layout import job_folder, upload_folder
from beatsync.service.storage import LocalStorage

DANCE_MEDIA = {
    "duration_s": 20.0,
    "has_video": True,
    "has_audio": True,
    "width": 640,
    "height": 360,
    "fps": 30.0,
    "video_codec": "h264",
    "audio_codec": "aac",
    "rotation": 0,
}
AUDIO_MEDIA = {
    **DANCE_MEDIA,
    "has_video": False,
    "width": None,
    "height": None,
    "fps": None,
    "video_codec": None,
}

# What run_job writes into a succeeded row (storage keys filled in by :meth:`Rows.succeed`).
RESULT = {
    "confidence": 0.91,
    "mapping": {"offset_s": 12.5, "scale": 1.0001, "drift_ppm": 100.0},
    "candidates": [
        {
            "index": 0,
            "offset_s": 44.5,
            "scale": 1.0,
            "drift_ppm": 0.0,
            "confidence": 0.05,
            "support": 0.4,
        },
        {
            "index": 1,
            "offset_s": 76.25,
            "scale": 0.98,
            "drift_ppm": -20000.0,
            "confidence": 0.02,
            "support": 0.3,
        },
    ],
    "pieces": [
        {"start_s": 1.2, "end_s": 17.5, "offset_s": 12.5, "scale": 1.0001, "drift_ppm": 100.0}
    ],
    "cut": {"start_s": 1.5, "end_s": 17.25, "duration_s": 15.75},
    "music": {"start_s": 1.2, "end_s": 17.5, "duration_s": 16.3},
    "output": {"duration_s": 15.75, "size_bytes": 0, "width": 640, "height": 360},
    "timings": {"stages": [], "total_s": 0.4},
}
FILE_NAMES = {
    "video": "output.mp4",
    "report": "report.json",
    "plot": "plot.png",
    "poster": "poster.jpg",
}


def owner_id(client: TestClient, headers: dict[str, str]) -> str:
    me = client.get("/api/v1/sessions/me", headers=headers)
    assert me.status_code == 200
    owner: str = me.json()["owner_id"]
    return owner


def seeded_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Rows:
    """Direct access to the service's database and storage folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database)
        self.storage = LocalStorage(settings.storage_root)
        self._spare = settings.data_dir / "factory"
        self._spare.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.db.dispose()

    def store(self, key: str, content: bytes) -> None:
        spare = self._spare / new_id("f")
        spare.write_bytes(content)
        self.storage.put_file(key, spare)

    def upload(
        self,
        owner: str,
        *,
        content: bytes | None = None,
        status: UploadStatus = UploadStatus.READY,
        media: dict[str, Any] | None = None,
        error_code: str | None = None,
        expired: bool = False,
        stored: bool = True,
    ) -> str:
        """An upload of ``owner``, its bytes under ``uploads/{id}/data`` unless ``stored=False``."""
        upload_id = new_id("upl")
        data = content if content is not None else seeded_bytes(len(upload_id), 4096)
        ready = status is not UploadStatus.RECEIVING
        with self.db.session() as session:
            session.add(
                Upload(
                    id=upload_id,
                    owner_id=owner,
                    filename="clip.mp4",
                    size=len(data),
                    offset=len(data) if ready else len(data) // 2,
                    sha256=hashlib.sha256(data).hexdigest() if ready else None,
                    status=status.value,
                    error_code=error_code,
                    error_message=f"refused: {error_code}" if error_code else None,
                    media=(DANCE_MEDIA if media is None else media)
                    if status is UploadStatus.READY
                    else None,
                    storage_key=f"{upload_folder(upload_id)}/data" if ready else None,
                    expires_at=utcnow() + timedelta(hours=-1 if expired else 24),
                )
            )
        if ready and stored:
            self.store(f"{upload_folder(upload_id)}/data", data)
        return upload_id

    def job(self, job_id: str) -> Job:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None, job_id
            return job

    def exists(self, job_id: str) -> bool:
        with self.db.session() as session:
            return session.get(Job, job_id) is not None

    def update(self, job_id: str, **values: Any) -> None:
        with self.db.session() as session:
            job = session.get(Job, job_id)
            assert job is not None, job_id
            for name, value in values.items():
                setattr(job, name, value)

    def run(self, job_id: str, stage: str, progress: float) -> None:
        now = utcnow()
        self.update(
            job_id,
            status=JobStatus.RUNNING.value,
            stage=stage,
            progress=progress,
            message=f"{stage}…",
            started_at=self.job(job_id).started_at or now,
            heartbeat_at=now,
            attempts=1,
        )

    def succeed(
        self,
        job_id: str,
        *,
        files: dict[str, bytes] | None = None,
        result: dict[str, Any] | None = None,
    ) -> dict[str, bytes]:
        """Finish the job as run_job would: its files stored, the result row written."""
        contents = files or {
            "video": seeded_bytes(1, 3 * 1024 * 1024 + 123),
            "report": b'{"schema_version": 1}\n',
            "plot": b"\x89PNG\r\n\x1a\n" + seeded_bytes(2, 2000),
            "poster": b"\xff\xd8\xff\xe0" + seeded_bytes(3, 1500),
        }
        keys = {}
        for kind, content in contents.items():
            keys[kind] = f"{job_folder(job_id)}/{FILE_NAMES[kind]}"
            self.store(keys[kind], content)
        row = dict(result or RESULT)
        row["output"] = {**row["output"], "size_bytes": len(contents.get("video", b""))}
        row["files"] = keys
        now = utcnow()
        self.update(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            stage="done",
            progress=1.0,
            message="done",
            result=row,
            finished_at=now,
            expires_at=now + timedelta(hours=72),
        )
        return contents

    def fail(self, job_id: str, code: str = "MUSIC_MISMATCH", detail: str = "no match") -> None:
        self.update(
            job_id,
            status=JobStatus.FAILED.value,
            error_code=code,
            error_message=detail,
            finished_at=utcnow(),
            attempts=1,
        )


def files_under(storage_root: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in (storage_root / prefix).rglob("*") if p.is_file())


# --- requests straight to the app -----------------------------------------------------------


@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    consumed: int


def asgi_request(
    client: TestClient,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    *,
    disconnect: bool = False,
) -> Exchange:
    """One request straight to the app; ``consumed`` counts the body bytes the app pulled.
    With ``disconnect`` the client goes away when ``chunks`` run out."""
    consumed = 0
    messages: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        nonlocal consumed
        chunk = next(chunks, None)
        if chunk is None:
            if disconnect:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        consumed += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Exchange(
        status=start["status"],
        headers={k.decode(): v.decode() for k, v in start["headers"]},
        body=body,
        consumed=consumed,
    )
