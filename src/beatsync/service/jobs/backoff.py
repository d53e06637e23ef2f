"""How long a job waits between attempts at storage that is unavailable.

An outage of object storage (a restart, a failover, a network cut) usually lasts seconds to a
few minutes. A job waits it out inside its run, where its downloaded inputs and rendered
results stay in its work folder, rather than failing or starting over: pauses start short,
double up to a cap and stop once their sum reaches the window. Only then does the job fail
``STORAGE_UNAVAILABLE``. The window is the run's, not each operation's, and waiting does not
count against the job's time limits (:class:`StorageWaits`).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FIRST_PAUSE_S", "MAX_PAUSE_S", "StorageWaits", "storage_pauses"]

FIRST_PAUSE_S = 0.5
"""The first pause after a storage operation found the backend unavailable."""
MAX_PAUSE_S = 30.0
"""The longest pause between two attempts."""


def storage_pauses(
    window_s: float, *, first_s: float = FIRST_PAUSE_S, cap_s: float = MAX_PAUSE_S
) -> tuple[float, ...]:
    """The pauses between attempts, doubling from ``first_s`` up to ``cap_s``, that add up to
    ``window_s`` (the last one shortened to fit); none for a window of 0."""
    if first_s <= 0 or cap_s <= 0:
        raise ValueError("pauses must be positive")
    pauses: list[float] = []
    left, pause = window_s, first_s
    while left > 1e-9:
        step = min(pause, cap_s, left)
        pauses.append(step)
        left -= step
        pause *= 2
    return tuple(pauses)


class StorageWaits:
    """What one run has waited for storage: ``window_s`` in all (not per operation), and the
    soft time limit moved later by as much, so that the limit measures work, not waiting.

    The soft time limit arrives as a request at a moment the run does not choose (a timer
    started with the process). Seen first at ``t0`` after ``w`` seconds of waiting, the run has
    worked ``t0 - w`` of its allowance; it stands once the run has also worked off every second
    it waits, before and after: at ``t0 + waited``. A run that never waited stops at once.
    """

    def __init__(self, window_s: float, *, on_wait: Callable[[float], None] | None = None) -> None:
        self.window_s = window_s
        self.waited = 0.0
        self._on_wait = on_wait
        self._limit_seen: float | None = None

    def left(self) -> float:
        """Seconds of waiting this run still has."""
        return max(0.0, self.window_s - self.waited)

    def add(self, seconds: float) -> None:
        """Count ``seconds`` waited (and tell whoever enforces the hard time limit)."""
        self.waited += seconds
        if self._on_wait is not None:
            self._on_wait(seconds)

    def limit_stands(self, now: float) -> bool:
        """Whether the soft time limit, requested and seen at ``now`` (monotonic seconds),
        applies yet."""
        if self.waited <= 0:
            return True
        if self._limit_seen is None:
            self._limit_seen = now
        return now >= self._limit_seen + self.waited
