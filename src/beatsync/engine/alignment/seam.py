"""Where, between two pieces of an edit, the sound switches from one line to the other.

Two steps. Per 32 ms frame, the phase agreement of the recording with the reference under each
piece's mapping; the seam is where the running sum of their difference peaks (before it the
first line agrees better, after it the second). Then, within a quarter of a second of that,
the crossfade that explains the recording: per short frame (hop a sixteenth of it), the shares
``α``, ``β`` of the recording ``d ≈ α·a + β·b`` held by each line's prediction ``a``, ``b``
(least squares over the bins, each bin weighted by the inverse of the recording's power there,
so that a room's ringing in a few loud partials weighs no more than the direct sound in the
other bands), fitted by ``α = g_a·w``, ``β = g_b·(1 − w)`` where ``w`` is the earlier piece's
gain, a raised cosine of length ``L`` (0: a cut) centred on the seam, as each frame hears it.
Centre and length are searched on a grid with 128 ms frames, which tell a crossfade from a cut
in a reverberant room: on the recording, then again once the room's late reverberation of what
the loudspeaker played (the two lines crossfaded as found, through a room response estimated
over eight seconds) is taken out of it, for that reverberation blurs the shares. What looks like
a cut is then placed again with 16 ms frames, which see it sharply. The gains of each side are
the fit's own, so neither side's loudness moves the seam: it is the crossfade's centre, where
the two pieces play at equal gain.

A recording played with the pitch kept (:mod:`.kept`) agrees with the reference frame by frame
in lag, not in phase: its frames' agreement under each line places the seam, and the running
sum of how much more its 32 ms frames' magnitude spectra look like the reference's own frames
under the earlier line than under the later one places it again, within a quarter of a second.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from ..mapping import Mapping
from ..media.decode import Audio
from .fine import frame_track
from .signals import Signals
from .windows import window_kind

__all__ = ["find_seam"]

_FRAME_S = 0.032
_MARGIN_S = 1.5  # seconds searched beyond the last and first agreeing windows
_FINE_REACH_S = 0.25  # the fine search stays this close to the frame-level seam
_FINE_CONTEXT_S = 0.6  # recording analysed either side of the fine search's guess
_LONG_S, _SHORT_S = 0.128, 0.016  # frame lengths of the two fine steps
_OVERLAP = 16  # frames per frame length
_SMOOTH_S = 0.1  # the bin weights follow the recording's spectrum over this time
# Crossfade lengths tried (s), 0 a hard cut; up to this one, the seam is placed again sharply.
_FADES = (0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8)
_HARD_CUT_S = 0.045
_STEP_S = 0.001
_SHARP_REACH_S = 0.05
_SHARP_STEP_S = 0.00025
_SHARP_FADES = (0.0, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15)  # a short crossfade can pass for a cut
_ROOM_CONTEXT_S = 4.0  # recording either side of a crossfade whose late reverberation is removed
_ROOM_S = 0.5  # length of the room response estimated
_EARLY_S = 0.002  # the direct sound and what arrives this soon after it are kept


def find_seam(signals: Signals, before: Mapping, after: Mapping, lo: float, hi: float) -> float:
    """The dance time (s) at which the sound passes from ``before``'s line to ``after``'s.

    Parameters
    ----------
    signals
        Both recordings at the analysis rate.
    before, after
        The mappings of the earlier and the later piece.
    lo, hi
        Dance times (s) of the earlier piece's last agreeing window and the later piece's first:
        the seam lies near or between them.
    """
    dance = signals.dance
    rate = dance.rate
    a, b = min(lo, hi) - _MARGIN_S, max(lo, hi) + _MARGIN_S
    i0 = max(0, int((a - dance.start) * rate))
    i1 = min(dance.samples.shape[-1], int((b - dance.start) * rate))
    if i1 - i0 < 4 * int(_FRAME_S * rate):
        return (lo + hi) / 2
    part = Signals(Audio(dance.samples[i0:i1], rate, dance.start + i0 / rate), signals.bgm)
    centres, first = _agreement(part, before)
    _, second = _agreement(part, after)
    n = min(len(first), len(second))
    if n < 4:
        return (lo + hi) / 2
    diff = np.convolve(first[:n] - second[:n], np.ones(3) / 3, mode="same")
    running = np.concatenate([[0.0], np.cumsum(diff)])
    k = int(np.argmax(running))
    coarse = float(centres[0] if k == 0 else (centres[k - 1] + centres[min(k, n - 1)]) / 2)
    if not window_kind(before.pitch_kept).coherent:
        # A stretcher's grains keep the song's spectrum, not its phase: no crossfade of the
        # reference's waveform explains the recording, its short frames' spectra tell the
        # two places of the song apart.
        return _spectral_switch(signals, before, after, coarse)
    return _fine(signals, before, after, coarse)


def _spectral_switch(signals: Signals, before: Mapping, after: Mapping, guess: float) -> float:
    """Where, within ``_FINE_REACH_S`` of ``guess``, the recording's short frames stop looking
    like the reference's own frames under ``before`` and start looking like them under
    ``after`` (unit-norm magnitude spectra, their cosines; the running sum's peak)."""
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    size = round(_FRAME_S * rate)
    hop = max(1, round(_STEP_S * 2 * rate))
    first = round((guess - _FINE_CONTEXT_S - dance.start) * rate)
    count = round(2 * _FINE_CONTEXT_S * rate)
    if first < 0 or first + count > dance.samples.shape[-1]:
        return guess
    window = np.hanning(size)
    frames = sliding_window_view(dance.samples[first : first + count], size)[::hop]
    centres = dance.start + (first + np.arange(len(frames)) * hop + (size - 1) / 2) / rate
    mine = np.abs(np.fft.rfft(frames * window, axis=1))
    mine /= np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-12)
    like = []
    for m in (before, after):
        theirs = _frames_at(bgm, m.bgm_time_array(centres), window)
        theirs /= np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
        like.append(np.sum(mine * theirs, axis=1))
    running = np.cumsum(like[0] - like[1])
    inside = np.abs(centres - guess) <= _FINE_REACH_S
    if not inside.any():
        return guess
    k = int(np.argmax(np.where(inside, running, -np.inf)))
    return float(centres[k] + hop / rate / 2)


def _agreement(part: Signals, mapping: Mapping) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Frame centres (dance s) and each 32 ms frame's phase agreement under ``mapping``."""
    rate = part.dance.rate
    frame = round(_FRAME_S * rate)
    kind = window_kind(mapping.pitch_kept)
    # Frames that do not add up in phase place the seam alone: eight to a frame, not two.
    hop = frame // (2 if kind.coherent else 8)
    x, stretch, track = frame_track(part, mapping, frame=frame, hop=hop)
    count = track.frame_count(len(x))
    # Frames the mapping puts outside the reference agree with nothing.
    starts = track.y_starts(np.arange(count, dtype=np.int64))
    inside = (starts >= 0) & (starts + frame <= len(part.bgm.samples))
    agree = np.zeros(count)
    if inside.all():
        agree = kind.agreement(x, part.bgm.samples, track, count, rate=rate)
    elif inside.any():
        k = np.flatnonzero(inside)
        sub = type(track)(track.frame, track.hop, track.y_first + k[0] * track.hop * track.step,
                          track.step)  # fmt: skip
        x_sub = x[k[0] * track.hop :]
        agree[k[0] : k[-1] + 1] = kind.agreement(
            x_sub, part.bgm.samples, sub, int(k[-1] - k[0] + 1), rate=rate
        )
    centres = part.dance.start + (np.arange(count) * track.hop + frame / 2) / rate / stretch
    return centres, agree


def _fine(signals: Signals, before: Mapping, after: Mapping, coarse: float) -> float:
    """The switching point near ``coarse`` (s): with long frames, on the recording as heard and
    again without the room's late reverberation; what looks like a cut is placed again with
    short frames (where a crossfade may still be told from a cut)."""
    fit = _switch(signals, before, after, coarse, frame=_LONG_S, reach=_FINE_REACH_S, fades=_FADES)
    if fit is None:
        return coarse
    clearer = _without_late_reverb(signals, before, after, *fit)
    heard_fade = fit[1]
    centre, fade = _switch(clearer, before, after, fit[0], frame=_LONG_S, reach=_FINE_REACH_S,
                           fades=_FADES) or fit  # fmt: skip
    # Either reading may take a cut for a short crossfade.
    if min(fade, heard_fade) > _HARD_CUT_S:
        return centre
    sharp = _switch(clearer, before, after, centre, frame=_SHORT_S, reach=_SHARP_REACH_S,
                    fades=_SHARP_FADES, step=_SHARP_STEP_S)  # fmt: skip
    return centre if sharp is None else sharp[0]


def _switch(
    signals: Signals,
    before: Mapping,
    after: Mapping,
    guess: float,
    *,
    frame: float,
    reach: float,
    fades: tuple[float, ...],
    step: float = _STEP_S,
) -> tuple[float, float] | None:
    """The crossfade (centre s, length s; a cut is length 0) within ``reach`` of ``guess`` that
    best explains how much of each line every frame of ``frame`` seconds holds, or None when
    the neighbourhood leaves the recording."""
    dance, bgm = signals.dance, signals.bgm
    rate = dance.rate
    size = round(frame * rate)
    first = round((guess - _FINE_CONTEXT_S - dance.start) * rate)
    count = round(2 * _FINE_CONTEXT_S * rate)
    if first < 0 or first + count > dance.samples.shape[-1]:
        return None
    t = dance.start + (first + np.arange(count)) / rate
    hop = size // _OVERLAP
    window = np.hanning(size)

    def spectra(x: NDArray[np.float64]) -> NDArray[np.complex128]:
        return np.fft.rfft(sliding_window_view(x, size)[::hop] * window, axis=1)

    d = spectra(dance.samples[first : first + count].astype(np.float64))
    a, b = (spectra(_predicted(bgm, m.bgm_time_array(t))) for m in (before, after))
    centres = t[0] + (np.arange(d.shape[0]) * hop + (size - 1) / 2) / rate
    alpha, beta, info_a, info_b = _shares(d, a, b, smooth=max(1, round(_SMOOTH_S * rate / hop)))
    if not (info_a.any() and info_b.any()):
        return None
    best = (np.inf, guess, 0.0)
    candidates = guess + np.arange(-round(reach / step), round(reach / step) + 1) * step
    span = _FINE_CONTEXT_S + reach + frame
    for fade in fades:
        x, ramp = _framed_ramp(fade, window, rate, span)
        w = np.interp(centres[None, :] - candidates[:, None], x, ramp)
        v = 1.0 - w
        with np.errstate(invalid="ignore", divide="ignore"):
            ga = (w * (info_a * alpha)).sum(1) / (w * w * info_a).sum(1)
            gb = (v * (info_b * beta)).sum(1) / (v * v * info_b).sum(1)
        cost = (info_a * (alpha - ga[:, None] * w) ** 2).sum(1)
        cost += (info_b * (beta - gb[:, None] * v) ** 2).sum(1)
        cost[~np.isfinite(cost)] = np.inf
        k = int(np.argmin(cost))
        if cost[k] < best[0]:
            best = (float(cost[k]), float(candidates[k]), fade)
    return None if not np.isfinite(best[0]) else (best[1], best[2])


def _without_late_reverb(
    signals: Signals, before: Mapping, after: Mapping, centre: float, fade: float
) -> Signals:
    """``signals`` with the room's late reverberation of the music taken from the recording
    within ``_ROOM_CONTEXT_S`` of the seam: the room's response (up to ``_ROOM_S``) is
    estimated from what the loudspeaker played there (the two lines crossfaded at ``centre``
    over ``fade`` s) and what the phone heard, and all of it but the first ``_EARLY_S`` is
    applied to what was played and subtracted."""
    # SciPy's signal and filter modules are imported where they are used: they cost tens of
    # megabytes, and only edits need them.
    from scipy.signal import csd, fftconvolve, welch

    dance = signals.dance
    rate = dance.rate
    i0 = max(0, round((centre - _ROOM_CONTEXT_S - dance.start) * rate))
    i1 = min(dance.samples.shape[-1], round((centre + _ROOM_CONTEXT_S - dance.start) * rate))
    size = round(2 * _ROOM_S * rate)
    if i1 - i0 < 4 * size:
        return signals
    t = dance.start + np.arange(i0, i1) / rate
    x, ramp = _framed_ramp(fade, np.ones(1), rate, _ROOM_CONTEXT_S + 1.0)
    w = np.interp(t - centre, x, ramp)
    played = w * _predicted(signals.bgm, before.bgm_time_array(t))
    played += (1.0 - w) * _predicted(signals.bgm, after.bgm_time_array(t))
    heard = dance.samples[i0:i1].astype(np.float64)
    _, cross = csd(played, heard, nperseg=size)
    _, power = welch(played, nperseg=size)
    response = np.fft.irfft(cross / (power + 1e-6 * power.mean() + 1e-30), size)[: size // 2]
    response[: round(_EARLY_S * rate)] = 0.0
    samples = dance.samples.astype(np.float64)
    samples[i0:i1] -= fftconvolve(played, response)[: i1 - i0]
    return Signals(Audio(samples.astype(np.float32), rate, dance.start), signals.bgm)


def _predicted(bgm: Audio, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """The reference at ``times`` (s, increasing), linearly interpolated; silence outside it."""
    pos = (times - bgm.start) * bgm.rate
    lo = max(0, int(pos[0]) - 1)
    hi = min(bgm.samples.shape[-1], int(pos[-1]) + 3)
    if hi <= lo:
        return np.zeros(len(times))
    part = bgm.samples[lo:hi].astype(np.float64)
    return np.interp(pos - lo, np.arange(hi - lo, dtype=np.float64), part, left=0, right=0)


def _frames_at(
    bgm: Audio, times: NDArray[np.float64], window: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Magnitude spectra of the reference's frames of ``window``'s length centred on ``times``
    (s), unresampled; zeros outside it."""
    size = len(window)
    starts = np.rint((times - bgm.start) * bgm.rate - (size - 1) / 2).astype(np.int64)
    inside = (starts >= 0) & (starts + size <= bgm.samples.shape[-1])
    frames = np.zeros((len(times), size))
    if inside.any():
        view = sliding_window_view(bgm.samples, size)
        frames[inside] = view[starts[inside]]
    spectra: NDArray[np.float64] = np.abs(np.fft.rfft(frames * window, axis=1))
    return spectra


def _shares(
    d: NDArray[np.complex128], a: NDArray[np.complex128], b: NDArray[np.complex128], *, smooth: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per frame, how much of each prediction the recording holds (``d ≈ α·a + β·b``, least
    squares over the bins) and how well each share is known (the weighted energy of its
    prediction that the other prediction does not explain). Each bin is weighted by the inverse
    of the recording's power there, smoothed over ``smooth`` frames: every band counts, so a
    room's ringing in a few loud partials cannot pass for the direct sound."""
    from scipy.ndimage import uniform_filter1d

    power = uniform_filter1d(np.abs(d) ** 2, size=smooth, axis=0)
    weight = 1.0 / (power + 1e-3 * power.mean(axis=1, keepdims=True) + 1e-30)
    aa = (weight * np.abs(a) ** 2).sum(1)
    bb = (weight * np.abs(b) ** 2).sum(1)
    ab = (weight * (a * b.conj()).real).sum(1)
    da = (weight * (d * a.conj()).real).sum(1)
    db = (weight * (d * b.conj()).real).sum(1)
    det = aa * bb - ab**2
    ok = det > 1e-9 * (aa * bb + 1e-30)
    safe = np.where(ok, det, 1.0)
    safe_a, safe_b = np.where(ok, aa, 1.0), np.where(ok, bb, 1.0)
    alpha = np.where(ok, (bb * da - ab * db) / safe, 0.0)
    beta = np.where(ok, (aa * db - ab * da) / safe, 0.0)
    # Each share is known as well as its prediction tells from the other's: frames where the
    # two lines play alike (the same drum loop whole bars apart) say little of either.
    return alpha, beta, np.where(ok, det / safe_b, 0.0), np.where(ok, det / safe_a, 0.0)


def _framed_ramp(
    fade: float, window: NDArray[np.float64], rate: int, span: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The earlier piece's gain (raised cosine over ``fade`` s centred on 0, a step when 0) as
    a frame of ``window`` centred at time x hears it (energy-weighted): ``(x, gain)``."""
    n = len(window)
    u = np.arange(-round(span * rate) - n, round(span * rate) + n + 1) / rate
    gain = (
        (u < 0).astype(np.float64)
        if fade <= 0
        else np.cos(0.5 * np.pi * np.clip((u + fade / 2) / fade, 0.0, 1.0)) ** 2
    )
    from scipy.signal import fftconvolve

    kernel = window**2 / np.sum(window**2)
    return u[: len(u) - n + 1] + (n - 1) / (2 * rate), fftconvolve(gain, kernel[::-1], mode="valid")
