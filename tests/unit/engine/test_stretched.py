"""The dance signal resampled for a change of speed: whole, or only where it is read."""

from __future__ import annotations

import numpy as np

from beatsync.engine.alignment.signals import Signals, cubic_resample, stretched
from beatsync.engine.media.decode import Audio

RATE = 16_000


def _signals(seconds: float) -> Signals:
    rng = np.random.default_rng(5)
    samples = rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    return Signals(Audio(samples, RATE, 0.0), Audio(samples, RATE, 0.0))


def test_resampling_follows_the_interpolation_formula() -> None:
    x = np.random.default_rng(6).standard_normal(1000).astype(np.float32)
    ratio = 1.25
    out = cubic_resample(x, ratio)
    assert len(out) == 1250
    xp = np.pad(x, (2, 3)).astype(np.float64)
    for k in (0, 1, 17, 600, 1249):
        pos = k / ratio
        i = int(np.floor(pos))
        f = pos - i
        p0, p1, p2, p3 = xp[i + 1], xp[i + 2], xp[i + 3], xp[i + 4]  # x[i − 1 … i + 2]
        want = p1 + 0.5 * f * (
            p2 - p0 + f * (2 * p0 - 5 * p1 + 4 * p2 - p3 + f * (3 * (p1 - p2) + p3 - p0))
        )
        assert abs(float(out[k]) - want) < 1e-5


def test_spans_are_made_exactly_as_in_the_whole_and_nothing_else() -> None:
    x = np.random.default_rng(7).standard_normal(70 * RATE).astype(np.float32)
    for ratio in (0.8, 1.251, 1.35):
        whole = cubic_resample(x, ratio)
        spans = np.array([[-5, 4000], [100_000, 300_000], [290_000, 310_000],
                          [len(whole) - 7000, len(whole) + 50]])  # fmt: skip
        part = cubic_resample(x, ratio, spans=spans)
        inside = np.zeros(len(whole), dtype=bool)
        for lo, hi in spans:
            inside[max(lo, 0) : hi] = True
        np.testing.assert_array_equal(part[inside], whole[inside])
        assert not part[~inside].any()


def test_few_windows_are_resampled_alone_and_whole_resamplings_are_few() -> None:
    signals = _signals(60.0)
    n = int(60 * RATE * 1.2)
    few = np.array([[0, RATE], [30 * RATE, 31 * RATE]])
    part, ratio = stretched(signals, 1.2, spans=few)
    assert ratio == 1.2
    assert len(part) == n
    assert not signals.stretched  # not kept
    assert not part[2 * RATE : 29 * RATE].any()
    for scale in (1.2, 1.1, 0.9, 0.8):
        stretched(signals, scale)
    assert [float(k) for k in signals.stretched] == [1.1, 0.9, 0.8]
    whole, _ = stretched(signals, 1.1, spans=few)  # kept whole: read as it is
    assert whole is signals.stretched[next(reversed(signals.stretched))]
    assert stretched(signals, 1.001)[1] == 1.0  # clock drift: no resampling
