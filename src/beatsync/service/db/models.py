"""The tables: owners and their tokens, uploads, jobs, and the metrics workers record.

Times are timezone-aware UTC. Ids are random URL-safe strings, so they can be handed to clients
without revealing how many rows exist. The job row is the truth about a job: queue messages and
progress streams only point at it.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "Job",
    "JobStatus",
    "MetricSample",
    "Owner",
    "Token",
    "Upload",
    "UploadStatus",
    "new_id",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id such as ``job_3J8xk…`` (prefix, underscore, 22 URL-safe characters)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone; PostgreSQL answers in
    the session's zone, which a server configured for local time makes other than UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class UploadStatus(enum.StrEnum):
    RECEIVING = "receiving"  # bytes still arriving (tus)
    READY = "ready"  # complete, probed, usable
    REJECTED = "rejected"  # complete but unusable; error_code says why


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # anonymous | operator
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    __tablename__ = "tokens"

    # sha256 of the secret token; the token itself is never stored.
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (
        Index("ix_uploads_owner_sha", "owner_id", "sha256"),
        # For prefix searches (LIKE 'uploads/2026/12/07/%') as well as equality: in byte order
        # on PostgreSQL, and in the NOCASE collation SQLite's LIKE compares in (migration 0007).
        Index(
            "ix_uploads_storage_key",
            "storage_key",
            postgresql_ops={"storage_key": "varchar_pattern_ops"},
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)  # declared total
    offset: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes received
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=UploadStatus.RECEIVING.value)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    media: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # probe facts
    storage_key: Mapped[str | None] = mapped_column(String(255), default=None)
    tus_metadata: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_address_status", "client_address", "status"),
        Index("ix_jobs_finished_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    dance_upload_id: Mapped[str] = mapped_column(String(40))
    bgm_upload_id: Mapped[str] = mapped_column(String(40))
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None)  # a variant's origin
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    stage: Mapped[str | None] = mapped_column(String(16), default=None)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # When a watch last sent the queued job again: one replica claims each resend.
    resent_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    # Where the request that created it came from: one address gets a share of the queue.
    client_address: Mapped[str | None] = mapped_column(String(64), default=None)
    # Audio-first jobs: the picture's sample tables, the client's 96×54 grey thumbnails laid
    # end to end (one per entry of ``thumbnail_samples``) and the frames the run waits for.
    # Deferred: listing jobs never loads them.
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, deferred=True)
    thumbnails: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    thumbnail_samples: Mapped[list[int] | None] = mapped_column(JSON, default=None, deferred=True)
    frames_request: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class MetricSample(Base):
    """A running total that any process adds to: a counter, or a histogram's bucket or sum.

    Jobs end in worker processes that Prometheus cannot scrape, so they add their observations
    here and every API replica reads them back at ``/metrics`` (:mod:`beatsync.service.metrics`).
    ``labels`` is the canonical JSON of the sample's labels.
    """

    __tablename__ = "metric_samples"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    labels: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
