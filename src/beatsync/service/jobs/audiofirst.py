"""Audio-first jobs on the service side: what the client sends, and the frames the run asks for.

An audio-first job row carries the checked ``manifest``, the client's thumbnails (``thumbnails``,
one 96×54 grey picture per entry of ``thumbnail_samples``) and, while its run waits for frames,
``frames_request``. The exchange::

    run (worker)                              client
    frames_request = {id, samples}   ──▶      sees it in GET /jobs/{id} (or SSE, WebSocket)
    polls the row                    ◀──      POST /jobs/{id}/frames {request_id, thumbnails}
    reads the thumbnails, goes on             (thumbnails appended, frames_request cleared)

A run that hears nothing within ``frames_wait_s`` cuts without checking the picture.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from beatsync.engine.cut.clientframes import THUMB_BYTES, FramesUnavailableError, split_thumbnails
from beatsync.engine.cut.picture import Thumb
from beatsync.engine.errors import ManifestError
from beatsync.engine.media.manifest import Manifest, ManifestLimits, parse_manifest
from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus, Upload
from beatsync.service.db.models import utcnow
from beatsync.service.errors import ServiceError

__all__ = [
    "AUDIO_FIRST_KEYS",
    "AudioFirstInput",
    "FrameWaiter",
    "answer_frames",
    "check_audio_first",
    "decode_thumbnails",
]

log = logging.getLogger(__name__)

_JOBS = cast(Table, Job.__table__)
# Options of an audio-first job beyond JobOptions: they make its cache key and follow variants.
AUDIO_FIRST_KEYS = ("audio_first", "manifest_sha256", "keyframes_sha256")
_DURATION_TOLERANCE_S = 1.0


@dataclass(frozen=True, slots=True)
class AudioFirstInput:
    """A checked audio-first request: the manifest as sent and typed, the keyframe thumbnails."""

    manifest_json: dict[str, Any]
    manifest: Manifest
    thumbnails: bytes
    samples: list[int]

    def options(self) -> dict[str, Any]:
        """The keys added to the job's ``options`` (and so to its cache key)."""
        canonical = json.dumps(self.manifest_json, sort_keys=True, separators=(",", ":"))
        return {
            "audio_first": True,
            "manifest_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
            "keyframes_sha256": hashlib.sha256(self.thumbnails).hexdigest(),
        }


def decode_thumbnails(text: str, count: int, where: str) -> bytes:
    """``count`` thumbnails from base64, or a coded refusal naming ``where``."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError("INVALID_MANIFEST", f"{where}: not base64") from exc
    if len(data) != count * THUMB_BYTES:
        raise ServiceError(
            "INVALID_MANIFEST",
            f"{where}: {len(data)} bytes are not {count} thumbnails of 96×54 grey bytes "
            f"({count * THUMB_BYTES} bytes)",
        )
    return data


def check_audio_first(
    manifest: Mapping[str, Any],
    keyframes: str | None,
    dance: Upload,
    settings: Settings,
    options: Mapping[str, Any],
) -> AudioFirstInput:
    """Check an audio-first request against itself, the limits and the dance upload's sound.

    Raises
    ------
    ServiceError
        ``INVALID_MANIFEST`` for a manifest or thumbnails that do not hold together or do not
        fit the sound; ``VALIDATION_ERROR`` for options an audio-first job cannot take.
    """
    if options.get("reencode") or options.get("max_height") is not None:
        raise ServiceError(
            "VALIDATION_ERROR", "options.reencode: the client copies the picture itself"
        )
    limits = ManifestLimits(
        max_samples=settings.max_manifest_samples, max_duration=settings.max_duration_s
    )
    try:
        parsed = parse_manifest(manifest, limits=limits)
    except ManifestError as exc:
        raise ServiceError("INVALID_MANIFEST", exc.message) from exc
    media = dance.media or {}
    heard = media.get("duration_s")
    if isinstance(heard, int | float) and abs(heard - parsed.duration) > _DURATION_TOLERANCE_S:
        raise ServiceError(
            "INVALID_MANIFEST",
            f"video_manifest.duration: {parsed.duration:.3f} s, but the dance upload's sound "
            f"lasts {heard:.3f} s",
        )
    video = parsed.video
    samples = list(video.sync) if video.sync is not None else list(range(video.sample_count))
    data = b""
    if keyframes is not None:
        data = decode_thumbnails(keyframes, len(samples), "thumbnails.keyframes")
    else:
        samples = []
    return AudioFirstInput(dict(manifest), parsed, data, samples)


def answer_frames(session: Session, job: Job, request_id: str, thumbnails: str) -> Job:
    """Store the client's answer to the job's open frame request and close the request.

    Raises
    ------
    ServiceError
        ``FRAMES_NOT_REQUESTED`` when the job waits for no frames or for another request;
        ``INVALID_MANIFEST`` when the thumbnails are not the ones asked for.
    """
    asked = job.frames_request or {}
    if job.status != JobStatus.RUNNING.value or asked.get("id") != request_id:
        raise ServiceError(
            "FRAMES_NOT_REQUESTED", f"job {job.id} is not waiting for frames {request_id}"
        )
    samples = [int(s) for s in asked.get("samples", [])]
    data = decode_thumbnails(thumbnails, len(samples), "thumbnails")
    known = (job.thumbnail_samples or []) + samples
    changed = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.RUNNING.value)
        .values(
            thumbnails=(job.thumbnails or b"") + data,
            thumbnail_samples=known,
            frames_request=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if not getattr(changed, "rowcount", 0):
        raise ServiceError("FRAMES_NOT_REQUESTED", f"job {job.id} no longer waits for them")
    session.refresh(job)
    log.info("job %s got %d frames", job.id, len(samples), extra={"job_id": job.id})
    return job


class FrameWaiter:
    """The run's side: ask the client for frames through the row, wait for the answer.

    ``held`` are the conditions of every write to the running row (the run's own); ``beat``
    is called while waiting (progress and stop checks); ``wait_s`` bounds the wait.
    """

    def __init__(
        self,
        db: Database,
        job_id: str,
        *,
        held: tuple[Any, ...],
        beat: Callable[[], None],
        wait_s: float,
        poll_s: float = 0.05,
    ) -> None:
        self.db, self.job_id, self.held = db, job_id, held
        self.beat, self.wait_s, self.poll_s = beat, wait_s, poll_s

    def __call__(self, samples: tuple[int, ...]) -> dict[int, Thumb]:
        request = {"id": secrets.token_urlsafe(8), "samples": list(samples)}
        with self.db.engine.begin() as conn:
            asked = conn.execute(
                update(_JOBS)
                .where(*self.held)
                .values(frames_request=request, heartbeat_at=utcnow())
            )
        if asked.rowcount != 1:
            raise FramesUnavailableError("the job is no longer running here")
        log.info(
            "job %s asks its client for %d frames",
            self.job_id,
            len(samples),
            extra={"job_id": self.job_id},
        )
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            self.beat()
            with self.db.engine.connect() as conn:
                row = conn.execute(
                    select(
                        _JOBS.c.frames_request, _JOBS.c.thumbnails, _JOBS.c.thumbnail_samples
                    ).where(_JOBS.c.id == self.job_id)
                ).first()
            if row is not None and row.frames_request is None:
                known = split_thumbnails(row.thumbnails or b"", row.thumbnail_samples or [])
                return {s: known[s] for s in samples if s in known}
            time.sleep(self.poll_s)
        with self.db.engine.begin() as conn:
            conn.execute(update(_JOBS).where(*self.held).values(frames_request=None))
        raise FramesUnavailableError(f"the client sent no frames within {self.wait_s:g} s")
