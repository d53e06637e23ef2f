"""Prometheus metrics: what this process measures, and what every worker left in the database.

* :mod:`.process`: this process's HTTP requests (by method, route template and status class),
  their durations, requests in flight, upload bytes received, CPU, memory and garbage collector.
* :mod:`.cluster`: jobs finished by outcome, job and stage durations, jobs by status and the
  oldest queued job's wait, recorded in the database by whichever process ended each job.

:func:`exposition` is what ``GET /metrics`` answers: both, in the Prometheus text format.
"""

from __future__ import annotations

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

__all__ = [
    "CONTENT_TYPE",
    "HTTP_BUCKETS",
    "JOB_BUCKETS",
    "STAGE_BUCKETS",
    "DatabaseCollector",
    "HttpMetricsMiddleware",
    "ProcessMetrics",
    "count_upload_bytes",
    "exposition",
    "process_metrics",
    "record_job_end",
    "route_template",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def exposition(db: Database) -> bytes:
    """The text ``/metrics`` answers: this process's metrics, then the cluster's."""
    return generate_latest(process_metrics().registry) + generate_latest(DatabaseCollector(db))
