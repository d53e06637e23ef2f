"""The cluster's metrics, kept in the database: job outcomes and durations, and the queue.

Jobs end in processes that Prometheus never scrapes (the embedded runner's children, Celery
workers on other machines). Whoever gives a job its final status calls :func:`record_job_end`
in the same transaction, which adds the job to running totals in ``metric_samples`` — a counter
row, or a histogram's bucket and sum rows — in one upsert. :class:`DatabaseCollector` reads
them back at scrape time, with the jobs by status (the queue depth) and the oldest queued job's
wait. Every API replica reports the same values, so dashboards aggregate them with ``max``,
not ``sum``.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from beatsync.service.db import Database, Job, JobStatus
from beatsync.service.db.models import MetricSample, utcnow

__all__ = ["JOB_BUCKETS", "STAGE_BUCKETS", "DatabaseCollector", "record_job_end"]

log = logging.getLogger(__name__)

# A 3-minute 1080p job takes about 4 s in all; a re-encoded 10-minute one, minutes.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
JOB_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

_JOBS = cast(Table, Job.__table__)
_SAMPLES = cast(Table, MetricSample.__table__)


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A metric that workers add to in the database: a counter, or a histogram with buckets."""

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None = None


JOBS_FINISHED = _Recorded(
    "beatsync_jobs_finished",
    "Jobs that ended, by status and error code (empty unless failed).",
    ("status", "code"),
)
JOB_DURATION = _Recorded(
    "beatsync_job_duration_seconds",
    "Run time of a job's last attempt, from its start to its end, by status.",
    ("status",),
    JOB_BUCKETS,
)
STAGE_DURATION = _Recorded(
    "beatsync_job_stage_duration_seconds",
    "Time a succeeded job spent in each engine stage (probe, decode, align, trim, render).",
    ("stage",),
    STAGE_BUCKETS,
)
_RECORDED = (JOBS_FINISHED, JOB_DURATION, STAGE_DURATION)

_Increments = dict[tuple[str, str], float]


def _le(bound: float) -> str:
    """A bucket's ``le`` label, as Prometheus writes it."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _labels(values: dict[str, str]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def _count(into: _Increments, metric: _Recorded, labels: dict[str, str]) -> None:
    key = (f"{metric.name}_total", _labels(labels))
    into[key] = into.get(key, 0.0) + 1.0


def _observe(into: _Increments, metric: _Recorded, labels: dict[str, str], value: float) -> None:
    """One observation: its bucket's row (not cumulative, so one row changes) and the sum."""
    assert metric.buckets is not None
    index = bisect.bisect_left(metric.buckets, value)
    bound = metric.buckets[index] if index < len(metric.buckets) else float("inf")
    bucket = (f"{metric.name}_bucket", _labels({**labels, "le": _le(bound)}))
    total = (f"{metric.name}_sum", _labels(labels))
    into[bucket] = into.get(bucket, 0.0) + 1.0
    into[total] = into.get(total, 0.0) + value


def _job_increments(
    status: str,
    code: str | None,
    started_at: datetime | None,
    finished_at: datetime | None,
    result: dict[str, Any] | None,
) -> _Increments:
    """What a job that ended this way adds to the cluster's metrics."""
    into: _Increments = {}
    _count(into, JOBS_FINISHED, {"status": status, "code": code or ""})
    if started_at is not None and finished_at is not None:
        seconds = max(0.0, (finished_at - started_at).total_seconds())
        _observe(into, JOB_DURATION, {"status": status}, seconds)
    timings = (result or {}).get("timings") or {}
    for timing in timings.get("stages") or ():
        _observe(into, STAGE_DURATION, {"stage": str(timing["stage"])}, float(timing["seconds"]))
    return into


def record_job_end(conn: Connection, job_id: str) -> None:
    """Add the job ``job_id``, which has just ended, to the cluster's metrics, in the
    transaction of ``conn`` that gave it its final status.

    Called by the writer whose conditional update gave the job its final status, before it
    commits: the status and the totals are committed together, so each job counts once,
    whichever process ran it, and the totals never lag the status. Never raises: the metrics
    are written in a savepoint, and a failure rolls back only that (a lost observation is not
    worth a failed job or a failed cancel).
    """
    try:
        with conn.begin_nested():
            row = conn.execute(
                select(
                    _JOBS.c.status,
                    _JOBS.c.error_code,
                    _JOBS.c.started_at,
                    _JOBS.c.finished_at,
                    _JOBS.c.result,
                ).where(_JOBS.c.id == job_id)
            ).first()
            if row is None or not JobStatus(row.status).finished:
                return
            increments = _job_increments(
                row.status,
                row.error_code if row.status == JobStatus.FAILED.value else None,
                row.started_at,
                row.finished_at,
                row.result,
            )
            _add(conn, increments)
    except Exception:
        log.warning(
            "job %s: its metrics were not recorded", job_id, exc_info=True, extra={"job_id": job_id}
        )


def _add(conn: Connection, increments: _Increments) -> None:
    """Add to the rows in one statement; sorted, so two writers lock rows in the same order."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(conn.dialect.name)
    if dialect is None:
        raise NotImplementedError(f"metrics on {conn.dialect.name} databases")
    statement = dialect.insert(_SAMPLES)
    statement = statement.on_conflict_do_update(
        index_elements=[_SAMPLES.c.name, _SAMPLES.c.labels],
        set_={"value": _SAMPLES.c.value + statement.excluded.value},
    )
    rows = [
        {"name": name, "labels": labels, "value": value}
        for (name, labels), value in sorted(increments.items())
    ]
    conn.execute(statement, rows)


class DatabaseCollector(Collector):
    """The cluster's metrics, read from the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def describe(self) -> Iterable[Metric]:
        return ()  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "beatsync_metrics_database_up",
            "Whether the database answered this scrape (the job metrics below need it).",
        )
        try:
            with self.db.engine.connect() as conn:
                by_status: dict[str, int] = dict(
                    conn.execute(
                        select(_JOBS.c.status, func.count()).group_by(_JOBS.c.status)
                    ).all()
                )
                oldest = conn.execute(
                    select(func.min(_JOBS.c.created_at)).where(
                        _JOBS.c.status == JobStatus.QUEUED.value
                    )
                ).scalar()
                samples = conn.execute(
                    select(_SAMPLES.c.name, _SAMPLES.c.labels, _SAMPLES.c.value)
                ).all()
        except SQLAlchemyError:
            log.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        jobs = GaugeMetricFamily(
            "beatsync_jobs_in_status",
            "Jobs in the database by status; queued is the queue depth.",
            labels=["status"],
        )
        for status in JobStatus:
            jobs.add_metric([status.value], float(by_status.get(status.value, 0)))
        yield jobs
        age = GaugeMetricFamily(
            "beatsync_queue_oldest_age_seconds",
            "How long the oldest queued job has waited (0 when none waits).",
        )
        waited = 0.0 if oldest is None else (utcnow() - oldest).total_seconds()
        age.add_metric([], max(0.0, waited))
        yield age
        yield from _families([(name, json.loads(labels), value) for name, labels, value in samples])


def _families(samples: list[tuple[str, dict[str, str], float]]) -> Iterator[Metric]:
    """The recorded metrics' families from their rows (buckets made cumulative here)."""
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in samples:
        by_name.setdefault(name, []).append((labels, value))
    for metric in _RECORDED:
        if metric.buckets is None:
            counter = CounterMetricFamily(metric.name, metric.help, labels=list(metric.labels))
            for labels, value in by_name.get(f"{metric.name}_total", ()):
                counter.add_metric([labels.get(k, "") for k in metric.labels], value)
            yield counter
            continue
        bounds = metric.buckets
        counts: dict[tuple[str, ...], list[float]] = {}
        for labels, value in by_name.get(f"{metric.name}_bucket", ()):
            key = tuple(labels.get(k, "") for k in metric.labels)
            # A bound no longer in the list (the buckets changed) joins the next one up, which
            # keeps every cumulative count from ever going down.
            index = bisect.bisect_left(bounds, float(labels.get("le", "+Inf")))
            counts.setdefault(key, [0.0] * (len(bounds) + 1))[index] += value
        sums = {
            tuple(labels.get(k, "") for k in metric.labels): value
            for labels, value in by_name.get(f"{metric.name}_sum", ())
        }
        histogram = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
        for key in sorted(counts):
            running, buckets = 0.0, []
            for bound, count in zip((*bounds, float("inf")), counts[key], strict=True):
                running += count
                buckets.append((_le(bound), running))
            histogram.add_metric(list(key), buckets, sum_value=sums.get(key, 0.0))
        yield histogram
