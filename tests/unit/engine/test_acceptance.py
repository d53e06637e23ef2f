"""The acceptance test: a line must be held by more windows than chance gives in the search run.

The significance is ``−log10(N · P[Binomial(n, p) ≥ k])``: ``N`` lines told apart by the
search (offsets × slopes × speeds), ``p`` the chance a window's peak lands on one of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from beatsync.engine import Mapping
from beatsync.engine.alignment.acceptance import Trials, answer_significance, significance
from beatsync.engine.alignment.fine import Fit, WindowTrack
from beatsync.engine.piece import Piece


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


def _piece_fit(times: np.ndarray, hits: np.ndarray, offset: float) -> Fit:
    track = WindowTrack(times, np.full(len(times), offset), np.ones(len(times)), hits)
    n = int(hits.sum())
    return Fit(Mapping(offset, 1.0), track, float(n), float(n), n, len(times))


def test_an_edit_is_judged_on_all_its_pieces() -> None:
    # Four pieces of 10 windows in a 40-window recording, 8 agreeing windows in each: the main
    # line alone is held by 8 of 40 windows, the answer by 8 of 10 in each piece.
    times = np.arange(40, dtype=np.float64) + 0.5
    fits, pieces = [], []
    for k in range(4):
        hits = (times >= 10 * k) & (times < 10 * k + 8)
        fits.append(_piece_fit(times, hits, 5.0 * k))
        pieces.append(Piece(10.0 * k, 10.0 * (k + 1), fits[-1].mapping))
    trials = Trials(40.0, 200.0)
    alone = significance(fits[0], trials)
    whole = answer_significance(pieces, fits, trials)
    offsets = 240.0 / 0.004
    slopes = 1.0 + 0.02 * 39.0 / 0.004
    tails = 4 * math.log10(sum(math.comb(10, j) * 0.025**j * 0.975 ** (10 - j)
                               for j in range(8, 11)))  # fmt: skip
    expected = -(4 * math.log10(offsets) + math.log10(slopes) + math.log10(math.comb(40, 3))
                 + tails)  # fmt: skip
    assert whole == pytest.approx(expected, rel=1e-9)
    assert whole > alone + 20.0
    # One piece is the line's own significance.
    assert answer_significance(pieces[:1], fits[:1], trials) == alone


def test_an_edit_of_chance_pieces_is_not_significant() -> None:
    # A line that holds its piece, and three lines each held by one stray window in theirs.
    times = np.arange(40, dtype=np.float64) + 0.5
    fits, pieces = [], []
    for k in range(4):
        hits = (times >= 10 * k) & (times < 10 * k + (8 if k == 0 else 1))
        fits.append(_piece_fit(times, hits, 5.0 * k))
        pieces.append(Piece(10.0 * k, 10.0 * (k + 1), fits[-1].mapping))
    trials = Trials(40.0, 200.0)
    assert answer_significance(pieces, fits, trials) < significance(fits[0], trials) - 10.0
