"""A tempo change with the pitch kept, as a practice player makes it: grains overlap-added on the
time line.

The output is built from Hann frames (grains) of the input, N samples long, centred on output
samples ``c₀ < c₁ < …`` a random 30–50 % of a frame apart; grain ``m`` holds the input frame
centred on ``ratio·cₘ`` (to the nearest sample), and the sum is divided by the windows' sum. Every
grain sits on the line ``input = ratio × output``: within a grain, output sample ``cₘ + d``
carries input sample ``ratio·cₘ + d``, off the line by ``(1 − ratio)·d``, as far ahead on one
side of the centre as behind on the other. So the truth of a case made with it is exact (a
player's WSOLA moves each grain a few milliseconds off the line, to where its waveform continues
the previous one best, and the line then holds only on average, a millisecond or two off with
some songs). The spacing is random because grains laid on a regular grid repeat the input's
lags on a regular grid too, and a line at the wrong speed through them would find a grain in
every window. The price is some phasing where neighbouring grains overlap, which a test signal
can afford.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["overlap_add"]


def overlap_add(
    x: NDArray[np.floating], ratio: float, rate: int, *, frame: float = 0.04, seed: int = 0
) -> NDArray[np.float32]:
    """``x`` played ``ratio`` times as fast with its pitch kept.

    Parameters
    ----------
    x
        Mono signal.
    ratio
        Input seconds per output second (0.5 = half speed, twice as long).
    rate
        Sample rate, Hz.
    frame
        Grain length, seconds.
    seed
        Seeds the grains' spacing.

    Returns
    -------
    ndarray of float32, shape (ceil(len(x) / ratio),)
        Output sample ``n`` carries input sample ``ratio·n``: each grain is centred on the line
        to half a sample.
    """
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, not {ratio}")
    n = round(frame * rate) // 2 * 2
    window = np.hanning(n + 2)[1:-1]
    src = np.asarray(x, dtype=np.float64)
    length = int(np.ceil(len(src) / ratio))
    padded = np.concatenate([np.zeros(n), src, np.zeros(2 * n)])
    out = np.zeros(length + 2 * n)
    weight = np.zeros(length + 2 * n)
    rng = np.random.default_rng(seed)
    centre = 0.0
    while centre < length + n / 2:
        at = round(centre)  # output index of the grain's centre; out[k] is output sample k − n
        first = round(ratio * at - n / 2) + n
        out[at + n // 2 : at + n // 2 + n] += window * padded[first : first + n]
        weight[at + n // 2 : at + n // 2 + n] += window
        centre += rng.uniform(0.3, 0.5) * n
    lo = n
    kept = out[lo : lo + length] / np.maximum(weight[lo : lo + length], 1e-9)
    return kept.astype(np.float32)
