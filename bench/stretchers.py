"""Time-stretchers compared for the pitch-kept render: placement, pitch, fidelity and speed.

Each stretcher plays 20 s of a real song (``etr/start1-jt`` from 10 s, 48 kHz stereo) at
0.5, 0.75, 1.25 and 1.5 times its tempo with the pitch kept. Measured on the output:

* placement: every 10 ms, a 30 ms grain of the output is correlated against the input at speed
  1 around where output time t should carry input time ``ratio·t``; the median and the 95th
  percentile of the lags over 250 ms stretches (the renderer's promise is ≤ 5 ms at every point)
  and the median over all grains (a fixed latency left in);
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

from beatsync.engine.stretch import stretch as engine_stretch
from beatsync.testkit.music import load_track
from beatsync.testkit.wsola import wsola

RATE = 48_000
RATIOS = (0.5, 0.75, 1.25, 1.5)


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


def _kit_wsola(x: np.ndarray, ratio: float) -> np.ndarray:
    return np.stack([wsola(c, ratio, RATE) for c in x])


STRETCHERS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "pedalboard (engine's settings)": lambda x, r: engine_stretch(x.astype(np.float32), r),
    "pedalboard high_quality=False": _pedalboard(high_quality=False),
    "pedalboard transient_mode=smooth": _pedalboard(transient_mode="smooth"),
    "audiotsm WSOLA": _audiotsm_wsola,
    "test kit WSOLA (class audio)": _kit_wsola,
}


def placement(x: np.ndarray, y: np.ndarray, ratio: float) -> np.ndarray:
    """Per-grain lag (ms of input time) of output y against input x, NaN where no match."""
    g, s = int(0.03 * RATE), int(0.015 * RATE)
    lags = []
    for t in np.arange(0.5, y.size / RATE - 0.5, 0.01):
        i = int(t * RATE) - g // 2
        seg = y[i : i + g]
        c = round(ratio * t * RATE) - g // 2 - s
        if c < 0 or c + g + 2 * s > x.size or float(seg @ seg) < 1e-9:
            lags.append(np.nan)
            continue
        ref = x[c : c + g + 2 * s]
        corr = sps.correlate(ref, seg, mode="valid")
        energy = np.convolve(ref * ref, np.ones(g), mode="valid")
        score = corr / np.sqrt(np.maximum(energy, 1e-20) * float(seg @ seg))
        j = int(np.argmax(score))
        lags.append((j - s) / RATE * 1000 if score[j] >= 0.5 else np.nan)
    return np.asarray(lags)


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
    print(
        "| stretcher | ratio | grain lag median (ms) | worst 250 ms median (ms) | "
        "p95 abs grain (ms) | pitch (cents) | spectral distance (dB) | CPU s per s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, run in STRETCHERS.items():
        for ratio in RATIOS:
            began = time.process_time()
            y = run(x, ratio)
            cpu = time.process_time() - began
            ym = y.mean(axis=0).astype(np.float64)
            lags = placement(mono, ym, ratio)
            runs = [np.nanmedian(lags[k : k + 25]) for k in range(0, lags.size - 25, 25)
                    if np.isfinite(lags[k : k + 25]).sum() > 5]  # fmt: skip
            print(
                f"| {name} | {ratio} | {np.nanmedian(lags):+.2f} | {np.max(np.abs(runs)):.2f} | "
                f"{np.nanpercentile(np.abs(lags), 95):.2f} | {pitch_cents(mono, ym):+.0f} | "
                f"{spectral_distance(mono, ym, ratio):.2f} | {cpu / (ym.size / RATE):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
