"""The direct sound: a locked line moved from the loudest arrival onto the first one.

In a room the loudspeaker reaches the phone first directly, then off the floor, the walls, a
mirror, the ceiling; with dancers in the way or a hard surface near the loudspeaker a reflection
can be louder than the direct sound. The fine windows (:mod:`.fine`) lock onto each one's
strongest arrival, so the line follows a reflection, or tilts between two that different windows
chose. Summed over the whole stretch where the windows agree, the correlation shows every strong
arrival (:func:`.gcc.earliest_arrival`); the line is moved onto the earliest, and fitted again
through windows measured close to it. The truth of a class recording is its direct sound.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..mapping import Mapping
from .fine import MIN_RUN, Fit, WindowTrack, frame_track, measure
from .gcc import earliest_arrival
from .linefit import AGREE_PROMINENCE, fit_line
from .signals import Signals
from .windows import window_kind

__all__ = ["direct_sound"]

# How far before the arrival the windows locked onto the direct sound is looked for, seconds: a
# reflection's extra path in a hall is at most some 25 m.
_ARRIVAL_SEARCH = 0.08
# Once on the direct sound, windows look for it this close (s): nearer than the first reflection
# of a loudspeaker on a stand.
_NEAR = 0.0006
# Windows measured near the direct sound, and frames summed to find it: enough for a line.
_NEAR_WINDOWS = 80
_ARRIVAL_FRAMES = 400


def direct_sound(signals: Signals, fit: Fit, *, window: float, hop: float, max_windows: int) -> Fit:
    """``fit`` moved onto the direct sound.

    The line first settles on one arrival (:func:`_one_arrival`), then moves onto the earliest
    strong one over the span where the windows agreed; each window is measured again close to
    it only, so every window follows the direct sound, and the line is fitted through them and
    polished on the summed correlation once more. The windows' evidence (and so the confidence
    and any refusal) is kept as it was. ``window``, ``hop`` and ``max_windows``: the measuring
    windows' length and spacing in seconds and their largest number, as for
    :func:`.fine.refine`.
    """
    agreed = fit.track.times[fit.track.inlier]
    if fit.hits < MIN_RUN or not window_kind(fit.mapping.pitch_kept).coherent:
        # Not music (or too little to tell arrivals apart): nothing to move. A time-stretched
        # recording's grains scatter by milliseconds: its frames sum to no sharp arrival.
        return fit
    span = (float(agreed.min()) - window / 2, float(agreed.max()) + window / 2)
    mapping = _one_arrival(fit.track, fit.mapping)
    mapping = _onto_arrival(signals, mapping, span, search=_ARRIVAL_SEARCH)
    t, beta, strength, _ = measure(
        signals, mapping, window=window, hop=hop, max_windows=min(max_windows, _NEAR_WINDOWS),
        search=_NEAR,
    )  # fmt: skip
    # Only the span where the windows agreed on the music, each window weighted by how clearly
    # it hears the direct sound (the fit weighs by prominence, capped at 20).
    weight = AGREE_PROMINENCE + (20.0 - AGREE_PROMINENCE) * np.clip(strength, 0.0, 1.0)
    prom = np.where((t >= span[0]) & (t <= span[1]), weight, 0.0)
    refit = fit_line(t, beta, prom, mapping, gate=_NEAR)
    if refit is not None:
        mapping = _onto_arrival(signals, refit[0], span, search=_NEAR)
    return replace(fit, mapping=mapping)


def _one_arrival(track: WindowTrack, mapping: Mapping) -> Mapping:
    """The line through the agreeing windows that follows one arrival only.

    Windows that locked onto arrivals a millisecond or two apart all agree with the fit to
    2 ms, and a line through all of them tilts from one arrival to the other (tens of ppm).
    Narrowing the robust fit's reach step by step settles it on the arrival most windows follow.
    """
    use = track.inlier
    t = track.times[use]
    beta = track.lags[use] + t
    weight = track.strength[use]
    a, b = mapping.offset, mapping.scale
    for reach in (0.002, 0.001, 0.0005, 0.00025):
        for _ in range(3):
            u = (beta - (a + b * t)) / reach
            w = np.where(np.abs(u) < 1.0, (1.0 - u**2) ** 2, 0.0) * weight
            if np.count_nonzero(w) < MIN_RUN or np.ptp(t[w > 0]) < 1.0:
                return Mapping(a, b)
            centre = float(np.average(t, weights=w))
            design = np.stack([np.ones_like(t), t - centre], axis=1) * np.sqrt(w)[:, None]
            coef, *_ = np.linalg.lstsq(design, beta * np.sqrt(w), rcond=None)
            a, b = float(coef[0]) - float(coef[1]) * centre, float(coef[1])
    return Mapping(a, b)


def _onto_arrival(
    signals: Signals, mapping: Mapping, span: tuple[float, float], *, search: float
) -> Mapping:
    """``mapping`` moved by the lag of the earliest strong arrival over the dance ``span`` (s)
    within ``search`` seconds either way."""
    rate = signals.dance.rate
    frame = 4096
    # Half-overlapping frames: the sum over the span needs no finer grid.
    hop = frame // 2
    x, stretch, track = frame_track(signals, mapping, frame=frame, hop=hop)
    # Frames of the (stretched) dance signal wholly inside the span.
    lo = (span[0] - signals.dance.start) * rate * stretch
    hi = (span[1] - signals.dance.start) * rate * stretch
    first = max(0, int(np.ceil(lo / hop)))
    last = min(track.frame_count(len(x)), int((hi - frame) // hop) + 1)
    # A few hundred frames spread over the span are plenty, however long the span.
    step = max(1, -(-(last - first) // _ARRIVAL_FRAMES))
    arrival = earliest_arrival(
        x, signals.bgm.samples, track, np.arange(first, last, step, dtype=np.int64),
        rate=rate, search=search, workers=signals.fft_workers,
    )  # fmt: skip
    if arrival is None:
        return mapping
    return Mapping(mapping.offset + arrival.lag, mapping.scale)
