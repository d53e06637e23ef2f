"""What the steps of a sweep share: the report, the tally they count into, batches of ids."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ..db import JobStatus

__all__ = ["BATCH", "UNFINISHED", "SweepReport", "Tally", "chunks"]

BATCH = 500  # ids per IN (…) query
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did. ``pending`` counts orphans left for a later sweep (too young, or
    a store that cannot tell a file's age); ``days_kept`` the past day folders still referred
    to; ``errors`` the steps that could not finish."""

    uploads_expired: int = 0
    uploads_in_use: int = 0
    partials_expired: int = 0
    results_expired: int = 0
    jobs_expired: int = 0
    orphans_deleted: int = 0
    days_deleted: int = 0
    days_kept: int = 0
    stale_files: int = 0
    files_deleted: int = 0
    uploads_missing_file: int = 0
    results_missing_file: int = 0
    work_folders: int = 0
    spool_files: int = 0
    pending: int = 0
    errors: tuple[str, ...] = ()
    skipped: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = list(self.errors)
        return data

    @property
    def changed(self) -> int:
        """How many things the sweep removed or corrected."""
        return (
            self.uploads_expired
            + self.partials_expired
            + self.results_expired
            + self.jobs_expired
            + self.orphans_deleted
            + self.days_deleted
            + self.stale_files
            + self.uploads_missing_file
            + self.results_missing_file
            + self.work_folders
            + self.spool_files
        )


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount


def chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in ids:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
