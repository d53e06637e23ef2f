"""The waveform search's whitening against SciPy's ``resample_poly``/``stft``/``istft`` path,
which it replaces: the same samples to float32 precision, and no ``scipy.signal`` import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from beatsync.engine.alignment.waveform import _FRAME, _LOW_HZ, _RATE, _whitened


def scipy_whitened(samples: np.ndarray, rate: int) -> np.ndarray:
    """The whitening as it was written with ``scipy.signal``."""
    low = samples
    if rate != _RATE:
        low = signal.resample_poly(samples, _RATE, rate).astype(np.float32)
    _, _, z = signal.stft(low, nperseg=_FRAME, noverlap=_FRAME // 2)
    mag = np.abs(z)
    z /= np.maximum(mag, 1e-3 * float(mag.mean()) + 1e-20)
    z[: int(_LOW_HZ * _FRAME / _RATE) + 1] = 0.0
    _, out = signal.istft(z, nperseg=_FRAME, noverlap=_FRAME // 2)
    return np.asarray(out[: len(low)], dtype=np.float32)


@pytest.mark.parametrize(("rate", "length"), [(16_000, 160_000), (16_000, 96_077), (4_000, 40_031),
                                              (48_000, 48_013)])  # fmt: skip
def test_whitening_matches_scipy(rate: int, length: int) -> None:
    rng = np.random.default_rng(length)
    x = (0.1 * rng.standard_normal(length)).astype(np.float32)
    x[: length // 7] = 0.0  # a silent stretch: frames at the floor of the whitening
    x[length // 2 :] *= np.sin(np.arange(length - length // 2) * 0.01).astype(np.float32)
    expected = scipy_whitened(x, rate)
    got = _whitened(x, rate)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    assert scale > 1.0
    assert float(np.max(np.abs(got - expected))) <= 1e-5 * scale


def test_the_waveform_search_does_not_import_scipy_signal() -> None:
    code = (
        "import sys, numpy as np\n"
        "from beatsync.engine.alignment.waveform import waveform_lines\n"
        "from beatsync.engine.media.decode import Audio\n"
        "rng = np.random.default_rng(1)\n"
        "a = Audio(rng.standard_normal(16000 * 20).astype(np.float32), 16000, 0.0)\n"
        "waveform_lines(a, a)\n"
        "assert 'scipy.signal' not in sys.modules, 'scipy.signal was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
