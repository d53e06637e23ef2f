"""Storage keys follow from ids: a dated id's files sit under its UTC day, an older id's not."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from beatsync.service.db.models import new_id
from beatsync.service.layout import (
    day_folder,
    day_of,
    id_range,
    job_folder,
    new_dated_id,
    upload_folder,
)
from beatsync.service.stored import data_key


def test_a_dated_id_carries_its_utc_day_and_places_its_files_under_it() -> None:
    # 01:30 in UTC+8 is still the day before in UTC.
    moment = datetime(2027, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=8)))
    upload_id = new_dated_id("upl", now=moment)
    assert upload_id.startswith("upl_20261231")
    assert len(upload_id) == 4 + 8 + 22
    assert day_of(upload_id) == date(2026, 12, 31)
    assert upload_folder(upload_id) == f"uploads/2026/12/31/{upload_id}"
    assert data_key(upload_id) == f"uploads/2026/12/31/{upload_id}/data"
    job_id = new_dated_id("job", now=datetime(2026, 2, 28, 23, 59, tzinfo=UTC))
    assert job_folder(job_id) == f"jobs/2026/02/28/{job_id}"
    assert day_folder("jobs", date(2026, 2, 28)) == "jobs/2026/02/28"


def test_an_id_without_a_day_keeps_the_layout_before_day_folders() -> None:
    old = new_id("upl")
    assert day_of(old) is None
    assert upload_folder(old) == f"uploads/{old}"
    assert job_folder("job_0123456789abcdefghijkl") == "jobs/job_0123456789abcdefghijkl"
    # 30 characters whose first 8 are no date: not a dated id either.
    assert day_of("upl_20261332" + "a" * 22) is None
    assert day_of("upl_2026120" + "a" * 23) is None


def test_the_ids_of_a_day_are_one_index_range() -> None:
    low, high = id_range("upl", date(2026, 12, 31))
    assert (low, high) == ("upl_20261231", "upl_20270101")
    inside = [new_dated_id("upl", now=datetime(2026, 12, 31, h, tzinfo=UTC)) for h in (0, 23)]
    outside = [
        new_dated_id("upl", now=datetime(2026, 12, 30, 23, 59, tzinfo=UTC)),
        new_dated_id("upl", now=datetime(2027, 1, 1, tzinfo=UTC)),
    ]
    assert all(low <= i < high for i in inside)
    assert not any(low <= i < high for i in outside)
