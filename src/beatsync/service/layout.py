"""Where an upload's and a job's files live in storage: under the UTC day their id was made.

::

    uploads/YYYY/MM/DD/<upload id>/data        an upload's bytes (and a resumable one's tail)
    jobs/YYYY/MM/DD/<job id>/<result file>      a job's results
    uploads/<upload id>/…, jobs/<job id>/…      the layout before day folders

An id made by :func:`new_dated_id` carries its day (``upl_20261207`` and 22 random URL-safe
characters), so every key follows from the id alone. An id of the earlier form (22 random
characters, no day) keeps its folder directly under ``uploads/`` or ``jobs/``; both layouts
are read and swept side by side, and the old one empties as its rows expire.

Day folders let the sweeper retire a whole day once no row refers to it, without listing
what lives in the days still in use (:mod:`beatsync.service.cleanup.days`).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, timedelta

__all__ = [
    "DATED_KINDS",
    "day_folder",
    "day_of",
    "id_range",
    "job_folder",
    "new_dated_id",
    "upload_folder",
]

DATED_KINDS = {"uploads": "upl", "jobs": "job"}
"""Top-level storage folder → the prefix of the ids whose folders it holds."""

_DATED = re.compile(r"^[a-z]+_(\d{8})[A-Za-z0-9_-]{22}$")


def new_dated_id(prefix: str, *, now: datetime | None = None) -> str:
    """A random id that carries the UTC day it was made: ``upl_20261207…``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{prefix}_{moment:%Y%m%d}{secrets.token_urlsafe(16)}"


def day_of(item_id: str) -> date | None:
    """The day an id of :func:`new_dated_id` was made; None for an id without one."""
    found = _DATED.match(item_id)
    if found is None:
        return None
    try:
        return datetime.strptime(found.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def day_folder(kind: str, day: date) -> str:
    """``uploads/2026/12/07``: the folder of one day's uploads (or jobs)."""
    return f"{kind}/{day:%Y/%m/%d}"


def _folder(kind: str, item_id: str) -> str:
    day = day_of(item_id)
    return f"{kind}/{item_id}" if day is None else f"{day_folder(kind, day)}/{item_id}"


def upload_folder(upload_id: str) -> str:
    """The folder of an upload's stored files."""
    return _folder("uploads", upload_id)


def job_folder(job_id: str) -> str:
    """The folder of a job's result files."""
    return _folder("jobs", job_id)


def id_range(prefix: str, day: date) -> tuple[str, str]:
    """``(low, high)``: the ids of ``day`` made by :func:`new_dated_id` are ``low <= id <
    high`` (an index range, on every database and collation)."""
    return f"{prefix}_{day:%Y%m%d}", f"{prefix}_{day + timedelta(days=1):%Y%m%d}"
