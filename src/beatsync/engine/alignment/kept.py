"""Pitch-kept tempo changes: the window machinery's frames and lags for a stretcher's grains.

A tempo change with the pitch kept is no resampled copy: the stretcher lays short grains of the
song, each at its own pitch and speed, along the new time line. The dance signal is then left as
it is and the reference's frames follow the mapping (``step`` = scale), and the frames are kept
short, so the grains in one frame, whose lags fan out by (scale − 1) × their distance from its
centre, stay within a few milliseconds of one another. The grains agree in lag, not in phase:
a window's lag is read from its frames' own peaks, not from their summed correlation.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .gcc import FrameTrack, GccResult, Windows, frame_peaks
from .spectra import FrameSpectra

__all__ = [
    "KEPT_AGREE",
    "KEPT_REACH",
    "KEPT_REACHES",
    "kept_agreement",
    "kept_frame",
    "kept_lags",
]

# A pitch-kept mapping's frames are at least this long (samples)...
_SHORTEST = 512
# ... and a frame agrees with its window's line when its own lag is within this (s); the
# reach (s) a frame's peak is sought within where the music is told from its absence.
KEPT_AGREE = 0.004
KEPT_REACH = 0.016
# The reach (s) of each fine pass, which sets its frames' length (four times it): the first
# from the coarse line, the second from the fitted one, the last two with frames of 32 ms.
# The grains in one frame fan out in lag by (1 − scale) × their distance from its centre,
# ±16 ms in a 64 ms frame at 0.5× or 1.5×: the loudest grain then pulls the frame's lag (an
# attack is heard in the grain that holds it, whichever side of the centre), the windows' lags
# wander with the music by a millisecond or two and tilt the line by tens of ppm. In 32 ms
# frames they wander by a tenth of that. Each pass keeps part of the previous line's error
# (a frame without a clear peak lands anywhere in the reach, around that line), hence two.
KEPT_REACHES = (0.032, 0.016, 0.008, 0.008)


def kept_frame(scale: float, rate: int, longest: int, search: float) -> int:
    """Frame length (samples, a power of two) for a pitch-kept mapping: four times the reach
    of ``search`` seconds (a frame's own peak is sought within a quarter frame, where the
    windows still overlap well), at least ``_SHORTEST`` and at most ``longest``.

    Short frames matter: the grains in one frame fan out in lag by (scale − 1) × their
    distance from its centre.
    """
    wanted = max(float(_SHORTEST), 4.0 * search * rate)
    length = min(float(longest), 2.0 ** np.ceil(np.log2(wanted)))
    return int(length)


def kept_lags(
    windows: Windows, *, workers: int = -1, spectra: FrameSpectra | None = None
) -> GccResult:
    """Window lags of pitch-kept audio from its frames' own peaks.

    A window's lag is the mean of its frames' lags within ``KEPT_AGREE`` of their median,
    weighted by their peaks' heights (the grains scatter a few milliseconds about the line,
    both ways; a frame with a faint peak says little); its prominence is how far the
    count of those frames stands above what frames of unrelated sound, their lags spread evenly
    over the search, would give (in standard deviations); its strength is their share.
    """
    # Only the frames the windows cover: a slope trial spreads a few windows over the clip.
    track, starts, width, rate = windows.track, windows.starts, windows.width, windows.rate
    search = windows.search
    needed = np.unique((starts[:, None] + np.arange(width)[None, :]).ravel())
    found, seen = frame_peaks(
        windows.x, windows.y, track, needed, rate=rate, search=search, workers=workers,
        spectra=spectra,
    )  # fmt: skip
    first, last = int(needed[0]), int(needed[-1]) + 1
    lag, height = np.zeros(last - first), np.zeros(last - first)
    lag[needed - first], height[needed - first] = found, seen
    reach = min(search, track.frame // 4 / rate)
    chance = min(1.0, KEPT_AGREE / reach)
    out_lag, strength, prominence = (np.zeros(len(starts)) for _ in range(3))
    for i, s in enumerate(starts):
        lags = lag[s - first : s - first + width]
        weights = height[s - first : s - first + width]
        heard = weights > 0
        n = int(heard.sum())
        if n < 4:
            continue
        centre = float(np.median(lags[heard]))
        near = heard & (np.abs(lags - centre) <= KEPT_AGREE)
        agree = int(near.sum())
        out_lag[i] = float(np.average(lags[near], weights=weights[near])) if agree else centre
        strength[i] = agree / n
        expected = n * chance
        prominence[i] = (agree - expected) / np.sqrt(max(expected * (1.0 - chance), 1.0))
    return GccResult(out_lag, strength, prominence)


def kept_agreement(
    x: NDArray[np.float32], y: NDArray[np.float32], track: FrameTrack, count: int, *, rate: int
) -> NDArray[np.float64]:
    """Per frame of a pitch-kept mapping, how well it matches, about 0 without music: its own
    peak's height when its lag is within ``KEPT_AGREE`` of the line, else minus that height
    times the odds of such a chance agreement (a stretcher's grains agree in lag, not in phase,
    so :func:`~.gcc.frame_agreement` does not apply)."""
    lag, height = frame_peaks(x, y, track, np.arange(count), rate=rate, search=KEPT_REACH)
    chance = min(0.5, KEPT_AGREE / min(KEPT_REACH, track.frame // 4 / rate))
    agreed = np.abs(lag) <= KEPT_AGREE
    return np.where(agreed, height, -height * chance / (1.0 - chance))
