"""A scan's trials share the dance signal's frames: each trial measures what it would alone."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from beatsync.engine.alignment.fine import measure
from beatsync.engine.alignment.signals import Signals
from beatsync.engine.alignment.spectra import FrameSpectra, ScanMemo
from beatsync.engine.mapping import Mapping
from beatsync.engine.media.decode import Audio

RATE = 16_000


def _signals(scale: float, offset: float) -> Signals:
    """A reference of noise bursts and a dance recording of it played at ``scale``× from
    ``offset`` s (resampled, so the pitch moves with it)."""
    rng = np.random.default_rng(3)
    bgm = (rng.standard_normal(70 * RATE) * np.repeat(rng.random(70 * 8), RATE // 8)).astype(
        np.float32
    )
    t = offset + scale * np.arange(50 * RATE) / RATE
    dance = np.interp(t, np.arange(len(bgm)) / RATE, bgm).astype(np.float32)
    dance += 0.3 * rng.standard_normal(len(dance)).astype(np.float32)
    return Signals(Audio(dance, RATE, 0.0), Audio(bgm, RATE, 0.0))


def test_frames_are_transformed_once_and_given_back_as_made() -> None:
    x = np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)
    window = np.hanning(512).astype(np.float32)
    spectra = FrameSpectra()
    first = spectra.transform(frames, np.array([0, 128, 256]), window, 1)
    again = spectra.transform(frames, np.array([256, 384, 0]), window, 1)
    assert spectra.starts.tolist() == [0, 128, 256, 384]
    np.testing.assert_array_equal(again[0], first[2])
    np.testing.assert_array_equal(again[2], first[0])
    np.testing.assert_array_equal(again[1], scipy.fft.rfft(frames[384] * window))


@pytest.mark.parametrize(
    ("scale", "pitch_kept", "window"),
    [(1.0002, False, 2.0), (1.25, False, 1.0), (0.9, True, 1.0)],
)
def test_trials_sharing_a_memo_measure_what_they_measure_alone(
    scale: float, pitch_kept: bool, window: float
) -> None:
    signals = _signals(scale if not pitch_kept else 1.0, 7.0)
    memo = ScanMemo()
    frame = 4096 if window >= 2.0 else 2048
    for trial in scale * (1.0 + np.array([-0.001, -0.0005, 0.0, 0.0005, 0.001])):
        mapping = Mapping(7.0 - (trial - scale) * 25.0, float(trial), pitch_kept)
        kwargs = {"window": window, "hop": window, "max_windows": 40, "search": 0.08}
        alone = measure(signals, mapping, frame=frame, **kwargs)  # type: ignore[arg-type]
        shared = measure(signals, mapping, frame=frame, memo=memo, **kwargs)  # type: ignore[arg-type]
        for a, b in zip(alone, shared, strict=True):
            np.testing.assert_array_equal(a, b)
    # One resampling's frames at a time, however many the trials went through.
    assert len(memo.spectra) == 1
    assert all(len(s.starts) > 0 for s in memo.spectra.values())
