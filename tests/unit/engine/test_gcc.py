"""Frame-averaged GCC-PHAT: sub-sample lags, reverb, and frames that follow a drifting clock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from beatsync.engine.alignment.gcc import (
    FrameTrack,
    Windows,
    earliest_arrival,
    frame_agreement,
    window_lags,
)
from beatsync.testkit.room import impulse_response, reverberate

RATE = 16_000


def _delayed(x: np.ndarray, delay_samples: float) -> np.ndarray:
    """``x`` delayed by a fractional number of samples (exact, in the frequency domain)."""
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    k = np.arange(len(spectrum))
    return np.fft.irfft(spectrum * np.exp(-2j * np.pi * k * delay_samples / (2 * n)), 2 * n)[:n]


@pytest.mark.parametrize("delay", [0.0, 3.37, -12.5, 250.25])
def test_recovers_a_fractional_lag(delay: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(8 * RATE).astype(np.float32)
    y = _delayed(x, delay).astype(np.float32)
    # y holds x's content ``delay`` samples later: windows of x at k·hop match y there.
    track = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    result = window_lags(Windows(x, y, track, np.array([8, 40, 80]), 28, RATE, 0.03))
    # A parabola through a whitened peak is biased by up to a tenth of a sample (6 µs).
    np.testing.assert_allclose(result.lag * RATE, delay, atol=0.15)
    assert np.all(result.prominence > 20)


def test_finds_the_direct_sound_in_a_reverberant_room() -> None:
    rng = np.random.default_rng(2)
    clean = rng.standard_normal(10 * RATE).astype(np.float32)
    ir = impulse_response(rng, RATE, rt60=1.5, drr_db=-6.0)
    live = reverberate(clean, ir)
    live = live + 0.5 * np.std(live) * rng.standard_normal(len(live)).astype(np.float32)
    # The live recording lags the reference by 40 samples (2.5 ms).
    live = np.concatenate([np.zeros(40, np.float32), live[:-40]])
    track = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    result = window_lags(Windows(live, clean, track, np.array([16, 60, 100]), 28, RATE, 0.08))
    np.testing.assert_allclose(result.lag * RATE, -40.0, atol=0.2)


def test_frames_follow_the_predicted_drift() -> None:
    rng = np.random.default_rng(3)
    y = rng.standard_normal(40 * RATE).astype(np.float32)
    scale = 1.0004  # y runs 400 ppm faster than x
    t = np.arange(int(30 * RATE / scale)) * scale
    x = np.interp(t, np.arange(len(y)), y).astype(np.float32)
    following = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=scale)
    fixed = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    starts = np.array([100, 300])
    good = window_lags(Windows(x, y, following, starts, 28, RATE, 0.03))
    bad = window_lags(Windows(x, y, fixed, starts, 28, RATE, 0.03))
    np.testing.assert_allclose(good.lag, 0.0, atol=2e-5)
    assert np.all(good.strength > 2 * bad.strength)


def test_agreement_is_high_with_music_and_low_without() -> None:
    rng = np.random.default_rng(4)
    y = rng.standard_normal(6 * RATE).astype(np.float32)
    x = y.copy()
    x[3 * RATE :] = rng.standard_normal(3 * RATE)  # the second half is unrelated
    track = FrameTrack(frame=1024, hop=512, y_first=0.0, step=1.0)
    agree = frame_agreement(x, y, track, track.frame_count(len(x)), rate=RATE)
    half = len(agree) // 2
    assert np.median(agree[: half - 4]) > 0.9
    assert abs(np.median(agree[half + 4 :])) < 0.1


def test_agreement_over_many_chunks_is_the_same_from_a_pool_of_threads() -> None:
    rng = np.random.default_rng(6)
    y = rng.standard_normal(50 * RATE).astype(np.float32)  # 1561 frames: two chunks
    x = y.copy()
    x[20 * RATE : 30 * RATE] = rng.standard_normal(10 * RATE)  # a stretch without the music
    track = FrameTrack(frame=1024, hop=512, y_first=0.0, step=1.0)
    count = track.frame_count(len(x))
    alone = frame_agreement(x, y, track, count, rate=RATE)
    with ThreadPoolExecutor(2) as pool:
        shared = frame_agreement(x, y, track, count, rate=RATE, pool=pool)
    np.testing.assert_allclose(shared, alone, rtol=1e-5, atol=1e-6)
    assert len(alone) == count
    assert np.median(alone[: 19 * RATE // 512]) > 0.9
    assert abs(np.median(alone[21 * RATE // 512 : 29 * RATE // 512])) < 0.1


def test_earliest_arrival_is_the_direct_sound_under_a_louder_reflection() -> None:
    rng = np.random.default_rng(7)
    clean = rng.standard_normal(20 * RATE).astype(np.float32)
    # The direct sound comes 40 samples late; a mirror returns it 3 dB louder 4 ms (64 samples)
    # after that; then the room's tail and some noise.
    tail = reverberate(clean, impulse_response(rng, RATE, rt60=1.0, drr_db=0.0))
    live = 0.7 * _delayed(clean, 40) + _delayed(clean, 104) + 0.3 * _delayed(tail - clean, 200)
    live = (live + 0.3 * np.std(live) * rng.standard_normal(len(live))).astype(np.float32)
    track = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    # Window by window the strongest peak is the reflection...
    windows = window_lags(Windows(live, clean, track, np.array([16, 120, 230]), 28, RATE, 0.08))
    np.testing.assert_allclose(windows.lag * RATE, -104.0, atol=0.3)
    # ...while the earliest strong arrival over the frames is the direct sound.
    frames = np.arange(16, track.frame_count(len(live)), dtype=np.int64)
    arrival = earliest_arrival(live, clean, track, frames, rate=RATE, search=0.08)
    assert arrival is not None
    assert arrival.lag * RATE == pytest.approx(-40.0, abs=0.2)
    assert arrival.strongest * RATE == pytest.approx(-104.0, abs=1.0)
    assert 0.35 <= arrival.share < 0.6
    assert arrival.prominence > 20


def test_earliest_arrival_stands_out_of_what_comes_before_it_in_a_crowded_room() -> None:
    rng = np.random.default_rng(9)
    clean = rng.standard_normal(20 * RATE).astype(np.float32)
    # The phone at the far wall: the direct sound (40 samples late) at 0.7 of the reflections
    # that crowd the next 25 ms, under a loud reverberation. The crowd so widens the summed
    # correlation's spread that the direct sound stands less than 8 deviations above it, while
    # nothing before it comes near.
    tail = reverberate(clean, impulse_response(rng, RATE, rt60=1.0, drr_db=-6.0)) - clean
    live = 0.7 * _delayed(clean, 40) + 6.0 * _delayed(tail, 240)
    for delay, amp in ((26, 0.9), (43, 0.9), (66, 0.95), (102, 0.8), (240, 1.3), (379, 0.85)):
        live += amp * _delayed(clean, 40 + delay)
    live = (live + 0.5 * np.std(live) * rng.standard_normal(len(live))).astype(np.float32)
    track = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    frames = np.arange(16, track.frame_count(len(live)), dtype=np.int64)
    arrival = earliest_arrival(live, clean, track, frames, rate=RATE, search=0.08)
    assert arrival is not None
    assert arrival.lag * RATE == pytest.approx(-40.0, abs=0.2)
    assert arrival.strongest * RATE == pytest.approx(-280.0, abs=1.0)
    assert arrival.prominence < 8.0


def test_earliest_arrival_of_a_single_path_is_its_own_peak() -> None:
    rng = np.random.default_rng(8)
    clean = rng.standard_normal(12 * RATE).astype(np.float32)
    # Noise alone makes no earlier arrival, and the peak's own side lobes are not one.
    live = _delayed(clean, 12.4) + 2.0 * rng.standard_normal(len(clean))
    track = FrameTrack(frame=4096, hop=1024, y_first=0.0, step=1.0)
    frames = np.arange(track.frame_count(len(live)), dtype=np.int64)
    arrival = earliest_arrival(
        live.astype(np.float32), clean, track, frames, rate=RATE, search=0.08
    )
    assert arrival is not None
    assert arrival.lag * RATE == pytest.approx(-12.4, abs=0.15)
    assert arrival.share == 1.0
    assert (
        earliest_arrival(live.astype(np.float32), clean, track, frames[:0], rate=RATE, search=0.08)
        is None
    )
