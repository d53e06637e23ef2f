"""The coarse search's window correlation: overlap-save blocks give what one long FFT gives."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.typing import NDArray

search = importlib.import_module("beatsync.engine.alignment.search")

RATE = 100  # feature frames per second


def direct_peaks(
    dance: NDArray[np.float32], bgm: NDArray[np.float32], speed: float
) -> NDArray[np.float64]:
    """The same rows computed plainly: every window against every lag by np.correlate."""
    width, hop = int(search._WINDOW_S * RATE), int(search._HOP_S * RATE)
    n_dance, n_bgm = dance.shape[1], bgm.shape[1]
    n_stretched = int(n_dance * speed)
    src = np.arange(n_stretched) / speed
    stretched = np.stack([np.interp(src, np.arange(n_dance), b) for b in dance])
    lags = np.arange(-width // 2, n_bgm - width // 2)
    padded = np.concatenate(
        [np.zeros((bgm.shape[0], width)), bgm.astype(np.float64), np.zeros((bgm.shape[0], width))],
        axis=1,
    )
    energy = np.concatenate([[0.0], np.cumsum((bgm.astype(np.float64) ** 2).sum(axis=0))])
    local = np.sqrt(
        np.maximum(energy[np.clip(lags + width, 0, n_bgm)] - energy[np.clip(lags, 0, n_bgm)], 1e-9)
    )
    rows: list[tuple[float, float, float, float]] = []
    for s in range(0, max(1, n_stretched - width + 1), hop):
        win = stretched[:, s : s + width].astype(np.float64)
        if win.shape[1] < width:
            continue
        corr = sum(
            np.correlate(padded[b, lags[0] + width : lags[-1] + 2 * width], win[b], "valid")
            for b in range(win.shape[0])
        )
        corr = corr / ((np.sqrt((win**2).sum()) + 1e-9) * local)
        rows.extend(search._peaks(corr, s, lags, speed, int(0.25 * RATE), 0.0, 0.0))
    return np.asarray(rows).reshape(-1, 4)


@pytest.mark.parametrize(
    ("n_bgm", "speed"),
    [(1500, 1.0), (5000, 1.0), (5000, 1.04), (12_345, 0.97)],
    ids=["one-block", "several-blocks", "faster", "slower-ragged"],
)
def test_window_peaks_match_a_direct_correlation(n_bgm: int, speed: float) -> None:
    rng = np.random.default_rng(n_bgm)
    bgm = rng.standard_normal((8, n_bgm)).astype(np.float32)
    # The dance recording: a stretch of the reference under noise, so there are real peaks.
    take = bgm[:, n_bgm // 5 : n_bgm // 5 + min(3000, n_bgm // 2)]
    dance = (take + 0.5 * rng.standard_normal(take.shape)).astype(np.float32)
    want = direct_peaks(dance, bgm, speed)
    assert len(want) > 0
    with ThreadPoolExecutor(2) as pool:
        for got in (
            search._window_peaks(dance, bgm, speed, 0.0, 0.0),
            search._window_peaks(dance, bgm, speed, 0.0, 0.0, pool),  # batches side by side
        ):
            assert got.shape == want.shape
            np.testing.assert_allclose(got[:, [0, 1, 3]], want[:, [0, 1, 3]])
            np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=1e-4)
