"""Songs built from loops: another song of the same tempo and key, built from the same drum
samples, shares the beat but not the harmony, and is refused; the song itself is synced."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.signal import fftconvolve, resample_poly

from beatsync.engine import Audio, MusicMismatchError, align_signals
from beatsync.engine.alignment.features import signal_band_features
from beatsync.engine.alignment.fine import Fit, measure_mapping
from beatsync.engine.alignment.harmony import Harmony, standout
from beatsync.engine.alignment.signals import Signals
from beatsync.engine.mapping import Mapping
from beatsync.testkit.studio import studio_song

RATE = 16000
# The class plays the song from 16 s (verse, then chorus) at dance time 2 s: offset 14 s.
PLAYED = (16.0, 46.0)
OFFSET = 14.0


@cache
def song(variant: str) -> NDArray[np.float32]:
    mono = studio_song(f"studio:pop:{variant}").mono().astype(np.float64)
    return resample_poly(mono, 160, 441).astype(np.float32)


@cache
def recording() -> Audio:
    """The verse and chorus of ``studio:pop:full`` in a small room (RT60 0.6 s) with noise
    20 dB down, two seconds of silence either side."""
    rng = np.random.default_rng(5)
    n = round(0.6 * RATE)
    response = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
    response *= 0.5 / np.sqrt(np.sum(response**2))
    response[0] = 1.0
    part = song("full")[round(PLAYED[0] * RATE) : round(PLAYED[1] * RATE)]
    heard = fftconvolve(part, response)[: len(part)]
    heard += 0.1 * np.std(heard) * rng.standard_normal(len(heard))
    silence = np.zeros(2 * RATE)
    return Audio(np.concatenate([silence, heard, silence]).astype(np.float32), RATE, 0.0)


def test_another_song_from_the_same_samples_is_refused() -> None:
    with pytest.raises(MusicMismatchError, match="beats match but not their harmony"):
        align_signals(recording(), Audio(song("other"), RATE, 0.0))


def test_the_song_itself_is_synced() -> None:
    found = align_signals(recording(), Audio(song("full"), RATE, 0.0))
    assert found.mapping.bgm_time(17.0) == pytest.approx(OFFSET + 17.0, abs=2e-4)
    assert len(found.parts) == 1


def _fit(reference: NDArray[np.float32]) -> tuple[Harmony, Fit]:
    dance, bgm = recording(), Audio(reference, RATE, 0.0)
    fit = measure_mapping(Signals(dance, bgm), Mapping(OFFSET, 1.0), window=2.0, hop=1.0,
                          max_windows=600)  # fmt: skip
    bands = (signal_band_features(dance.samples, RATE), signal_band_features(bgm.samples, RATE))
    return Harmony.of(*bands, 0.0, 0.0), fit


def test_the_song_stands_out_of_its_bars_and_the_other_song_does_not() -> None:
    # The fine windows hear the drums: the other song's line at the same place is held too.
    harmony, fit = _fit(song("other"))
    assert fit.hits == fit.windows == 32
    windows, out = standout(harmony, fit)
    assert windows == 15
    assert out <= 6
    harmony, fit = _fit(song("full"))
    windows, out = standout(harmony, fit)
    assert windows == 15
    assert out == 15
