"""How long a job waits between attempts at storage that is unavailable.

An outage of object storage (a restart, a failover, a network cut) usually lasts seconds to a
few minutes. A job waits it out inside its run, where its downloaded inputs and rendered
results stay in its work folder, rather than failing or starting over: pauses start short,
double up to a cap and stop once their sum reaches the window. Only then does the job fail
``STORAGE_UNAVAILABLE``.
"""

from __future__ import annotations

__all__ = ["FIRST_PAUSE_S", "MAX_PAUSE_S", "storage_pauses"]

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
