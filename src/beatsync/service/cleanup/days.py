"""Day folders: a past day's folder of uploads or jobs goes whole once no row refers to it.

A day's folder (``uploads/2026/12/07``, see :mod:`beatsync.service.layout`) is considered
once the day ended more than ``day_grace`` ago: an id made just before midnight may store its
file a little later, before its row is written. It is deleted, with everything in it, when no
row refers to it::

    uploads   no upload row made that day (receiving: its parts; ready: its object), and no
              ready upload of any day whose ``storage_key`` lies in it (a copy of the same
              bytes made on a later day keeps the earlier day's object, however old)
    jobs      no job row made that day (a failed or canceled job may be retried into its
              folder for as long as its row is there)

A day that is still referred to stays, and is not listed: its rows delete their own folders
as they expire, and whatever they leave behind (an orphan) goes with the day once its last
row is gone. Finding the days lists three folder levels (years, months, days), never a day's
content; deleting a day lists only that day. The check and the deletion are not one
transaction, yet nothing can start referring to a day once nothing does: new ids are of
today, a copy is only ever made of a ready upload's object, and a deleted row never returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import BindParameter, String, literal, select
from sqlalchemy.orm import Session

from ..db import Database, Job, Upload
from ..db.models import utcnow
from ..layout import DATED_KINDS, day_folder, id_range
from ..storage import Storage
from .report import Tally

__all__ = ["DAY_GRACE", "expired_days"]

DAY_GRACE = timedelta(hours=24)
"""How long after a day ended its folder is first considered."""

_DIGITS = {"year": re.compile(r"\d{4}"), "part": re.compile(r"\d{2}")}


def _days(storage: Storage, kind: str) -> Iterator[date]:
    """The days that have a folder under ``kind/``."""
    for year in storage.names(kind):
        if not year[:1].isdigit():
            # Names come in byte order: past the digits are the folders of the layout before
            # day folders (``upl_…``), which this need not list.
            break
        if not _DIGITS["year"].fullmatch(year):
            continue
        for month in storage.names(f"{kind}/{year}"):
            if not _DIGITS["part"].fullmatch(month):
                continue
            for day in storage.names(f"{kind}/{year}/{month}"):
                if not _DIGITS["part"].fullmatch(day):
                    continue
                try:
                    yield date(int(year), int(month), int(day))
                except ValueError:
                    continue


def _claimed(session: Session, kind: str, day: date) -> bool:
    """Whether a row refers to anything in the folder of ``day`` (see the module docstring)."""
    low, high = id_range(DATED_KINDS[kind], day)
    if kind == "jobs":
        found = session.scalar(select(Job.id).where(Job.id >= low, Job.id < high).limit(1))
        return found is not None
    made = session.scalar(select(Upload.id).where(Upload.id >= low, Upload.id < high).limit(1))
    if made is not None:
        return True
    copied = session.scalar(
        select(Upload.id)
        .where(Upload.storage_key.like(_prefix(f"{day_folder(kind, day)}/"), escape="/"))
        .limit(1)
    )
    return copied is not None


def _prefix(prefix: str) -> BindParameter[str]:
    """The LIKE pattern of the keys starting with ``prefix`` (``/`` escapes), written into the
    SQL as a literal: the databases read an index for LIKE only from a prefix they see when
    planning, never from an expression such as ``? || '%'`` (SQLite) nor from a parameter in a
    prepared statement's reused plan (PostgreSQL)."""
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return literal(f"{escaped}%", String, literal_execute=True)


def expired_days(db: Database, storage: Storage, day_grace: timedelta, tally: Tally) -> None:
    now = utcnow()
    for kind in DATED_KINDS:
        for day in list(_days(storage, kind)):
            ended = datetime.combine(day + timedelta(days=1), time.min, UTC)
            if ended + day_grace > now:
                continue
            with db.session() as session:
                if _claimed(session, kind, day):
                    tally.add("days_kept")
                    continue
            tally.add("days_deleted")
            tally.add("files_deleted", storage.delete_prefix(day_folder(kind, day)))
