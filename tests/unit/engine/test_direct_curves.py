"""The windows' correlations read along lines: slices of the padded curves give what indexing
each lag (clipped at the curves' ends) gives."""

from __future__ import annotations

import numpy as np
import pytest

from beatsync.engine.alignment.direct import _Curves


def _curves(rows: int, reach: int) -> _Curves:
    curves = object.__new__(_Curves)
    curves.curves = (
        np.random.default_rng(rows).standard_normal((rows, 2 * reach + 1)).astype(np.float32)
    )
    curves.reach = reach
    curves.rate = 64_000.0
    curves._split = {}
    return curves


@pytest.mark.parametrize("step", [1, 4, 3])
def test_lines_read_as_slices_match_the_clipped_lags(step: int) -> None:
    c = _curves(37, 640)
    rows = np.arange(37)[:, None]
    dt = np.linspace(-80.0, 80.0, 37)
    for slope in (-2e-4, -3e-5, 0.0, 1.7e-6, 1.9e-4):
        shift = np.rint(slope * dt * c.rate).astype(np.int64)
        for first, count in ((-640, 1281 // step), (-50, 60), (600, 30), (-700, 20)):
            lags = first + step * np.arange(count)
            idx = np.clip(lags[None, :] + shift[:, None] + c.reach, 0, 2 * c.reach)
            np.testing.assert_array_equal(c._along(shift, first, count, step), c.curves[rows, idx])
            height, at = c._peak(rows[:, 0][:, None], dt, slope, lags)
            total = c.curves[rows, idx].sum(axis=0)
            assert (height, at) == (float(total.max()), int(lags[np.argmax(total)]))
