"""A tempo change with the pitch kept, as a practice player makes it: WSOLA.

Waveform-similarity overlap-add (Verhelst and Roelands, 1993): the output is built from Hann
frames of the input laid every ``hop`` output samples; each frame is taken near the input
position the nominal time map asks for, shifted by at most ``tolerance`` samples to where it
continues the previous frame's waveform best. The engine renders with another stretcher (a phase
vocoder), so the tests never grade the renderer against itself.

Time map (by construction): output frame ``m`` is centred on output sample ``m·hop + N/2`` and
holds the input frame centred on ``ratio·(m·hop + N/2) + δₘ`` (N the frame length), where
``δₘ`` is searched within ``tolerance`` of minus the mean of the previous eight shifts. So each
grain sits within twice the tolerance of the line ``input = ratio × output`` and the grains'
running mean stays on it: output time ``t`` carries input time ``ratio·t`` without drift or
bias, the grains jittering by a few milliseconds about it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.typing import NDArray

__all__ = ["wsola"]

_MEAN_OF = 8  # frames whose mean shift from the line is held near zero


def wsola(
    x: NDArray[np.floating],
    ratio: float,
    rate: int,
    *,
    frame: float = 0.04,
    tolerance: float = 0.005,
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
        Frame length, seconds (the hop is half of it).
    tolerance
        Largest shift of a frame from its nominal position, seconds.

    Returns
    -------
    ndarray of float32, shape (ceil(len(x) / ratio),)
        Output sample ``n`` carries input sample ``ratio·n`` (within ``tolerance``).
    """
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, not {ratio}")
    n = round(frame * rate) // 2 * 2
    hop = n // 2
    tol = round(tolerance * rate)
    window = np.hanning(n + 1)[:n]  # periodic: frames a hop apart sum to one
    src = np.asarray(x, dtype=np.float64)
    length = int(np.ceil(len(src) / ratio))
    pad = n + tol + 2
    padded = np.concatenate([np.zeros(pad), src, np.zeros(pad + n)])
    out = np.zeros(length + n)
    size = scipy.fft.next_fast_len(n + 2 * tol, real=True)
    previous: int | None = None  # padded index of the last frame taken
    recent: list[int] = []  # the last frames' shifts from the line, samples
    for m in range(0, length // hop + 1):
        ideal = round(ratio * (m * hop + n / 2) - n / 2) + pad
        # Searched around the line less the recent frames' mean shift: a plain WSOLA leans
        # towards the previous frame's natural continuation, (1 − ratio) × hop off the line,
        # and its grains would sit a few milliseconds off on average.
        nominal = ideal - round(float(np.mean(recent))) if recent else ideal
        if previous is None:
            start = nominal
        else:
            # The natural continuation of the last frame, matched against the candidates.
            template = padded[previous + hop : previous + hop + n]
            region = padded[nominal - tol : nominal + tol + n]
            corr = scipy.fft.irfft(
                np.conj(scipy.fft.rfft(template, size)) * scipy.fft.rfft(region, size), size
            )[: 2 * tol + 1]
            start = nominal - tol + int(np.argmax(corr))
        out[m * hop : m * hop + n] += window * padded[start : start + n]
        previous = start
        recent = [*recent[-(_MEAN_OF - 1) :], start - ideal]
    return out[:length].astype(np.float32)
