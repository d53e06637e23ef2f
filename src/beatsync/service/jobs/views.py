"""A job as clients see it: the Job JSON of the poll answer and of both progress streams.

Result files are stored under keys; here they become URLs signed at read time (or the store's
own URLs), and the error gets its message in the client's language.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from beatsync.service.codes import Locale, message
from beatsync.service.config import Settings
from beatsync.service.db.models import Job, utcnow
from beatsync.service.layout import job_folder
from beatsync.service.signing import signed_path
from beatsync.service.storage import Storage

__all__ = ["API", "FILE_NAMES", "file_url", "job_fingerprint", "job_json"]

API = "/api/v1"
# Result kinds as the row names them, and the one file name each may have.
FILE_NAMES = {
    "video": "output.mp4",
    "report": "report.json",
    "plot": "plot.png",
    "poster": "poster.jpg",
    "audio": "audio.m4a",  # an audio-first job's clean track
}


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def job_fingerprint(job: Job) -> tuple[Any, ...]:
    """What a progress stream compares to decide that a job changed (signatures excluded)."""
    return (
        job.status,
        job.stage,
        job.progress,
        job.message,
        job.error_code,
        job.attempts,
        job.finished_at,
        job.result is not None,
        (job.frames_request or {}).get("id"),
    )


def job_json(job: Job, *, settings: Settings, storage: Storage, locale: Locale) -> dict[str, Any]:
    """The job as clients see it: result files as URLs signed now, the error in their language."""
    error = None
    if job.error_code:
        error = {
            "code": job.error_code,
            "message": message(job.error_code, locale),
            "detail": job.error_message,
        }
    base = f"{API}/jobs/{job.id}"
    audio_first = bool((job.options or {}).get("audio_first"))
    links = {"self": base, "events": f"{base}/events", "ws": f"{base}/ws"}
    if audio_first:
        links["frames"] = f"{base}/frames"
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "message": job.message,
        "error": error,
        "dance_upload_id": job.dance_upload_id,
        "bgm_upload_id": job.bgm_upload_id,
        "parent_id": job.parent_id,
        "options": job.options,
        "audio_first": audio_first,
        # An audio-first run waiting for the client: {id, samples} to answer at links.frames.
        "frames_request": job.frames_request,
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "result": _result_json(job, settings, storage) if job.result else None,
        "links": links,
    }


def _result_json(job: Job, settings: Settings, storage: Storage) -> dict[str, Any]:
    result = job.result or {}
    # Past its expiry the sweeper removes the files (or already has): link nothing.
    expired = job.expires_at is not None and job.expires_at <= utcnow()
    stored = {} if expired else result.get("files") or {}
    files: dict[str, str | None] = {}
    audio_first = bool((job.options or {}).get("audio_first"))
    for kind, name in FILE_NAMES.items():
        if kind == "audio" and not audio_first:
            continue  # a track of its own only for a client that copies the picture
        key = stored.get(kind)
        files[kind] = file_url(settings, storage, job.id, name) if key else None
    shown = {
        "confidence": result.get("confidence"),
        "mapping": result.get("mapping"),
        "pieces": result.get("pieces") or [],
        "candidates": result.get("candidates") or [],
        "cut": result.get("cut"),
        "output": result.get("output"),
        "files": files,
    }
    if audio_first:
        shown["assembly"] = _assembly(result, files)
    return shown


def _assembly(result: dict[str, Any], files: dict[str, str | None]) -> dict[str, Any] | None:
    """How an audio-first client assembles its output: the signed audio URL and the samples."""
    assembly = result.get("assembly")
    if not assembly:
        return None
    return {"audio_url": files.get("audio"), **assembly}


def file_url(settings: Settings, storage: Storage, job_id: str, name: str) -> str:
    """Where a client fetches a result file: a storage URL when the store offers one, else a
    signed path of this API that needs no Authorization header."""
    presigned = storage.presigned_url(
        f"{job_folder(job_id)}/{name}", expires_s=settings.signed_url_ttl_s
    )
    if presigned:
        return presigned
    return signed_path(
        settings.secret_key.get_secret_value(),
        f"{API}/files/{job_id}/{name}",
        ttl_s=settings.signed_url_ttl_s,
    )
