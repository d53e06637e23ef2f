"""The direct sound: a locked line moved from the loudest arrival onto the first one.

In a room the loudspeaker reaches the phone first directly, then off the floor, the walls, a
mirror, the ceiling; with dancers in the way or a hard surface near the loudspeaker a reflection
can be louder than the direct sound. The fine windows (:mod:`.fine`) lock onto each one's
strongest arrival, so the line follows a reflection, or tilts between two that different windows
chose. All arrivals keep one slope, so the windows' whole correlations are added up along
lines of slightly different slopes and the line along which they add up to the sharpest peak
is kept. Summed over the whole stretch where the windows agree, the correlation then shows
every strong arrival (:func:`.gcc.earliest_arrival`); the line is moved onto the earliest, and
fitted again through windows measured close to it where they hear it. The truth of a class
recording is its direct sound.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from ..mapping import Mapping
from .fine import MIN_RUN, Fit, frame_track, measure
from .gcc import Windows, earliest_arrival, window_curves
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
# Windows whose correlations are added up along lines (one a second up to a minute's span),
# and how finely their lags are read.
_CURVE_WINDOWS = 60
_UPSAMPLE = 4
# How far the slope may turn from the windows' fit (relative), and how far it may move the
# line's ends (s): a line tilted from one arrival to another 20 ms apart over 100 s is 200 ppm
# off, over a long recording less. The coarse scan tries at most _SLOPE_STEPS slopes.
_SLOPE_REACH = 200e-6
_END_REACH = 0.01
_SLOPE_STEPS = 120


def direct_sound(signals: Signals, fit: Fit, *, window: float, hop: float, max_windows: int) -> Fit:
    """``fit`` moved onto the direct sound.

    The line first takes the slope along which the windows' correlations add up sharpest
    (:meth:`_Curves.sharpest`), then moves onto the earliest strong arrival over the span where
    the windows agreed; each window is measured again close to it only, and the line fitted
    through them and polished on the summed correlation is kept if the windows' correlations
    add up at least as high along it (far from the loudspeaker no window hears the direct
    sound alone). The windows' evidence (and so the confidence
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
    curves = _Curves(signals, fit.mapping, span)
    mapping = curves.sharpest() or fit.mapping
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
        # Windows that do not hear the direct sound (far from the loudspeaker) follow whatever
        # lies within their reach: their line stands only if the direct sound adds up along it.
        moved = _onto_arrival(signals, refit[0], span, search=_NEAR)
        if curves.height(moved) >= curves.height(mapping):
            mapping = moved
    return replace(fit, mapping=mapping)


class _Curves:
    """The whitened correlations of two-second windows over the span, each within
    ``_ARRIVAL_SEARCH`` seconds of a line, to add up along other lines.

    In a room of near-equal reflections each window's strongest peak lands on any one of the
    arrivals, so a line fitted through the windows' peaks tilts from one to another; summed
    along the right line, every window adds to every arrival at once.
    """

    def __init__(self, signals: Signals, mapping: Mapping, span: tuple[float, float]) -> None:
        rate = signals.dance.rate
        frame, frame_hop = 4096, 1024
        width, every = round((2.0 * rate - frame) / frame_hop) + 1, round(rate / frame_hop)
        x, stretch, track = frame_track(signals, mapping, frame=frame, hop=frame_hop)
        length = (width - 1) * frame_hop + frame
        lo = (span[0] - signals.dance.start) * rate * stretch
        hi = (span[1] - signals.dance.start) * rate * stretch
        first = max(0, int(np.ceil(lo / frame_hop)))
        last = min(track.frame_count(len(x)), int((hi - length) // frame_hop) + 2) - width
        step = max(every, -(-(last - first) // _CURVE_WINDOWS))
        starts = np.arange(first, max(first, last), step, dtype=np.int64)
        inside = (track.y_starts(starts) >= 0) & (
            track.y_starts(starts + width - 1) + frame <= len(signals.bgm.samples)
        )
        starts = starts[inside]
        self.mapping = mapping
        self.rate = rate * _UPSAMPLE
        self.times = signals.dance.start + (starts * frame_hop + length / 2) / rate / stretch
        windows = Windows(x, signals.bgm.samples, track, starts, width, rate, _ARRIVAL_SEARCH)
        self.curves = window_curves(windows, upsample=_UPSAMPLE, workers=signals.fft_workers)
        self.reach = self.curves.shape[1] // 2
        # The curves padded and split for reading along lines, by lag step (see _along).
        self._split: dict[int, tuple[int, NDArray[np.float32]]] = {}

    def sharpest(self) -> Mapping | None:
        """The line, through the strongest arrival, along which the windows' correlations add
        up to the highest peak, its slope within ``_SLOPE_REACH`` of the mapping's; None with
        too few windows to tell a slope."""
        if len(self.times) < MIN_RUN or np.ptp(self.times) < 4.0:
            return None
        centre = float(np.mean(self.times))
        dt = self.times - centre
        half = float(np.abs(dt).max())
        # Coarse steps turn the line by four lag steps at its ends (more over a long span, where
        # fewer slopes are tried), fine ones by an eighth of that.
        reach = min(_SLOPE_REACH * self.mapping.scale, _END_REACH / half)
        coarse = max(4.0 / self.rate / half, 2.0 * reach / _SLOPE_STEPS)
        slopes = np.arange(-reach, reach + coarse / 2, coarse)
        rows = np.arange(len(dt))[:, None]
        lags = np.arange(-self.reach, self.reach + 1)
        best = (-np.inf, 0.0, 0)
        for slope in slopes:
            height, at = self._peak(rows, dt, slope, lags[::4])
            if height > best[0]:
                best = (height, float(slope), at)
        near = np.arange(-32 * 4, 32 * 4 + 1) + best[2]
        near = near[np.abs(near) <= self.reach]
        for slope in best[1] + coarse * np.arange(-8, 9) / 8:
            height, at = self._peak(rows, dt, float(slope), near)
            if height > best[0]:
                best = (height, float(slope), at)
        _, slope, at = best
        m = self.mapping
        return Mapping(m.offset - slope * centre + at / self.rate, m.scale + slope)

    def _peak(
        self, rows: NDArray[np.int64], dt: NDArray[np.float64], slope: float,
        lags: NDArray[np.int64],
    ) -> tuple[float, int]:  # fmt: skip
        shift = np.rint(slope * dt * self.rate).astype(np.int64)
        step = int(lags[1] - lags[0]) if len(lags) > 1 else 1
        # The coarse steps read a few hundred lines: as slices; the fine ones a few dozen.
        if step > 1 and bool(np.all(np.diff(lags) == step)):
            total = self._along(shift, int(lags[0]), len(lags), step).sum(axis=0)
        else:
            idx = np.clip(lags[None, :] + shift[:, None] + self.reach, 0, 2 * self.reach)
            total = self.curves[rows, idx].sum(axis=0)
        i = int(np.argmax(total))
        return float(total[i]), int(lags[i])

    def _along(
        self, shift: NDArray[np.int64], first: int, count: int, step: int
    ) -> NDArray[np.float32]:
        """``curves[row, clip(reach + first + step × m + shift[row])]`` for ``m < count``, row
        by row: the curves, padded with their end values (the clipping), are split by the
        index's remainder modulo ``step``, so each row's values lie side by side and are read
        as one slice."""
        low = self.reach + first + int(shift.min())
        high = self.reach + first + step * (count - 1) + int(shift.max())
        pad = max(0, -low, high - 2 * self.reach)
        held = self._split.get(step)
        if held is None or held[0] < pad:
            length = -(-(self.curves.shape[1] + 2 * pad) // step)
            ends = self.curves.shape[1] - 1
            split = np.empty((step, *self.curves.shape[:1], length), self.curves.dtype)
            for r in range(step):
                split[r] = self.curves[:, np.clip(np.arange(length) * step + r - pad, 0, ends)]
            held = (pad, split)
            self._split[step] = held
        pad, split = held
        at = pad + self.reach + first + shift
        windows = np.lib.stride_tricks.sliding_window_view(split, count, axis=2)
        gathered: NDArray[np.float32] = windows[at % step, np.arange(len(shift)), at // step]
        return gathered

    def height(self, mapping: Mapping) -> float:
        """The windows' correlations added up along ``mapping``."""
        lag = mapping.bgm_time_array(self.times) - self.mapping.bgm_time_array(self.times)
        at = lag * self.rate + self.reach
        below = np.clip(np.floor(at).astype(np.int64), 0, 2 * self.reach - 1)
        frac = np.clip(at - below, 0.0, 1.0)
        rows = np.arange(len(at))
        c = self.curves
        return float(((1 - frac) * c[rows, below] + frac * c[rows, below + 1]).sum())


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
