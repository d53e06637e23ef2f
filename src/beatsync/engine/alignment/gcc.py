"""Fine lags by frame-averaged GCC-PHAT.

The dance signal is cut into frames on a fixed grid and each frame is paired with the reference
frame the predicted mapping puts against it (so a drifting clock does not smear anything). For a
window, the cross-spectra of its frames are summed before the phase transform: noise and talking
average out while the music's phase agrees, and the transform whitens the spectrum so the room's
reverberation spreads thin while each distinct arrival (the direct sound, a strong reflection)
keeps a sharp peak. A window's lag is its strongest peak, refined to a fraction of a sample by
fitting a parabola; :func:`earliest_arrival` sums a whole stretch and takes the earliest strong
peak instead, the direct sound; :func:`window_curves` keeps each window's whole correlation,
to be added up along other lines. Frames are transformed once and shared by every window that
covers them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from .spectra import FrameSpectra

__all__ = [
    "Arrival",
    "FrameTrack",
    "GccResult",
    "Windows",
    "earliest_arrival",
    "frame_agreement",
    "frame_peaks",
    "window_curves",
    "window_lags",
]

_BAND_HZ = (100.0, 7000.0)
_CHUNK = 128  # frames per transform: a few megabytes, kept in cache
_WINDOWS_PER_GROUP = 32
_AGREE_CHUNK = 1024  # frames per task of the frame agreement
# An earlier arrival counts when its peak reaches this share of the strongest one and stands
# this many robust deviations above the correlation: a reflection can outdo the direct sound by a
# few dB (a reflection 3 dB louder leaves the direct sound's whitened peak at 0.44 of its own),
# while noise and the correlation's ripples stay below a fifth of the strongest peak.
_ARRIVAL_SHARE = 0.35
_ARRIVAL_PROMINENCE = 8.0
# Far from the loudspeaker the room's reflections crowd the correlation and so widen its spread
# that the direct sound stands only 4–6 deviations above it; but nothing arrives before the
# direct sound: an arrival this many times as high as the correlation at every earlier lag
# (over at least _ONSET_FLOOR_S seconds of them) counts too. Before the direct sound the
# correlation's ripples make peaks at most 1.3 times as high as all that precedes them.
_ONSET_RATIO = 1.5
_ONSET_FLOOR_S = 0.005
# Peaks closer than this to a higher one are its side lobes (the band ends at 7 kHz), seconds.
_LOBE_S = 0.0004


@dataclass(frozen=True, slots=True)
class GccResult:
    """Per window: ``lag`` (seconds; the reference matches ``lag`` later than predicted),
    ``strength`` (peak height of the whitened correlation, 0–1) and ``prominence`` (peak height
    in robust standard deviations of the correlation over the searched lags)."""

    lag: NDArray[np.float64]
    strength: NDArray[np.float64]
    prominence: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FrameTrack:
    """Frames of ``x`` at ``k × hop`` paired with the frames of ``y`` whose centres sit at
    ``y_first + (k × hop + frame / 2) × step``, where the prediction puts the centres of x's.

    ``frame`` and ``hop`` are in samples of ``x``; ``step`` is samples of ``y`` per sample of ``x``
    along the prediction; ``y_first`` may be fractional (each frame is rounded to the sample,
    which costs less than 0.03 ms at 16 kHz and averages out over the frames).
    """

    frame: int
    hop: int
    y_first: float
    step: float

    def frame_count(self, x_len: int) -> int:
        return max(0, (x_len - self.frame) // self.hop + 1)

    def y_starts(self, k: NDArray[np.int64]) -> NDArray[np.int64]:
        # Frames are paired by their centres: pairing by their first samples would put the
        # centres (step − 1) × frame / 2 samples apart.
        centre = self.frame / 2
        starts: NDArray[np.int64] = np.rint(
            self.y_first + (k * self.hop + centre) * self.step - centre
        ).astype(np.int64)
        return starts


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: compared by identity
class Windows:
    """Windows of ``width`` frames on ``track``'s grid, the ``i``-th starting at frame
    ``starts[i]``, of the mono signals ``x`` and ``y`` at ``rate`` Hz (frames falling outside
    ``y`` count as silence); each window's correlation is searched within ``search`` seconds
    (at most ``frame / 2 / rate``)."""

    x: NDArray[np.float32]
    y: NDArray[np.float32]
    track: FrameTrack
    starts: NDArray[np.int64]
    width: int
    rate: int
    search: float


def window_lags(
    windows: Windows, *, workers: int = -1, spectra: FrameSpectra | None = None
) -> GccResult:
    """Residual lag of each of ``windows``: its strongest peak.

    ``workers``: threads per FFT, as for :func:`scipy.fft.rfft`. ``spectra``: ``x``'s frame
    spectra made so far, to look up and add to (a scan's trials share them).
    """
    n = len(windows.starts)
    if n == 0:
        empty = np.zeros(0)
        return GccResult(empty, empty, empty)
    frame, rate = windows.track.frame, windows.rate
    band = _band(frame, rate)
    reach = min(int(windows.search * rate), frame // 2 - 2)
    lags = np.arange(-reach, reach + 1)
    lag = np.zeros(n)
    strength = np.zeros(n)
    prominence = np.zeros(n)
    for sl, sums in _window_sums(windows, workers, spectra):
        lag[sl], strength[sl], prominence[sl] = _peaks(sums, band, lags, frame, rate, workers)
    return GccResult(lag, strength, prominence)


def window_curves(windows: Windows, *, upsample: int = 4, workers: int = -1) -> NDArray[np.float32]:
    """Each window's whole whitened correlation within the search, shape (windows, lags): lag
    ``j`` is ``(j − reach) / (upsample × rate)`` seconds, ``reach`` the middle index.
    ``upsample`` interpolates the lags (by zero-padding the spectrum), so that correlations can
    be shifted by fractions of a sample and added up; ``workers`` as for :func:`window_lags`."""
    frame = windows.track.frame
    band = _band(frame, windows.rate)
    size = frame * upsample
    reach = min(int(windows.search * windows.rate), frame // 2 - 2) * upsample
    lags = np.arange(-reach, reach + 1) % size
    out = np.zeros((len(windows.starts), len(lags)), dtype=np.float32)
    for sl, sums in _window_sums(windows, workers):
        sums[:, ~band] = 0.0
        mag = np.abs(sums)
        sums /= np.maximum(mag, 1e-6 * mag.max(axis=1, keepdims=True) + 1e-20)
        corr = scipy.fft.irfft(sums, size, axis=1, workers=workers) * size
        out[sl] = corr[:, lags] / max(int(band.sum()), 1)
    return out


def _window_sums(
    windows: Windows, workers: int, spectra: FrameSpectra | None = None
) -> Iterator[tuple[slice, NDArray[np.complex64]]]:
    """The summed cross-spectra of ``windows``, a group at a time: (the group's slice of
    ``starts``, its sums); ``workers`` and ``spectra`` as for :func:`window_lags`."""
    x, y, track, starts, width = windows.x, windows.y, windows.track, windows.starts, windows.width
    # Windows go in groups so that only one group's frame spectra are held at a time.
    for first in range(0, len(starts), _WINDOWS_PER_GROUP):
        group = starts[first : first + _WINDOWS_PER_GROUP]
        frames = (group[:, None] + np.arange(width)[None, :]).ravel()
        step = int(group[1] - group[0]) if len(group) > 1 else width
        if (
            len(group) > 1
            and step < width
            and width % step == 0
            and bool(np.all(np.diff(group) == step))
        ):
            # Evenly overlapping windows: sum frames in blocks of one hop, then add the blocks.
            cross = _cross_spectra(
                x, y, track, np.arange(group[0], group[-1] + width), workers=workers,
                spectra=spectra,
            )  # fmt: skip
            blocks = cross.reshape(-1, step, cross.shape[1]).sum(axis=1)
            per = width // step
            sums = blocks[: len(group)].copy()
            for j in range(1, per):
                sums += blocks[j : j + len(group)]
        elif len(group) < 2 or bool(np.all(np.diff(group) >= width)):
            # Windows that do not overlap: each frame belongs to one window.
            cross = _cross_spectra(x, y, track, frames, workers=workers, spectra=spectra)
            sums = cross.reshape(len(group), width, -1).sum(axis=1)
        else:
            needed = np.unique(frames)
            cross = _cross_spectra(x, y, track, needed, workers=workers, spectra=spectra)
            total = np.concatenate(
                [np.zeros((1, cross.shape[1]), cross.dtype), np.cumsum(cross, 0)]
            )
            at = np.searchsorted(needed, group)
            sums = total[at + width] - total[at]
        yield slice(first, first + len(group)), sums


def _peaks(
    sums: NDArray[np.complex64],
    band: NDArray[np.bool_],
    lags: NDArray[np.int64],
    frame: int,
    rate: int,
    workers: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Whiten each window's summed cross-spectrum and find its correlation peak."""
    sums[:, ~band] = 0.0
    mag = np.abs(sums)
    # Silent windows must give a flat correlation, not a division by zero.
    sums /= np.maximum(mag, 1e-6 * mag.max(axis=1, keepdims=True) + 1e-20)
    corr = scipy.fft.irfft(sums, frame, axis=1, workers=workers)
    corr *= frame / max(int(band.sum()), 1)
    corr = corr[:, lags % frame]
    rows = np.arange(len(corr))
    i = np.argmax(corr, axis=1)
    peak = corr[rows, i]
    left = corr[rows, np.maximum(i - 1, 0)]
    right = corr[rows, np.minimum(i + 1, len(lags) - 1)]
    denom = left - 2 * peak + right
    interior = (i > 0) & (i < len(lags) - 1) & (denom < 0)
    shift = np.where(interior, 0.5 * (left - right) / np.where(interior, denom, -1.0), 0.0)
    median = np.median(corr, axis=1)
    spread = 1.4826 * np.median(np.abs(corr - median[:, None]), axis=1) + 1e-12
    return (
        (lags[i] + shift) / rate,
        np.clip(peak / 2.0, 0.0, 1.0),
        (peak - median) / spread,
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """The earliest arrival of the reference's sound in a stretch of frames: ``lag`` (seconds,
    as :class:`GccResult`'s), its ``share`` of the strongest peak's height (0–1) and the
    ``strongest`` peak's lag (seconds); ``prominence`` as :class:`GccResult`'s."""

    lag: float
    share: float
    strongest: float
    prominence: float


def earliest_arrival(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    frames: NDArray[np.int64],
    *,
    rate: int,
    search: float,
    workers: int = -1,
) -> Arrival | None:
    """The direct sound: the earliest strong peak of the GCC-PHAT of ``frames`` summed.

    In a room the loudspeaker reaches the phone first directly, then by the floor, the walls,
    a mirror; a reflection can be louder than the direct sound, so the strongest peak may be a
    reflection. Summed over the whole stretch the correlation is steady enough to see every
    strong arrival; the earliest one whose peak reaches a third of the strongest one's height
    and stands clear of the noise, or of everything that comes before it, is the direct sound.
    The reference matches the dance signal's earlier arrivals at later lags, so the earliest
    arrival is the peak with the largest lag. Returns None when the frames hold nothing to
    correlate. Parameters as for :class:`Windows` and :func:`window_lags`.
    """
    frame = track.frame
    if len(frames) == 0:
        return None
    cross = np.zeros(frame // 2 + 1, dtype=np.complex128)
    for a in range(0, len(frames), _AGREE_CHUNK):
        k = frames[a : a + _AGREE_CHUNK]
        cross += _cross_spectra(x, y, track, k, workers=workers).sum(axis=0)
    band = _band(frame, rate)
    cross[~band] = 0.0
    mag = np.abs(cross)
    if not mag.any():
        return None
    cross /= np.maximum(mag, 1e-6 * mag.max())
    reach = min(int(search * rate), frame // 2 - 2)
    lags = np.arange(-reach, reach + 1)
    corr = scipy.fft.irfft(cross, frame)[lags % frame] * frame / max(int(band.sum()), 1)
    median = float(np.median(corr))
    spread = 1.4826 * float(np.median(np.abs(corr - median))) + 1e-12
    lobe = max(1, round(_LOBE_S * rate))
    # Peaks that are the highest within a side lobe's reach either way.
    padded = np.pad(corr, lobe, constant_values=-np.inf)
    local = np.lib.stride_tricks.sliding_window_view(padded, 2 * lobe + 1).max(axis=1)
    peaks = np.flatnonzero((corr >= local) & (corr > median))
    if len(peaks) == 0:
        return None
    top = int(peaks[np.argmax(corr[peaks])])
    # What comes before an arrival is its onset's floor: the highest the correlation reaches at
    # every earlier lag (larger lags, past the arrival's side lobes).
    before = np.maximum.accumulate(corr[::-1])[::-1]
    after_lobe = peaks + lobe + 1
    onset = np.full(len(peaks), np.inf)
    room = len(corr) - after_lobe >= round(_ONSET_FLOOR_S * rate)
    onset[room] = before[after_lobe[room]]
    clear = ((corr[peaks] - median) / spread >= _ARRIVAL_PROMINENCE) | (
        corr[peaks] >= _ONSET_RATIO * np.maximum(onset, 0.0) + 1e-12
    )
    strong = peaks[(corr[peaks] >= _ARRIVAL_SHARE * corr[top]) & clear]
    i = int(strong.max()) if len(strong) else top
    shift = 0.0
    if 0 < i < len(corr) - 1:
        left, peak, right = corr[i - 1], corr[i], corr[i + 1]
        denom = left - 2 * peak + right
        if denom < 0:
            shift = 0.5 * (left - right) / denom
    return Arrival(
        lag=float((lags[i] + shift) / rate),
        share=float(corr[i] / corr[top]),
        strongest=float(lags[top] / rate),
        prominence=float((corr[i] - median) / spread),
    )


def frame_peaks(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    k: NDArray[np.int64],
    *,
    rate: int,
    search: float,
    workers: int = -1,
    spectra: FrameSpectra | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each frame's own GCC-PHAT peak within ``search`` seconds (at most a quarter frame): its
    lag (seconds, as for :func:`window_lags`) and height (0–1; 0 for frames outside either
    signal).

    For audio time-stretched with its pitch kept, where every short grain sits a few
    milliseconds off the line: the frames' lags are taken one by one, not summed.
    """
    frame = track.frame
    band = _band(frame, rate)
    reach = min(int(search * rate), frame // 4)
    lags = np.arange(-reach, reach + 1)
    # Unrelated frames correlate more strongly where their windows overlap more: dividing by
    # that (the noise's spread at each lag) spreads their peaks evenly over the search.
    w2 = np.hanning(frame) ** 2
    overlap = np.correlate(w2, w2, mode="full")[frame - 1 + lags]
    spread = np.sqrt(overlap / overlap[reach])
    lag = np.zeros(len(k))
    height = np.zeros(len(k))
    for first in range(0, len(k), _CHUNK * 8):
        part = k[first : first + _CHUNK * 8]
        cross = _cross_spectra(x, y, track, part, workers=workers, spectra=spectra)
        cross[:, ~band] = 0.0
        mag = np.abs(cross)
        top = mag.max(axis=1, keepdims=True)
        cross /= np.maximum(mag, 1e-6 * top + 1e-20, out=mag)
        corr = _wrapped(scipy.fft.irfft(cross, frame, axis=1, workers=workers), reach)
        corr *= frame / max(int(band.sum()), 1)
        fair = corr / spread
        i = np.argmax(fair, axis=1)
        rows = np.arange(len(part))
        left = corr[rows, np.maximum(i - 1, 0)]
        peak = corr[rows, i]
        right = corr[rows, np.minimum(i + 1, len(lags) - 1)]
        denom = left - 2 * peak + right
        inner = (i > 0) & (i < len(lags) - 1) & (denom < 0)
        shift = np.where(inner, 0.5 * (left - right) / np.where(inner, denom, -1.0), 0.0)
        lag[first : first + len(part)] = (lags[i] + shift) / rate
        height[first : first + len(part)] = np.where(top[:, 0] > 0, np.clip(peak / 2, 0, 1), 0)
    return lag, height


def _wrapped(corr: NDArray[np.float32], reach: int) -> NDArray[np.float32]:
    """``corr[:, lags % frame]`` for ``lags`` from ``−reach`` to ``reach``: the last ``reach``
    columns, then the first ``reach + 1``."""
    if reach == 0:
        return corr[:, :1].copy()
    return np.concatenate([corr[:, -reach:], corr[:, : reach + 1]], axis=1)


def frame_agreement(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    count: int,
    *,
    rate: int,
    pool: Executor | None = None,
) -> NDArray[np.float64]:
    """How much each frame's cross-spectrum agrees in phase with the recording's average one.

    At the right alignment, every frame where the music is heard shows the room's transfer
    phase; frames of silence, talking or noise show random phase. Returns one value per frame in
    [-1, 1] (about 0 without music); frames where the reference is silent or out of reach are 0.
    ``pool``: threads that take the frames a chunk each.
    """
    if count <= 0:
        return np.zeros(0)
    band = _band(track.frame, rate)
    workers = 1 if pool is not None else -1
    chunks = [np.arange(a, min(a + _AGREE_CHUNK, count)) for a in range(0, count, _AGREE_CHUNK)]

    def spectra(k: NDArray[np.int64]) -> NDArray[np.complex64]:
        return _cross_spectra(x, y, track, k, workers=workers)[:, band]

    cross = list(pool.map(spectra, chunks) if pool is not None else map(spectra, chunks))
    total = np.sum([c.sum(axis=0) for c in cross], axis=0)
    phase = np.conj(total) / np.maximum(np.abs(total), 1e-30)

    def agreement(c: NDArray[np.complex64]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return (c * phase).real.sum(axis=1), np.abs(c).sum(axis=1)

    parts = list(pool.map(agreement, cross) if pool is not None else map(agreement, cross))
    dots = np.concatenate([d for d, _ in parts])
    mag = np.concatenate([m for _, m in parts])
    agree = dots / np.maximum(mag, 1e-30)
    audible = mag > 1e-3 * float(np.median(mag[mag > 0])) if (mag > 0).any() else mag > 0
    return np.where(audible, agree, 0.0).astype(np.float64)


def _band(frame: int, rate: int) -> NDArray[np.bool_]:
    """The bins used: the music's body, below the speaker's rumble and above the phone's cut."""
    freqs = np.fft.rfftfreq(frame, 1.0 / rate)
    band: NDArray[np.bool_] = (freqs >= _BAND_HZ[0]) & (freqs <= min(_BAND_HZ[1], rate * 0.45))
    return band


def _cross_spectra(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    track: FrameTrack,
    k: NDArray[np.int64],
    *,
    workers: int = -1,
    spectra: FrameSpectra | None = None,
) -> NDArray[np.complex64]:
    """X*·Y of the frames ``k``; frames reaching outside either signal are zero. ``workers``
    as for :func:`scipy.fft.rfft`; ``spectra``: x's frame spectra to look up and add to."""
    frame = track.frame
    window = np.hanning(frame).astype(np.float32)
    out = np.zeros((len(k), frame // 2 + 1), dtype=np.complex64)
    x_at = k * track.hop
    y_at = track.y_starts(k)
    ok = (x_at >= 0) & (x_at + frame <= len(x)) & (y_at >= 0) & (y_at + frame <= len(y))
    xv = np.lib.stride_tricks.sliding_window_view(x, frame) if len(x) >= frame else None
    yv = np.lib.stride_tricks.sliding_window_view(y, frame) if len(y) >= frame else None
    if xv is None or yv is None:
        return out
    rows = np.flatnonzero(ok)
    for first in range(0, len(rows), _CHUNK):
        r = rows[first : first + _CHUNK]
        if spectra is None:
            xs = scipy.fft.rfft(_windowed(xv, x_at[r], window), axis=1, workers=workers)
        else:
            xs = spectra.transform(xv, x_at[r], window, workers)
        ys = scipy.fft.rfft(_windowed(yv, y_at[r], window), axis=1, workers=workers)
        # In place: the product of a chunk is a megabyte, made once.
        np.conjugate(xs, out=xs)
        xs *= ys
        if int(r[-1]) - int(r[0]) == len(r) - 1:
            out[int(r[0]) : int(r[-1]) + 1] = xs
        else:
            out[r] = xs
    return out


def _windowed(
    view: NDArray[np.float32], at: NDArray[np.int64], window: NDArray[np.float32]
) -> NDArray[np.float32]:
    """The frames of ``view`` (a ``sliding_window_view``) starting at ``at``, times ``window``."""
    frames = view[at]
    frames *= window
    return frames
