"""Band features: read from a whole spectrogram, a block of frames at a time or at several
pitches at once, they agree."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from beatsync.engine.alignment.features import (
    band_features,
    pitched_band_features,
    power_spectrogram,
    signal_band_features,
)

RATE = 16_000


@pytest.mark.parametrize("seconds", [0.03, 0.07, 9.5, 31.0])
def test_block_by_block_features_equal_the_whole_spectrograms(seconds: float) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * RATE)) / RATE
    tones = np.sin(2 * np.pi * 440 * t * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t)))
    samples = (tones + 0.3 * rng.standard_normal(len(t))).astype(np.float32)
    whole = band_features(power_spectrogram(samples, RATE), RATE)
    blocks = signal_band_features(samples, RATE)
    assert blocks.shape == whole.shape
    assert blocks.shape[1] == max(0, (len(samples) - 1024) // (RATE // 100) + 1)
    np.testing.assert_allclose(blocks, whole, atol=1e-4)


def test_bands_at_several_pitches_equal_those_of_the_whole_spectrogram() -> None:
    rng = np.random.default_rng(4)
    samples = rng.standard_normal(12 * RATE).astype(np.float32)
    power = power_spectrogram(samples, RATE)
    pitches = (1.25, 0.8, 1.0)
    got = pitched_band_features(samples, RATE, pitches)
    for pitch, bands in zip(pitches, got, strict=True):
        np.testing.assert_allclose(bands, band_features(power, RATE, pitch=pitch), atol=1e-4)
    assert pitched_band_features(samples, RATE, ()) == []


@pytest.mark.parametrize("seconds", [0.07, 9.5, 31.0])
def test_bands_read_in_halves_by_two_threads_are_those_of_one_pass(seconds: float) -> None:
    rng = np.random.default_rng(5)
    samples = rng.standard_normal(int(seconds * RATE)).astype(np.float32)
    pitches = (1.3, 0.85)
    alone = pitched_band_features(samples, RATE, pitches)
    with ThreadPoolExecutor(2) as pool:
        shared = pitched_band_features(samples, RATE, pitches, pool=pool)
    for a, b in zip(alone, shared, strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
