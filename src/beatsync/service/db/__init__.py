"""The database: SQLAlchemy 2 models, engine and sessions, Alembic migrations."""

from .models import Base, Job, JobStatus, Owner, Token, Upload, UploadStatus
from .session import Database, job_database, migrate

__all__ = [
    "Base",
    "Database",
    "Job",
    "JobStatus",
    "Owner",
    "Token",
    "Upload",
    "UploadStatus",
    "job_database",
    "migrate",
]
