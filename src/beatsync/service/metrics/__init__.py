"""Prometheus metrics: what this process measures, and what every worker left in the database.

* :mod:`.process`: this process's HTTP requests (by method, route template and status class),
  their durations, requests in flight, upload bytes received, CPU, memory and garbage collector.
* :mod:`.cluster`: jobs finished by outcome, job and stage durations, jobs by status and the
  oldest queued job's wait, recorded in the database by whichever process ended each job.
* :mod:`.workers`: the workers alive and their oldest heartbeat's age, as the dispatcher sees.

:func:`exposition` is what ``GET /metrics`` answers: both, in the Prometheus text format.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from beatsync.service.db import Database

from .cluster import JOB_BUCKETS, STAGE_BUCKETS, DatabaseCollector, record_job_end
from .process import (
    HTTP_BUCKETS,
    HttpMetricsMiddleware,
    ProcessMetrics,
    count_upload_bytes,
    process_metrics,
    route_template,
)
from .workers import WorkerCollector, WorkersSeen

__all__ = [
    "CONTENT_TYPE",
    "HTTP_BUCKETS",
    "JOB_BUCKETS",
    "STAGE_BUCKETS",
    "DatabaseCollector",
    "HttpMetricsMiddleware",
    "ProcessMetrics",
    "WorkerCollector",
    "WorkersSeen",
    "count_upload_bytes",
    "exposition",
    "process_metrics",
    "record_job_end",
    "route_template",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def exposition(db: Database, workers: Callable[[], WorkersSeen] | None = None) -> bytes:
    """The text ``/metrics`` answers: this process's metrics, then the cluster's (with the
    workers ``workers`` sees, when given)."""
    text = generate_latest(process_metrics().registry) + generate_latest(DatabaseCollector(db))
    if workers is not None:
        text += generate_latest(WorkerCollector(workers))
    return text
