"""resample.py against SciPy, the reference it replaces: the same taps and the same samples."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import signal

from beatsync.engine.output.resample import PolyphaseResampler, kaiser_lowpass, resample_poly


def drift_ratio(rate: int, scale: float) -> tuple[int, int]:
    """48 kHz / (scale × rate) as the renderer approximates it: the smallest ratio within 1 ppm."""
    target = 48_000 / (scale * rate)
    for limit in (64, 256, 1024, 4096, 16384):
        ratio = Fraction(target).limit_denominator(limit)
        if abs(float(ratio) / target - 1) <= 1e-6:
            break
    return ratio.numerator, ratio.denominator


def taps_for(up: int, down: int) -> np.ndarray:
    """The filter scipy.signal.resample_poly designs for itself."""
    widest = max(up, down)
    if widest == 1:
        return np.array([0.25, 0.5, 0.25])  # unused: no filtering at 1/1
    return signal.firwin(20 * widest + 1, 1 / widest, window=("kaiser", 5.0))


RATIOS = [
    (1, 1),
    (160, 147),
    (147, 160),
    (2, 1),
    (1, 3),
    (2, 5),
    (7, 3),
    (4, 6),  # not in lowest terms: reduced to 2/3, as SciPy does
    drift_ratio(44_100, 1 + 250e-6),
    drift_ratio(44_100, 1 - 123.4e-6),
    drift_ratio(48_000, 1 + 77e-6),
    drift_ratio(48_000, 0.93),
]


@pytest.mark.parametrize(
    ("numtaps", "cutoff", "beta"),
    [(1, 0.5, 5.0), (6, 0.3, 2.0), (41, 0.5, 5.0), (201, 1 / 10, 8.6), (18_021, 1 / 901, 5.0)],
)
def test_kaiser_lowpass_is_firwin(numtaps: int, cutoff: float, beta: float) -> None:
    expected = signal.firwin(numtaps, cutoff, window=("kaiser", beta))
    np.testing.assert_allclose(kaiser_lowpass(numtaps, cutoff, beta), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("numtaps", "cutoff"), [(0, 0.5), (11, 0.0), (11, 1.0)])
def test_kaiser_lowpass_refuses_what_firwin_refuses(numtaps: int, cutoff: float) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is ours, the type is SciPy's
        kaiser_lowpass(numtaps, cutoff, 5.0)


def test_the_drift_ratios_are_large() -> None:
    assert max(max(pair) for pair in RATIOS) > 10_000  # the hard case: thousands of phases


@pytest.mark.parametrize(("up", "down"), RATIOS)
@pytest.mark.parametrize("n", [1, 2, 7, 999, 12_345])
def test_matches_scipy_along_the_last_axis(up: int, down: int, n: int) -> None:
    rng = np.random.default_rng(up * 7 + down + n)
    x = rng.standard_normal((2, n))
    taps = taps_for(up, down)
    expected = signal.resample_poly(x, up, down, axis=1, window=taps)
    got = resample_poly(x, up, down, window=taps, axis=1)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("up", "down"), [(160, 147), (147, 160), (3, 2)])
def test_matches_scipy_along_the_first_axis_of_many_channels(up: int, down: int) -> None:
    x = np.random.default_rng(3).standard_normal((5_000, 3))
    taps = taps_for(up, down)
    expected = signal.resample_poly(x, up, down, axis=0, window=taps)
    np.testing.assert_allclose(resample_poly(x, up, down, window=taps, axis=0), expected, atol=1e-9)


@pytest.mark.parametrize("length", [4, 9, 64, 1_000])  # shorter than up, even, odd
def test_any_window_length_is_centred_as_scipy_centres_it(length: int) -> None:
    rng = np.random.default_rng(length)
    taps = rng.standard_normal(length)
    x = rng.standard_normal(3_001)
    for up, down in [(17, 11), (11, 17), (1, 2)]:
        expected = signal.resample_poly(x, up, down, window=taps)
        np.testing.assert_allclose(resample_poly(x, up, down, window=taps), expected, atol=1e-9)


def test_float32_stays_float32_and_close() -> None:
    up, down = drift_ratio(44_100, 1 + 250e-6)
    x = np.random.default_rng(5).standard_normal((2, 44_100)).astype(np.float32)
    taps = taps_for(up, down).astype(np.float32)
    expected = signal.resample_poly(x, up, down, axis=1, window=taps)
    got = resample_poly(x, up, down, window=taps, axis=1)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_integer_input_promotes_like_scipy() -> None:
    x = np.arange(-50, 50, dtype=np.int16)
    taps = taps_for(3, 2)
    expected = signal.resample_poly(x, 3, 2, window=taps)
    got = resample_poly(x, 3, 2, window=taps)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_a_prepared_resampler_gives_the_same_result_every_call() -> None:
    up, down = 160, 147
    taps = taps_for(up, down)
    resampler = PolyphaseResampler(up, down, taps)
    rng = np.random.default_rng(9)
    for n in (10, 50_000, 333):
        x = rng.standard_normal((2, n))
        expected = signal.resample_poly(x, up, down, axis=1, window=taps)
        np.testing.assert_allclose(resampler(x, axis=1), expected, atol=1e-9)
    assert resampler.output_length(147) == 160


def test_equal_factors_return_a_copy_unfiltered() -> None:
    x = np.arange(6.0)
    got = resample_poly(x, 3, 3, window=np.ones(5))
    np.testing.assert_array_equal(got, x)
    assert got is not x


def test_empty_input_gives_empty_output() -> None:
    got = resample_poly(np.zeros((2, 0)), 3, 2, window=np.ones(5), axis=1)
    assert got.shape == (2, 0)


@pytest.mark.parametrize(
    ("up", "down", "window"),
    [(0, 1, np.ones(3)), (1, -2, np.ones(3)), (2, 1, np.ones((2, 2))), (2, 1, np.ones(0))],
)
def test_bad_arguments_are_refused(up: int, down: int, window: np.ndarray) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - as SciPy
        resample_poly(np.ones(10), up, down, window=window)
