"""The workers' liveness as metrics: how many take jobs, and their oldest heartbeat's age.

The dispatcher knows (heartbeats in Redis, or the embedded pool's own rounds); this module only
turns its answer into gauges. A dispatcher that cannot answer (the broker is away) leaves the
gauges out of the scrape rather than reporting zero workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["WorkerCollector", "WorkersSeen"]

log = logging.getLogger(__name__)


class WorkersSeen(Protocol):
    @property
    def alive(self) -> int: ...

    @property
    def oldest_heartbeat_age_s(self) -> float | None: ...


class WorkerCollector(Collector):
    """``beatsync_workers_alive`` and ``beatsync_worker_heartbeat_oldest_age_seconds`` from
    ``read`` (the dispatcher's ``workers``)."""

    def __init__(self, read: Callable[[], WorkersSeen]) -> None:
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        try:
            seen = self.read()
        except Exception as exc:
            log.warning("metrics: workers not read: %s", exc)
            return
        alive = GaugeMetricFamily(
            "beatsync_workers_alive",
            "Worker processes taking jobs whose heartbeat is recent.",
        )
        alive.add_metric([], seen.alive)
        yield alive
        age = GaugeMetricFamily(
            "beatsync_worker_heartbeat_oldest_age_seconds",
            "Age of the oldest heartbeat among the live workers (0 when none is alive).",
        )
        age.add_metric([], seen.oldest_heartbeat_age_s or 0.0)
        yield age
