"""Time-stretchers compared for the pitch-kept render: placement, pitch, fidelity and speed.

Each stretcher plays 20 s of a real song (``etr/start1-jt`` from 10 s, 48 kHz stereo) at
0.5, 0.75, 0.9, 1.25 and 1.5 times its tempo with the pitch kept. Measured on the output:

* placement: 12 s of 2 ms noise bursts over a quiet tone, stretched alike; where each burst
  peaks in the output against where ``input = ratio × output`` puts it (the median: a latency
  left in; the worst: how far a transient strays; the renderer's promise is ≤ 5 ms);
* pitch: the shift of the long-term log-frequency spectrum against the input (cents);
* fidelity: the log-spectral distance (dB) of 40 ms frames of the output against the input's
  frames at the mapped times;
* speed: seconds of CPU per second of output (the machine is shared: compare within a run).

    python bench/stretchers.py

Prints a Markdown table; the committed results are in ``bench/RESULTS.md`` (section stretch).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy import signal as sps

from beatsync.engine.output.stretch import stretch as engine_stretch
from beatsync.testkit.grains import overlap_add
from beatsync.testkit.music import load_track

RATE = 48_000
RATIOS = (0.5, 0.75, 0.9, 1.25, 1.5)


def _pedalboard(**options: object) -> Callable[[np.ndarray, float], np.ndarray]:
    import pedalboard

    def run(x: np.ndarray, ratio: float) -> np.ndarray:
        out = pedalboard.time_stretch(x, float(RATE), stretch_factor=ratio, **options)
        return np.asarray(out)

    return run


def _audiotsm_wsola(x: np.ndarray, ratio: float) -> np.ndarray:
    from audiotsm import wsola as tsm_wsola
    from audiotsm.io.array import ArrayReader, ArrayWriter

    reader = ArrayReader(x)
    writer = ArrayWriter(channels=x.shape[0])
    tsm_wsola(channels=x.shape[0], speed=ratio).run(reader, writer)
    return np.asarray(writer.data)


def _kit_grains(x: np.ndarray, ratio: float) -> np.ndarray:
    return np.stack([overlap_add(c, ratio, RATE) for c in x])


STRETCHERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "pedalboard R2, short window (engine)": lambda x, r: engine_stretch(x.astype(np.float32), r),
    "pedalboard R2, long window": _pedalboard(high_quality=False),
    "pedalboard R3 (high_quality=True)": _pedalboard(),
    "audiotsm WSOLA": _audiotsm_wsola,
    "test kit grains (class audio)": _kit_grains,
}


def bursts(seconds: float = 12.0, every: float = 0.37) -> tuple[np.ndarray, np.ndarray]:
    """A quiet tone with 2 ms noise bursts: (stereo signal, burst times s)."""
    rng = np.random.default_rng(5)
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.tile(0.05 * np.sin(2 * np.pi * 330 * t), (2, 1)).astype(np.float32)
    times = np.arange(0.5, seconds - 0.5, every)
    n = int(0.002 * RATE)
    for c in times:
        i = round(c * RATE)
        x[:, i : i + n] += (0.8 * rng.standard_normal(n) * np.hanning(n)).astype(np.float32)
    return x, times


def placement(y: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Where each burst peaks in ``y`` minus where the time line puts it (ms)."""
    hp = np.abs(np.diff(y.mean(axis=0), prepend=0.0))
    level = np.convolve(hp, np.ones(RATE // 1000) / (RATE // 1000), mode="same")
    out = []
    for e in expected:
        lo, hi = int((e - 0.03) * RATE), int((e + 0.03) * RATE)
        if hi <= level.size:
            out.append((lo + int(np.argmax(level[lo:hi]))) / RATE - e)
    return np.asarray(out) * 1000


def pitch_cents(x: np.ndarray, y: np.ndarray) -> float:
    def spectrum(v: np.ndarray) -> np.ndarray:
        f, p = sps.welch(v, RATE, nperseg=8192)
        grid = 150 * 2 ** (np.arange(int(np.log2(5000 / 150) * 1200)) / 1200)
        level = np.interp(np.log(grid), np.log(f[1:]), np.log(p[1:] + 1e-20))
        return level - np.convolve(level, np.ones(400) / 400, mode="same")

    a, b = spectrum(x)[400:-400], spectrum(y)[400:-400]
    shifts = np.arange(-100, 101)
    scores = [np.dot(np.roll(b, -k), a) for k in shifts]
    return float(shifts[int(np.argmax(scores))])


def spectral_distance(x: np.ndarray, y: np.ndarray, ratio: float) -> float:
    n = int(0.04 * RATE)
    window = np.hanning(n)
    out = []
    for t in np.arange(0.5, y.size / RATE - 0.5, 0.1):
        i, j = int(t * RATE), int(ratio * t * RATE)
        if j + n > x.size:
            break
        a = np.abs(np.fft.rfft(x[j : j + n] * window)) ** 2 + 1e-10
        b = np.abs(np.fft.rfft(y[i : i + n] * window)) ** 2 + 1e-10
        out.append(np.sqrt(np.mean((10 * np.log10(a / b)) ** 2)))
    return float(np.median(out))


def main() -> None:
    song = load_track("etr/start1-jt")
    x = sps.resample_poly(song.samples[10 * song.rate : 30 * song.rate].T, RATE, song.rate)
    x = np.ascontiguousarray(x, dtype=np.float32)
    mono = x.mean(axis=0).astype(np.float64)
    clicks, times = bursts()
    print(
        "| stretcher | ratio | burst placement median (ms) | worst burst (ms) | "
        "pitch (cents) | spectral distance (dB) | CPU s per s of output |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, run in STRETCHERS.items():
        for ratio in RATIOS:
            began = time.process_time()
            y = run(x, ratio)
            cpu = time.process_time() - began
            ym = y.mean(axis=0).astype(np.float64)
            lags = placement(run(clicks, ratio), times / ratio)
            print(
                f"| {name} | {ratio} | {np.median(lags):+.2f} | {np.max(np.abs(lags)):.2f} | "
                f"{pitch_cents(mono, ym):+.0f} | {spectral_distance(mono, ym, ratio):.2f} | "
                f"{cpu / (ym.size / RATE):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
