"""The job-dispatch protocol: how the API hands a queued job to whatever runs it.

The job row is committed as ``queued`` before :meth:`Dispatcher.submit` is called, and
``cancel_requested`` is set before :meth:`Dispatcher.cancel`; a dispatcher only carries the
job id. The embedded runner (worker processes inside ``beatsync serve``) and Celery implement it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .liveness import Liveness

__all__ = ["DispatchUnavailable", "Dispatcher"]


class DispatchUnavailable(Exception):  # noqa: N818 (like StorageUnavailable)
    """The queue cannot take work now (broker down, runner stopped)."""


@runtime_checkable
class Dispatcher(Protocol):
    def start(self) -> None:
        """Begin taking jobs (and recover those a crash left behind)."""

    def stop(self) -> None:
        """Stop taking jobs; running jobs are stopped and left for recovery."""

    def submit(self, job_id: str) -> None:
        """Run the queued job ``job_id`` when a worker is free."""

    def cancel(self, job_id: str) -> None:
        """Stop ``job_id`` if it is running (its row already says it is canceled)."""

    def check(self) -> None:
        """Raise :class:`DispatchUnavailable` when jobs cannot be run."""

    def workers(self) -> Liveness:
        """The workers that take jobs now, by their heartbeats."""
