"""The robust line fit: exact on agreeing windows, unmoved by outliers and a repeated section."""

from __future__ import annotations

import numpy as np

from beatsync.engine import Mapping
from beatsync.engine.alignment.linefit import fit_line


def test_fit_ignores_outliers_and_a_second_line() -> None:
    rng = np.random.default_rng(5)
    truth = Mapping(12.3456, 1.00025)
    t = np.arange(2.0, 120.0, 1.0)
    beta = truth.bgm_time_array(t) + rng.normal(0, 0.0002, len(t))
    prom = np.full(len(t), 12.0)
    # A fifth of the windows are wild, and a stretch matches a copy 40 ms later (a repeat).
    wild = rng.choice(len(t), len(t) // 5, replace=False)
    beta[wild] += rng.uniform(-0.08, 0.08, len(wild))
    beta[30:40] += 0.040
    guess = Mapping(truth.offset + 0.02, 1.0)
    fitted = fit_line(t, beta, prom, guess, gate=0.08)
    assert fitted is not None
    found, inlier = fitted
    assert abs(found.bgm_time(60.0) - truth.bgm_time(60.0)) < 1e-4
    assert abs(found.drift_ppm - truth.drift_ppm) < 2.0
    assert not inlier[30:40].any()
    assert inlier.sum() >= len(t) - len(wild) - 10 - 2


def test_no_fit_without_strong_windows() -> None:
    t = np.arange(0.0, 20.0)
    assert fit_line(t, t + 3.0, np.full(len(t), 2.0), Mapping(3.0), gate=0.08) is None
