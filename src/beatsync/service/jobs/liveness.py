"""Which workers are alive: heartbeats that readiness and ``/metrics`` read.

In the distributed mode every ``beatsync worker`` writes the time into one Redis hash
(:data:`WORKERS_KEY`, field ``host:pid``) every :data:`BEAT_S` seconds from a thread of its main
process, and removes its field when it stops. A worker whose last beat is older than
:data:`STALE_S` counts as dead (it was killed, or its host or network is gone); fields older
than :data:`FORGET_S` are removed by whoever reads them. The embedded mode's worker pool lives
in the API process, so its supervisor's last round is its heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BEAT_S",
    "FORGET_S",
    "STALE_S",
    "WORKERS_KEY",
    "HeartbeatThread",
    "Liveness",
    "beat",
    "leave",
    "read_liveness",
]

log = logging.getLogger(__name__)

WORKERS_KEY = "beatsync:workers"
"""The Redis hash of worker name → time of its last heartbeat (Unix seconds)."""
BEAT_S = 5.0
"""Seconds between two heartbeats of a worker."""
STALE_S = 30.0
"""A worker whose last heartbeat is older than this is not alive."""
FORGET_S = 3600.0
"""A heartbeat this old is removed from the hash."""


@dataclass(frozen=True, slots=True)
class Liveness:
    """The workers that take jobs: how many are alive, and the age of the oldest live one's
    last heartbeat (None when none is alive)."""

    alive: int
    oldest_heartbeat_age_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "oldest_heartbeat_age_s": None
            if self.oldest_heartbeat_age_s is None
            else round(self.oldest_heartbeat_age_s, 3),
        }


def beat(client: Any, name: str, *, now: float | None = None) -> None:
    """Record a heartbeat of the worker ``name`` (``client``: a ``redis.Redis``)."""
    client.hset(WORKERS_KEY, name, f"{time.time() if now is None else now:.3f}")


def leave(client: Any, name: str) -> None:
    """Remove the worker ``name``: it stops on purpose."""
    client.hdel(WORKERS_KEY, name)


def read_liveness(client: Any, *, now: float | None = None) -> Liveness:
    """The live workers in Redis; forgets heartbeats older than :data:`FORGET_S`."""
    now = time.time() if now is None else now
    ages: dict[str, float] = {}
    for field, value in client.hgetall(WORKERS_KEY).items():
        try:
            ages[_text(field)] = now - float(value)
        except ValueError:
            ages[_text(field)] = FORGET_S
    forgotten = [name for name, age in ages.items() if age >= FORGET_S]
    if forgotten:
        client.hdel(WORKERS_KEY, *forgotten)
    live = [age for age in ages.values() if age < STALE_S]
    return Liveness(len(live), max(0.0, max(live)) if live else None)


class HeartbeatThread:
    """Beats for ``name`` every :data:`BEAT_S` seconds until stopped, then leaves.

    A broker that is away costs beats, not the worker: the next one is tried at the next period.
    """

    def __init__(self, client: Any, name: str, *, period_s: float = BEAT_S) -> None:
        self.client, self.name, self.period_s = client, name, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beatsync-liveness", daemon=True)

    def start(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            leave(self.client, self.name)
        except Exception:
            log.warning("worker %s: could not remove its heartbeat", self.name, exc_info=True)

    def _run(self) -> None:
        failing = False
        while True:
            try:
                beat(self.client, self.name)
            except Exception as exc:
                if not failing:
                    log.warning("worker %s: heartbeat not written: %s", self.name, exc)
                failing = True
            else:
                failing = False
            if self._stop.wait(self.period_s):
                return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
