"""The Celery application of the distributed mode, built from Settings, and the worker that runs it.

Nothing is built at import time: :func:`create_celery_app` makes an app for one
:class:`Settings` (the API makes one to send jobs, ``beatsync worker`` one to run them) and
:func:`run_worker` runs a worker in this process. What the configuration promises:

- A message is the job id alone, as JSON; the row is the truth (:mod:`.celery_task`), so a
  duplicate or a redelivered message runs nothing twice.
- A message is acknowledged when its job has ended (late acks), and goes back to the queue when
  the pool process running it dies (reject on worker loss). When a whole worker dies, Redis
  hands its message out again after the visibility timeout, which is longer than the hard time
  limit plus the longest retry wait, so a job still running is never handed out twice that way.
- Prefetch 1: a worker holds no message it is not running, so a crash strands none and a long
  job holds up no other.
- Soft time limit → the run fails ``TIMEOUT`` by itself, once it has also worked off the time it
  waited for storage; hard time limit → the pool process is killed and the row failed
  ``TIMEOUT``. Celery cannot move a running task's hard limit, so it is ``job_time_limit_s +
  storage_retry_s``, the most a run may wait in all. Pool processes are replaced after
  ``worker_max_tasks_per_child`` jobs, or when they grew past ``worker_max_memory_per_child_mb``.
- Storage that is unavailable is waited out inside the run, where the job's files stay, for up
  to ``storage_retry_s`` (:mod:`.backoff`); a database fault retries the task with exponential
  backoff; bad media fails the job with its code and never retries.
- A worker reconnects to the broker for as long as it takes; running jobs go on meanwhile.
- A cancel is broadcast to every worker (:data:`CANCEL_COMMAND`); the one running the job
  signals its pool process, and the run stops at its next progress report.
- Each worker's main process writes a heartbeat into Redis (:mod:`.liveness`), which readiness
  and ``/metrics`` read: a cluster with no live worker is not ready; and sweeps the work
  folders that killed runs left on its host (:mod:`.scratch`), at start and periodically.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import OperationalError

from beatsync.service.config import Settings
from beatsync.service.storage import StorageUnavailable

from .celery_task import JobDelivery

__all__ = ["CANCEL_COMMAND", "TASK_NAME", "create_celery_app", "ping_local_workers", "run_worker"]

log = logging.getLogger(__name__)

TASK_NAME = "beatsync.run_job"
"""The one task: ``run_job(job_id)``."""
CANCEL_COMMAND = "beatsync_cancel_job"
"""The remote-control command that stops the run of a canceled job, wherever it runs."""

TRANSIENT_FAULTS: tuple[type[Exception], ...] = (StorageUnavailable, OperationalError)
RETRY_BACKOFF_S = 2
RETRY_BACKOFF_MAX_S = 60
MAX_RETRIES = 5


def hard_time_limit_s(settings: Settings) -> float:
    """When Celery kills a job's pool process: the hard limit plus the run's waiting window
    (the soft limit, inside the run, measures work alone)."""
    return settings.job_time_limit_s + settings.storage_retry_s


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for ``settings`` (see the module's docstring for why each is so)."""
    hard_limit = hard_time_limit_s(settings)
    visibility = int(hard_limit + 2 * RETRY_BACKOFF_MAX_S)
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,  # a worker waits for the broker forever
        "broker_transport_options": {
            "visibility_timeout": visibility,
            # Look for messages of dead workers every 10 s rather than kombu's 100 s.
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": settings.celery_queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.job_soft_time_limit_s,
        "task_time_limit": hard_limit,
        "worker_max_tasks_per_child": settings.worker_max_tasks_per_child,
        "worker_max_memory_per_child": settings.worker_max_memory_per_child_mb * 1024,  # KiB
        "worker_pool": "prefork",
        # A dead pool process's job goes back to the queue this soon (Celery waits 10 s for a
        # result the process might have sent; a job's result is its row, not a message).
        "worker_lost_wait": 2.0,
        # Jobs whose worker lost the broker finish; the row, not the ack, records it.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_disable_rate_limits": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        "enable_utc": True,
    }


def create_celery_app(settings: Settings) -> Any:
    """A Celery app for ``settings`` with the job task registered (``celery.Celery``)."""
    from celery import Celery, Task
    from celery.exceptions import TimeLimitExceeded

    app = Celery("beatsync", set_as_current=False)
    app.conf.update(celery_config(settings))
    job_delivery = JobDelivery(settings)

    class JobTask(Task):  # type: ignore[misc]
        """Runs a job through :attr:`delivery`; fails it ``TIMEOUT`` when the pool process
        running it was killed at the hard time limit."""

        delivery = job_delivery

        def on_failure(
            self,
            exc: BaseException,
            task_id: str,
            args: Sequence[Any],
            kwargs: dict[str, Any],
            einfo: Any,
        ) -> None:
            # Called in the worker's main process when the pool process was killed.
            if isinstance(exc, TimeLimitExceeded) and args:
                job_delivery.hard_time_limit(str(args[0]))

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME,
        shared=False,  # this app's task only: another app has other settings
        base=JobTask,
        autoretry_for=TRANSIENT_FAULTS,
        retry_backoff=RETRY_BACKOFF_S,
        retry_backoff_max=RETRY_BACKOFF_MAX_S,
        retry_jitter=True,
        max_retries=MAX_RETRIES,
    )
    def run_job_task(job_id: str) -> str:
        return job_delivery.deliver(job_id)

    return app


def run_worker(
    settings: Settings, *, concurrency: int | None = None, queues: Sequence[str] = ()
) -> int:
    """Run a Celery worker (``concurrency`` pool processes, default ``settings.workers``) on
    ``queues`` (default ``settings.celery_queue``) until SIGTERM; its exit code."""
    from celery import signals

    from beatsync.service.logs import configure_logging

    configure_logging(settings.log_level, json_lines=settings.log_json)
    # Celery configures logging only when no one answers this signal; ours stays.
    signals.setup_logging.connect(_keep_logging, weak=False)
    signals.celeryd_after_setup.connect(_quiet_connection_loss_warning, weak=False)
    _register_cancel_command()
    from .run import JOB_NICENESS

    # The pool's processes inherit it: beside an API on the same host, reads stay fast.
    os.nice(JOB_NICENESS)
    app = create_celery_app(settings)
    host = socket.gethostname()
    worker = app.Worker(
        hostname=f"beatsync-{os.getpid()}@{host}",
        concurrency=concurrency or settings.workers,
        queues=list(queues) or [settings.celery_queue],
        pool="prefork",
        loglevel=settings.log_level.upper(),
        optimization="fair",
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        quiet=True,
    )
    log.info(
        "worker %s: %d processes on %s",
        worker.hostname,
        worker.concurrency,
        ", ".join(list(queues) or [settings.celery_queue]),
    )
    import redis

    from beatsync.service.db import job_database

    from .liveness import HeartbeatThread
    from .run import worker_name
    from .scratch import ScratchSweeper

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    heartbeat = HeartbeatThread(client, worker_name()).start()
    db = job_database(settings.database, prepared_statements=settings.db_prepared_statements)
    scratch = ScratchSweeper(settings, db).start()
    try:
        worker.start()
    finally:
        scratch.stop()
        heartbeat.stop()
        db.dispose()
        client.close()
    return int(worker.exitcode or 0)


def ping_local_workers(settings: Settings, *, timeout: float = 5.0) -> list[str]:
    """The names of this host's workers that answer a ping through the broker within
    ``timeout`` seconds (a container's health check: empty means unhealthy)."""
    app = create_celery_app(settings)
    try:
        replies = app.control.ping(timeout=timeout) or []
    finally:
        app.close()
    host = socket.gethostname()
    return sorted(name for reply in replies for name in reply if name.endswith(f"@{host}"))


def _keep_logging(**_: Any) -> None:
    """Answer Celery's ``setup_logging`` so that it keeps the logging the entry point set."""


def _quiet_connection_loss_warning(**_: Any) -> None:
    """Celery warns at every broker outage that the default of
    ``worker_cancel_long_running_tasks_on_connection_loss`` will change; ours is set. (Added
    once Celery has set up its own warning filters, which would come first otherwise.)"""
    warnings.filterwarnings(
        "ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss"
    )


def _register_cancel_command() -> None:
    from celery.worker.control import Panel, control_command

    if CANCEL_COMMAND not in Panel.data:
        control_command(name=CANCEL_COMMAND, args=[("job_id", str)], signature="<job_id>")(
            _cancel_job
        )


def _cancel_job(state: Any, job_id: str) -> dict[str, str]:
    """Stop the run of ``job_id`` if this worker has it; its row says canceled already."""
    from celery.worker import state as worker_state

    for request in list(worker_state.active_requests):
        if request.name == TASK_NAME and list(request.args or ()) == [job_id]:
            log.info(
                "job %s: stopping its run in process %s",
                job_id,
                request.worker_pid,
                extra={"job_id": job_id},
            )
            request.terminate(state.consumer.pool, signal="SIGTERM")
            return {"ok": "stopping"}
    return {"ok": "not running here"}
