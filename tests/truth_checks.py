"""The checks every test that renders an output makes against its case's truth.

Sync is measured on the output file (the frame code on screen against the reference heard, see
:func:`beatsync.testkit.sync_errors`) one correlation window inside each edge of the cut and in
its middle. The engine comes within 0.1 ms on every standard case (``bench/RESULTS.md``), so a
millisecond is the tolerance: a regression of a millisecond or more fails. The cut's edges must
be those of the truth (the music's, or a picture or reference edge where that comes first).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from beatsync.testkit import BuiltCase, sync_errors

__all__ = [
    "EDGE_MARGIN_S",
    "MAX_CUT_ERROR_S",
    "MAX_CUT_KEPT_S",
    "MAX_SYNC_MS",
    "assert_cut_matches",
    "assert_in_sync",
    "assert_report_output_matches",
]

MAX_SYNC_MS = 1.0
MAX_CUT_ERROR_S = 0.35
# When unsure the cut keeps the music: an edge may reach this far into the room's reverberant
# tail (or the silence before the music), never as far into the music.
MAX_CUT_KEPT_S = 0.5
EDGE_MARGIN_S = 0.6


def assert_cut_matches(case: BuiltCase, start: float, end: float) -> None:
    """The cut (dance seconds) is the truth's: no edge ``MAX_CUT_ERROR_S`` into the music, nor
    ``MAX_CUT_KEPT_S`` beyond it."""
    cut = case.truth.cut
    assert cut is not None, "a mismatched case has no cut"
    assert -MAX_CUT_KEPT_S <= start - cut[0] <= MAX_CUT_ERROR_S, (start, cut)
    assert -MAX_CUT_ERROR_S <= end - cut[1] <= MAX_CUT_KEPT_S, (end, cut)


def assert_in_sync(
    output: Path | str, case: BuiltCase, start: float, end: float, *, expected_ms: float = 0.0
) -> list[float]:
    """The output's sync error at its start, middle and end (output seconds ``start``–``end``
    of the cut) is ``expected_ms`` (a deliberate nudge) to ``MAX_SYNC_MS``; returns the errors."""
    times = (start + EDGE_MARGIN_S, (start + end) / 2, end - EDGE_MARGIN_S)
    errors = sync_errors(output, case, times=times)
    assert all(not math.isnan(e) for e in errors), errors
    assert max(abs(e - expected_ms) for e in errors) <= MAX_SYNC_MS, errors
    return errors


def assert_report_output_matches(
    output: Path | str,
    case: BuiltCase,
    report: dict[str, Any],
    *,
    expected_ms: float = 0.0,
    cut: bool = True,
) -> list[float]:
    """A rendered ``output`` and its JSON ``report`` against the truth: the cut's edges (unless
    ``cut`` is False: a cut the caller chose) and the sync along it."""
    start, end = report["cut"]["start_s"], report["cut"]["end_s"]
    if cut:
        assert_cut_matches(case, start, end)
    first = report["output"]["video_start_s"]
    return assert_in_sync(output, case, start - first, end - first, expected_ms=expected_ms)
