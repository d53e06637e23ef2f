"""Settings: every knob of the service, from ``BEATSYNC_*`` environment variables.

One class, built by :func:`load_settings` and passed down; nothing reads the environment
elsewhere. ``docs/configuration.md`` is generated from this class (``python -m
beatsync.service.docs``), so each field's description is its documentation.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_SECRET",
    "MIN_OPERATOR_KEY_CHARS",
    "MIN_SECRET_CHARS",
    "Settings",
    "load_settings",
    "weak_secret",
]

# The value earlier versions signed with when none was configured: public, so never trusted.
DEFAULT_SECRET = "beatsync-development-secret-change-me"
MIN_SECRET_CHARS = 32
MIN_OPERATOR_KEY_CHARS = 24


def weak_secret(value: str) -> bool:
    """Whether ``value`` is too short or too well known to sign anything with."""
    return (
        len(value) < MIN_SECRET_CHARS
        or value == DEFAULT_SECRET
        or len(set(value)) < 8
        or "change-me" in value.lower()
    )


class Settings(BaseSettings):
    """The service's configuration. Sizes in bytes, durations in seconds unless named otherwise."""

    model_config = SettingsConfigDict(env_prefix="BEATSYNC_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses to start without a strong configured secret key.",
    )
    host: str = Field("127.0.0.1", description="Address `beatsync serve` listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port `beatsync serve` listens on.")
    data_dir: Path = Field(
        Path("data"),
        description="Where the embedded mode keeps its SQLite database, files and spool.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; empty means SQLite at `<data_dir>/beatsync.db`.",
    )
    storage_dir: Path | None = Field(
        None, description="Local storage root; empty means `<data_dir>/files`."
    )
    spool_dir: Path | None = Field(
        None,
        description="Where uploads in progress are written before they are stored; "
        "empty means `<data_dir>/spool`. With local storage, API replicas must share it (with "
        "S3, resumable uploads are kept in the bucket and each replica's spool is its own).",
    )
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Signs result URLs and stream tickets. Empty: a random key is made on first "
        "start and kept in `<data_dir>/secret_key` (embedded mode only; the distributed mode "
        f"and `production` need a configured key of at least {MIN_SECRET_CHARS} characters).",
    )
    api_keys: str = Field(
        "",
        description="Comma-separated operator API keys (`Authorization: Bearer <key>`), each "
        f"at least {MIN_OPERATOR_KEY_CHARS} characters.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses (or `*`) of proxies whose `X-Forwarded-For` "
        "names the client; empty: the peer's address is the client's.",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API from a browser."
    )
    default_locale: Literal["zh-CN", "en"] = Field(
        "zh-CN", description="Language of error messages when Accept-Language names neither."
    )
    log_level: str = Field("INFO", description="Python logging level of the service.")
    log_json: bool | None = Field(
        None,
        description="`true`: one JSON object per line; `false`: one short line for people; "
        "unset: JSON unless the log goes to a terminal.",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long requests in flight (uploads included) may take to "
        "finish before they are cut with a 503.",
    )
    migrate_on_start: bool = Field(
        True, description="Bring the database to the latest migration when the API starts."
    )
    queue: Literal["embedded", "celery"] = Field(
        "embedded",
        description="`embedded`: worker processes inside `beatsync serve`; "
        "`celery`: `beatsync worker` processes through a broker.",
    )

    storage: Literal["local", "s3"] = Field(
        "local", description="Where files are kept: the local disk or an S3-compatible store."
    )
    s3_endpoint_url: str = Field(
        "", description="S3 endpoint (MinIO, Aliyun OSS, Tencent COS…); empty means AWS."
    )
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_bucket: str = Field("beatsync", description="S3 bucket holding uploads and results.")
    s3_access_key_id: str = Field("", description="S3 access key id (empty: the AWS chain).")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="S3 secret access key.")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="S3 addressing style; `path` for MinIO, `virtual` for OSS/COS."
    )
    s3_presigned_downloads: bool = Field(
        True, description="Send clients to presigned S3 URLs for results instead of proxying."
    )
    s3_part_size_mb: int = Field(
        8,
        ge=5,
        le=5 * 1024,
        description="Size of the parts of multipart uploads to S3, resumable uploads included "
        "(at least 5, the smallest part S3 accepts).",
    )
    s3_public_endpoint_url: str = Field(
        "",
        description="Endpoint written into presigned URLs when clients reach the store by "
        "another address than the service (e.g. `http://minio:9000` inside, a public host "
        "outside); empty means `s3_endpoint_url`.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for the Celery broker, shared rate limits and progress (distributed).",
    )
    celery_queue: str = Field("beatsync", description="Celery queue the jobs go through.")
    worker_max_tasks_per_child: int = Field(
        50, ge=1, description="A Celery worker process is replaced after this many jobs."
    )
    worker_max_memory_per_child_mb: int = Field(
        1536, ge=64, description="A Celery worker process is replaced above this resident memory."
    )
    rate_limit_per_owner: int = Field(
        600, ge=1, description="Requests per minute one owner may make (`RATE_LIMITED`)."
    )
    rate_limit_per_address: int = Field(
        1200, ge=1, description="Requests per minute one client address may make (`RATE_LIMITED`)."
    )
    sessions_per_address_per_minute: int = Field(
        5,
        ge=1,
        description="Anonymous sessions one client address may create a minute (`RATE_LIMITED`).",
    )
    max_active_jobs_per_address: int = Field(
        6,
        ge=1,
        description="Queued or running jobs of all owners created from one client address "
        "(`QUOTA_EXCEEDED`), so one address cannot fill the shared queue.",
    )
    max_stored_bytes_per_owner: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=1,
        description="Bytes of live uploads one owner may keep, identical files counted once "
        "(`STORAGE_QUOTA_EXCEEDED`).",
    )
    max_uploads_per_owner: int = Field(
        20,
        ge=1,
        description="Live uploads (distinct files, unfinished ones included) one owner may keep "
        "(`STORAGE_QUOTA_EXCEEDED`).",
    )
    token_ttl_h: float = Field(
        720.0, gt=0, description="Hours an anonymous client token stays valid after it is issued."
    )
    stream_ticket_ttl_s: int = Field(
        60,
        ge=5,
        le=3600,
        description="Lifetime of a ticket that opens one job's event stream or WebSocket.",
    )
    max_json_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest JSON request body; larger ones are refused (413) while streaming.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent a whole request head in this time is "
        "closed (uvicorn facing clients).",
    )
    body_idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body that sends nothing for this long is treated as abandoned.",
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, description="Idle seconds before a kept-alive connection is closed."
    )
    max_connections: int = Field(
        1000, ge=1, description="Open connections and requests beyond which uvicorn answers 503."
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at `/metrics`.")
    metrics_token: SecretStr = Field(
        SecretStr(""),
        description="When set, `/metrics` answers only `Authorization: Bearer <this token>`.",
    )

    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Job worker processes in the embedded mode (default: one per core).",
    )
    max_upload_bytes: int = Field(500 * 1024 * 1024, ge=1, description="Largest upload accepted.")
    max_duration_s: float = Field(600.0, gt=0, description="Longest media accepted (seconds).")
    max_video_pixels: int = Field(
        4096 * 2304, ge=1, description="Largest picture accepted (width × height)."
    )
    max_streams: int = Field(
        16, ge=1, description="Most streams (video, audio, subtitles, data) a file may hold."
    )
    job_soft_time_limit_s: float = Field(
        300.0,
        gt=0,
        description="A job is asked to stop after working this long (`TIMEOUT`); time spent "
        "waiting for storage does not count.",
    )
    job_time_limit_s: float = Field(
        360.0,
        gt=0,
        description="A job's process is killed after this long (`TIMEOUT`), plus the time it "
        "waited for storage (with Celery, which cannot move it: plus `storage_retry_s`).",
    )
    job_memory_limit_mb: int = Field(
        2048, ge=64, description="Memory limit of a job's process (`RESOURCE_LIMIT`)."
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        description="Database connections each API process keeps open (a job process keeps "
        "2). Processes × this must stay below PostgreSQL's `max_connections` (100 by default), "
        "or go through PgBouncer in transaction mode.",
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        description="Further connections an API process may open when all are in use, closed "
        "again after use.",
    )
    db_prepared_statements: bool = Field(
        True,
        description="Let the PostgreSQL driver prepare statements it repeats. Set false behind "
        "PgBouncer older than 1.21 in transaction mode.",
    )
    storage_retry_s: float = Field(
        180.0,
        ge=0,
        description="How long a job waits in all for storage that is unavailable, trying again "
        "with backoff (0.5 s doubling up to 30 s), before it fails `STORAGE_UNAVAILABLE`.",
    )
    job_max_attempts: int = Field(
        2, ge=1, description="Starts a job gets when its worker dies; then `WORKER_LOST`."
    )
    max_running_jobs_per_owner: int = Field(
        2, ge=1, description="Queued or running jobs one owner may have (`QUOTA_EXCEEDED`)."
    )
    max_daily_jobs_per_owner: int = Field(
        200, ge=1, description="Jobs one owner may create per 24 h (`QUOTA_EXCEEDED`)."
    )
    max_queued_jobs: int = Field(
        100, ge=1, description="Queued jobs in all; beyond it `SERVER_BUSY` (503)."
    )
    max_job_request_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest body of a job's creation or of its frames (an audio-first job's "
        "manifest and thumbnails); larger ones are refused (413).",
    )
    max_manifest_samples: int = Field(
        200_000, ge=1, description="Most video samples an audio-first job's manifest may list."
    )
    frames_wait_s: float = Field(
        30.0,
        gt=0,
        description="How long an audio-first run waits for the frames it asks its client for; "
        "then the cut ignores the picture.",
    )
    wechat_app_id: str = Field(
        "",
        description="The mini-program's AppID: with the secret, `POST /api/v1/sessions/wechat` "
        "signs WeChat users in (code2Session) and job-end notices are sent.",
    )
    wechat_app_secret: SecretStr = Field(SecretStr(""), description="The mini-program's AppSecret.")
    wechat_api_base: str = Field(
        "https://api.weixin.qq.com",
        description="WeChat's server API (another address only for a stand-in in tests).",
    )
    wechat_notify_template_id: str = Field(
        "",
        description="Subscription message template sent to a WeChat user when a job ends; "
        "empty: no notices.",
    )
    wechat_notify_keys: str = Field(
        "thing1,phrase2,time3",
        description="The template's keys, in order, for: what (the job), how it ended, when.",
    )
    wechat_notify_state: Literal["developer", "trial", "formal"] = Field(
        "formal", description="Which version of the mini-program a notice opens."
    )
    min_free_disk_mb: int = Field(
        512, ge=0, description="Uploads are refused when the data disk has less free space."
    )
    upload_ttl_h: float = Field(24.0, gt=0, description="Hours an upload is kept.")
    result_ttl_h: float = Field(72.0, gt=0, description="Hours a job's results are kept.")
    job_row_ttl_h: float = Field(
        720.0,
        gt=0,
        description="Hours a finished job's record is kept after it ended (never before its "
        "results expire); then it is deleted with any file left. Metrics keep their totals.",
    )
    tus_expiry_h: float = Field(
        24.0, gt=0, description="Hours an unfinished resumable upload is kept."
    )
    signed_url_ttl_s: int = Field(
        6 * 3600, ge=60, description="Lifetime of a signed result URL (seconds)."
    )
    sweep_interval_s: float = Field(
        600.0,
        gt=0,
        description="Seconds between two cleanup sweeps (what a sweep removes and lists: "
        "docs/deploy.md, Storage layout and cleanup).",
    )
    progress_interval_s: float = Field(
        0.25, gt=0, description="Least time between two progress writes of one job."
    )
    event_poll_s: float = Field(
        0.25, gt=0, description="How often SSE and WebSocket streams look for news."
    )

    @model_validator(mode="after")
    def _limits_agree(self) -> Settings:
        if self.job_time_limit_s < self.job_soft_time_limit_s:
            raise ValueError("job_time_limit_s must not be below job_soft_time_limit_s")
        secret = self.secret_key.get_secret_value()
        if (self.distributed or self.environment == "production") and weak_secret(secret):
            raise ValueError(
                "BEATSYNC_SECRET_KEY must be a private random value of at least "
                f"{MIN_SECRET_CHARS} characters in production and in the distributed mode"
            )
        short = [k for k in self.operator_keys if len(k) < MIN_OPERATOR_KEY_CHARS]
        if short:
            raise ValueError(
                f"BEATSYNC_API_KEYS: every operator key needs at least {MIN_OPERATOR_KEY_CHARS} "
                f"characters ({len(short)} shorter)"
            )
        return self

    @property
    def distributed(self) -> bool:
        """Whether API replicas and workers on several hosts share the work (Celery or S3)."""
        return self.queue == "celery" or self.storage == "s3"

    @property
    def database(self) -> str:
        """The SQLAlchemy URL in use."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'beatsync.db').resolve()}"

    @property
    def storage_root(self) -> Path:
        return (self.storage_dir or self.data_dir / "files").resolve()

    @property
    def spool_root(self) -> Path:
        return (self.spool_dir or self.data_dir / "spool").resolve()

    @property
    def operator_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.api_keys.split(",") if k.strip())

    @property
    def proxies(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in self.cors_origins.split(",") if o.strip())


logger = logging.getLogger(__name__)

SECRET_FILE = "secret_key"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with ``overrides`` (field names) taking precedence.

    Without a configured secret key (the embedded mode only: the validator refuses it
    elsewhere) the key kept in ``<data_dir>/secret_key`` is used, made on first start.
    """
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configured = settings.secret_key.get_secret_value()
    if configured:
        if weak_secret(configured):
            logger.warning("BEATSYNC_SECRET_KEY is short or well known: links can be forged")
        return settings
    kept = kept_secret(settings.data_dir)
    return settings.model_copy(update={"secret_key": SecretStr(kept)})


def kept_secret(data_dir: Path) -> str:
    """The random key in ``<data_dir>/secret_key`` (mode 0600), made there when missing."""
    path = data_dir / SECRET_FILE
    try:
        value = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        value = ""
    if value and not weak_secret(value):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return value
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(48)
    # Written whole under a private name, then linked into place: two first starts at once
    # end up with one key (the loser reads the winner's), and no one ever reads half a key.
    temporary = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(fresh + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if value:  # a damaged or weak key file: replaced
            os.replace(temporary, path)
            return fresh
        try:
            os.link(temporary, path)
        except FileExistsError:
            return kept_secret(data_dir)
        return fresh
    finally:
        temporary.unlink(missing_ok=True)
