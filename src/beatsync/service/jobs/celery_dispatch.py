"""``CeleryDispatcher``: the API's side of the distributed mode: send, cancel, check, watch.

:meth:`~CeleryDispatcher.submit` sends a message holding the job id alone to
``settings.celery_queue``; :meth:`~CeleryDispatcher.cancel` broadcasts
:data:`~.celery_app.CANCEL_COMMAND`, which the worker running the job answers by stopping it
(the run would also find the row canceled at its next progress report or heartbeat);
:meth:`~CeleryDispatcher.check` pings Redis.

The watch, a thread started with the dispatcher, makes the queue agree with the job table,
which is the truth, every ``watch_s`` seconds:

- a running job whose worker is gone (a dead process on this host, or a heartbeat older than
  :data:`~.celery_task.STALE_AFTER_S`) is requeued, or failed ``WORKER_LOST`` once it had
  ``job_max_attempts``, and sent again: a worker killed with its pool keeps its message from
  everyone until Redis's visibility timeout, and one that dies while the broker is away loses
  it for good;
- when the broker has lost its data (a restart without persistence, a failover), which the
  absence of a marker key tells, every queued job is sent again;
- a job queued for longer than :data:`RESEND_AFTER_S` is sent again, once per that period in
  the whole cluster (a message lost between the commit and the send, a task that gave up
  retrying): the replica whose conditional UPDATE moves the row's ``resent_at`` sends it.
  While no worker is alive (:mod:`.liveness`) nothing is resent: the messages in the queue wait
  for the first worker, and more of them would only have to be thrown away.

A message too many is harmless (:mod:`.celery_task`), so every API replica runs its own watch;
the broker's lost data and the resends are claimed (the marker key, ``resent_at``), so a backlog
costs one message a job per period however many replicas watch.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, or_, select, update

from beatsync.service.config import Settings
from beatsync.service.db import Database, Job, JobStatus
from beatsync.service.db.models import utcnow

from .celery_app import CANCEL_COMMAND, TASK_NAME, create_celery_app
from .celery_task import STALE_AFTER_S
from .dispatch import DispatchUnavailable
from .liveness import Liveness, read_liveness
from .recovery import release_if_lost

__all__ = ["BROKER_MARKER", "RESEND_AFTER_S", "WATCH_S", "CeleryDispatcher"]

log = logging.getLogger(__name__)

WATCH_S = 2.0
"""Seconds between two rounds of the watch."""
RESEND_AFTER_S = 120.0
"""A job queued this long (and not resent by any replica for as long) is sent again."""
BROKER_MARKER = "beatsync:broker-marker"
"""A key the watch keeps in Redis: when it is missing, the broker lost its messages."""

_JOBS = cast(Table, Job.__table__)
_TIMEOUT_S = 2.0  # for the pings and the marker: an answer, or the broker counts as down


class CeleryDispatcher:
    """The :class:`~.dispatch.Dispatcher` of the distributed mode. ``app`` replaces the Celery
    app made from ``settings``; ``watch_s`` is the watch's period."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        app: Any = None,
        watch_s: float = WATCH_S,
    ) -> None:
        self.settings = settings
        self.db = db
        self.app = app if app is not None else create_celery_app(settings)
        self.watch_s = watch_s
        self._redis: Any = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._trouble: str | None = None  # the watch's last failure, logged once

    # -- the Dispatcher protocol -----------------------------------------------------------

    def start(self) -> None:
        """Start the watch (its first round at once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="beatsync-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watch and close the broker connections; jobs run on in the workers."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.app.close()
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def submit(self, job_id: str) -> None:
        """Send the job id to the queue; :class:`DispatchUnavailable` if the broker is away."""
        try:
            self.app.send_task(TASK_NAME, args=[job_id], queue=self.settings.celery_queue)
        except _broker_errors() as exc:
            raise DispatchUnavailable(f"the broker does not take the job: {exc}") from exc

    def cancel(self, job_id: str) -> None:
        """Ask every worker to stop ``job_id``'s run; whichever has it does."""
        try:
            self.app.control.broadcast(CANCEL_COMMAND, arguments={"job_id": job_id})
        except _broker_errors() as exc:
            raise DispatchUnavailable(f"the broker does not pass the cancel on: {exc}") from exc

    def check(self) -> None:
        """Raise :class:`DispatchUnavailable` unless the broker answers a ping."""
        import redis

        try:
            self._client().ping()
        except redis.RedisError as exc:
            raise DispatchUnavailable(f"the broker does not answer: {exc}") from exc

    def workers(self) -> Liveness:
        """The ``beatsync worker`` processes whose heartbeats are in Redis."""
        import redis

        try:
            return read_liveness(self._client())
        except redis.RedisError as exc:
            raise DispatchUnavailable(f"the broker does not answer: {exc}") from exc

    # -- the watch -------------------------------------------------------------------------

    def watch_once(self) -> list[str]:
        """One round of the watch; the ids of the jobs it sent again."""
        sent = self._recover_lost()
        return sent + self._resend_queued(skip=set(sent))

    def _watch(self) -> None:
        wait = 0.0
        while not self._stopping.wait(wait):
            wait = self.watch_s
            try:
                self.watch_once()
            except Exception as exc:  # the database or the broker is away: next round
                trouble = f"{type(exc).__name__}: {exc}"
                if trouble != self._trouble:
                    log.warning("job watch: a round failed: %s", trouble)
                self._trouble = trouble
            else:
                if self._trouble is not None:
                    log.info("job watch: working again")
                self._trouble = None

    def _recover_lost(self) -> list[str]:
        stale_before = utcnow() - timedelta(seconds=STALE_AFTER_S)
        with self.db.engine.connect() as conn:
            running = conn.execute(
                select(_JOBS.c.id, _JOBS.c.worker, _JOBS.c.started_at, _JOBS.c.heartbeat_at).where(
                    _JOBS.c.status == JobStatus.RUNNING.value
                )
            ).all()
        sent = []
        for row in running:
            status = release_if_lost(
                self.db,
                row.id,
                worker=row.worker,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                stale_before=stale_before,
                max_attempts=self.settings.job_max_attempts,
            )
            if status == JobStatus.QUEUED.value:
                self._send_again(row.id, "its worker was lost")
                sent.append(row.id)
        return sent

    def _resend_queued(self, *, skip: set[str]) -> list[str]:
        if self._broker_lost_data():
            with self.db.engine.connect() as conn:
                queued = conn.execute(
                    select(_JOBS.c.id)
                    .where(_JOBS.c.status == JobStatus.QUEUED.value)
                    .order_by(_JOBS.c.created_at, _JOBS.c.id)
                ).scalars()
                lost = [job_id for job_id in queued if job_id not in skip]
            for job_id in lost:
                self._send_again(job_id, "the broker lost its messages")
            return lost
        if self.workers().alive == 0:
            return []
        now = utcnow()
        waited_before = now - timedelta(seconds=RESEND_AFTER_S)
        with self.db.engine.begin() as conn:
            # Row by row, whichever replica's UPDATE comes first claims the resend.
            claimed = conn.execute(
                update(_JOBS)
                .where(
                    _JOBS.c.status == JobStatus.QUEUED.value,
                    _JOBS.c.updated_at < waited_before,
                    or_(_JOBS.c.resent_at.is_(None), _JOBS.c.resent_at < waited_before),
                    _JOBS.c.id.not_in(skip),
                )
                .values(resent_at=now, updated_at=_JOBS.c.updated_at)
                .returning(_JOBS.c.id, _JOBS.c.created_at)
            ).all()
        sent = [job_id for job_id, _ in sorted(claimed, key=lambda row: (row[1], row[0]))]
        for job_id in sent:
            self._send_again(job_id, f"queued for more than {RESEND_AFTER_S:g} s")
        return sent

    def _broker_lost_data(self) -> bool:
        """Whether the marker was missing (and is set now): a new or emptied broker."""
        return bool(self._client().set(BROKER_MARKER, "1", nx=True))

    def _send_again(self, job_id: str, why: str) -> None:
        self.submit(job_id)
        log.info("job %s sent again: %s", job_id, why, extra={"job_id": job_id})

    def _client(self) -> Any:
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=_TIMEOUT_S,
                socket_connect_timeout=_TIMEOUT_S,
            )
        return self._redis


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What sending through a broker that is away raises."""
    import redis
    from kombu.exceptions import KombuError

    return (KombuError, redis.RedisError, OSError)
