"""The sweeper: what has expired or was abandoned leaves the storage, the spool and the database.

One :func:`sweep`, in this order::

    expired uploads      rows past ``expires_at`` that no queued or running job uses: row,
                         stored file and spool part deleted (a used one waits for its job)
    expired partials     resumable uploads still receiving past their tus expiry: row and
                         spool part deleted
    expired results      a succeeded job past ``expires_at``: its files deleted; the row stays
                         (its mapping, confidence and cut remain readable) with ``result.files``
                         emptied and the message ``results expired``, so its JSON links nothing
    expired jobs         a finished job's row ``job_row_ttl_h`` after it ended (and not before
                         its results expired), with whatever files it still has; the metrics
                         keep it, in the totals each job added to ``metric_samples`` as it ended
    orphans              folders of the layout before day folders (``uploads/<id>/``,
                         ``jobs/<id>/``) that no row claims: deleted once their newest file is
                         older than the grace period, so a file stored a moment before its row
                         is written is never raced; in the folder of a queued or running job
                         (either layout), the files written before its run began (an earlier
                         attempt's) and older than the grace period
    missing files        the reverse: a ready upload whose file is gone becomes ``rejected``
                         (``FILE_NOT_FOUND``); a succeeded job forgets the result files it
                         lost (in day folders, rows changed in the last hour only)
    day folders          a day's folder (``uploads/YYYY/MM/DD``, ``jobs/YYYY/MM/DD``) a day
                         after that day ended, whole, once no row refers to anything in it
    work folders         ``<spool>/work/<job id>`` of runs that are no longer running, or
                         older than the running attempt (an earlier one's, on this host)
    stale spool files    parts of no live resumable upload, older than the grace period

Every deletion is conditional on the state that justified it (``DELETE … WHERE expires_at <=
now AND …``), so a sweep racing a request changes nothing the request relies on. A row is always
removed before its files: a crash between the two leaves an orphan the next sweep removes, never
a row pointing at nothing.

The periodic :class:`Sweeper` runs in every API process. One sweep runs at a time across
processes and replicas: a PostgreSQL transaction-level advisory lock when the database is
PostgreSQL (replicas share it; it works through PgBouncer's transaction mode), otherwise an
``flock`` on ``<data_dir>/sweep.lock`` (SQLite lives on one host, so its API and ``beatsync
cleanup`` share that folder). A sweep that finds the lock taken is skipped.

No step lists the day folders' content: the sweep's storage listing is the layout before day
folders (until it is empty), the folder names of the days, the folders of the jobs under way
and of the days it deletes.

Each step lives in a module of its own: :mod:`.expiry`, :mod:`.orphans`, :mod:`.days`,
:mod:`.spool`; the
lock in :mod:`.lock` and the sweep and its thread in :mod:`.sweeper`.
"""

from .expiry import RESULTS_EXPIRED
from .lock import SWEEP_LOCK_KEY, sweep_lock
from .orphans import ORPHAN_GRACE
from .report import SweepReport
from .sweeper import Sweeper, sweep

__all__ = [
    "ORPHAN_GRACE",
    "RESULTS_EXPIRED",
    "SWEEP_LOCK_KEY",
    "SweepReport",
    "Sweeper",
    "sweep",
    "sweep_lock",
]
