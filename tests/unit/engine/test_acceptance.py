"""The acceptance test: a line must be held by more windows than chance gives in the search run.

The significance is ``−log10(N · P[Binomial(n, p) ≥ k])``: ``N`` lines told apart by the
search (offsets × slopes × speeds), ``p`` the chance a window's peak lands on one of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from beatsync.engine import Mapping
from beatsync.engine.alignment.acceptance import Trials, significance
from beatsync.engine.alignment.fine import Fit, WindowTrack


def _fit(windows: int, hits: int, *, pitch_kept: bool = False, scale: float = 1.0) -> Fit:
    times = np.arange(windows, dtype=np.float64) + 1.0
    inlier = np.zeros(windows, dtype=bool)
    inlier[:hits] = True
    track = WindowTrack(times, np.zeros(windows), np.ones(windows), inlier)
    return Fit(Mapping(0.0, scale, pitch_kept), track, float(hits), float(hits), hits, windows)


def _expected(n: int, k: int, p: float, lines: float) -> float:
    tail = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
    return -math.log10(lines * tail)


def test_ten_minutes_of_chance_windows_are_not_significant() -> None:
    # The pair a fifth-of-the-windows rule once had to refuse: 8 of 448 windows on one line.
    fit = _fit(448, 8)
    found = significance(fit, Trials(600.0, 615.0))
    # 2 ms of a ±80 ms search; offsets over 1215 s, slopes over ±1 % of a 447 s span, in 4 ms.
    lines = (1215.0 / 0.004) * (1.0 + 0.02 * 447.0 / 0.004)
    assert found == pytest.approx(_expected(448, 8, 0.002 / 0.08, lines), abs=1e-9)
    assert found < -8.5


def test_a_short_true_pair_is_significant() -> None:
    found = significance(_fit(15, 12), Trials(17.0, 200.0, speeds=5))
    lines = (217.0 / 0.004) * (1.0 + 0.02 * 14.0 / 0.004) * 5
    assert found == pytest.approx(_expected(15, 12, 0.025, lines), rel=1e-9)
    assert found > 8.0


def test_the_bar_rises_with_the_breadth_of_the_search() -> None:
    fit = _fit(60, 20)
    narrow = significance(fit, Trials(60.0, 120.0))
    assert significance(fit, Trials(60.0, 120.0, speeds=5)) == pytest.approx(
        narrow - math.log10(5.0)
    )
    longer = significance(fit, Trials(60.0, 600.0))
    assert longer == pytest.approx(narrow - math.log10(660.0 / 180.0))
    # More windows for the same hits: chance has more tries.
    assert significance(_fit(120, 20), Trials(60.0, 120.0)) < narrow - 3.0


def test_a_pitch_kept_line_counts_its_wider_agreement() -> None:
    # Its windows agree within 4 ms of the first pass's ±32 ms: a chance of an eighth.
    fit = _fit(32, 30, pitch_kept=True, scale=0.9)
    found = significance(fit, Trials(36.0, 60.0, speeds=5))
    lines = (96.0 / 0.008) * (1.0 + 0.02 * 0.9 * 31.0 / 0.008) * 5
    assert found == pytest.approx(_expected(32, 30, 0.125, lines), rel=1e-9)


def test_no_agreeing_window_is_no_evidence() -> None:
    assert significance(_fit(30, 0), Trials(30.0, 30.0)) == pytest.approx(
        -math.log10((60.0 / 0.004) * (1.0 + 0.02 * 29.0 / 0.004))
    )
