"""A job for an embedded runner's child that waited for storage, in a module of its own: a child
imports its target's module before it starts, and this one costs nothing to import (the fork
server has the runner's modules already), so the child's time limit starts on the job."""

from __future__ import annotations

import time

from sqlalchemy import update

from beatsync.service.config import Settings
from beatsync.service.db import Job, job_database
from beatsync.service.db.models import utcnow
from beatsync.service.jobs.child import report_wait


def wait_for_storage_then_work_past_the_hard_limit(job_id: str, settings: Settings) -> None:
    """A job that waited 60 s for storage (said, not slept), then works 6 s against a hard
    limit of 4 s: well within 4 s + 60 s of allowance. It never looks at the soft limit, so
    only the hard one could stop it."""
    report_wait(60.0)
    time.sleep(6.0)
    db = job_database(settings.database)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="succeeded", stage="done", finished_at=utcnow())
            )
    finally:
        db.dispose()
