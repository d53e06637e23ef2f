"""Check output files against a built case's truth.

:func:`sync_errors` measures the audio-to-picture error of an output file by itself: the frame
code says which dance frame is on screen at output time τ, the truth says which reference time
should sound with it, and a cross-correlation of the output's own audio against the clean
reference says which reference time does sound. For an edit, :func:`piece_sync` measures it in
every piece (by the piece's own truth, away from the seams) and :func:`seam_errors` finds where
the output's sound switches from one piece to the next. For a pitch-kept case the output's
audio is the reference time-stretched, its waveform no copy of the reference's (a phase
vocoder redraws the phases): the output's onset curve over 2 s is cross-correlated with the
reference's read along the truth's time map (attacks land where the time map puts them,
whatever the stretcher). On the kit's own pitch-kept audio, whose grains sit on the truth, it
reads −0.3 to 0 ms, and −1.5 ms at 0.5× (each attack comes out in two grains there, and the
earlier is heard first).
:func:`video_packets_copied` checks that the picture was stream-copied, byte for byte.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from .cases import BuiltCase
from .framecode import frame_luma, read_frame_code
from .music import cubic_at

__all__ = [
    "PacketCopy",
    "SyncSample",
    "decode_mono",
    "piece_sync",
    "read_frame_indices",
    "seam_errors",
    "sync_errors",
    "sync_samples",
    "video_packets_copied",
]

logger = logging.getLogger(__name__)

# Below this normalised correlation peak the output's sound is not the reference at that point.
_MIN_PEAK = 0.5
# ... and for a pitch-kept output, below this peak of the onset curves' correlation.
_MIN_ONSET_PEAK = 0.3


def read_frame_indices(path: Path | str) -> list[tuple[float, int | None]]:
    """(presentation time s, frame index or None if unreadable) of every frame, in display order."""
    out: list[tuple[float, int | None]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            out.append((float(frame.time or 0.0), read_frame_code(frame_luma(frame))))
    out.sort(key=lambda item: item[0])
    return out


def decode_mono(path: Path | str) -> tuple[NDArray[np.float64], int, float]:
    """The first audio stream as (mono samples, rate Hz, presentation time of sample 0 in s).

    Samples are laid end to end from the first decoded frame's time, as a player does.
    """
    chunks: list[NDArray[np.float64]] = []
    start: float | None = None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.time or 0.0)
            data = frame.to_ndarray().astype(np.float64)
            if frame.format.is_planar:
                chunks.append(data.mean(axis=0))
            else:
                chunks.append(data.reshape(-1, frame.layout.nb_channels).mean(axis=1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0)
    return samples, rate, start or 0.0


@dataclass(frozen=True, slots=True)
class SyncSample:
    """One measurement at output time ``time`` (s).

    ``frame`` is the dance frame index on screen (None = unreadable code); ``expected`` the
    reference time that should sound, ``measured`` the one that does (s); ``error_ms`` =
    (expected − measured) / b, positive when the audio is late, NaN when not measurable;
    ``peak`` the normalised correlation peak (0–1).
    """

    time: float
    frame: int | None
    expected: float
    measured: float
    error_ms: float
    peak: float


def sync_samples(
    output: Path | str,
    case: BuiltCase,
    *,
    at: Sequence[float] | None = None,
    times: Sequence[float] | None = None,
    window: float = 1.0,
    search: float = 0.3,
) -> list[SyncSample]:
    """Measure the audio-to-picture error of ``output`` at several output times.

    Parameters
    ----------
    output
        A file made from ``case.dance`` and ``case.bgm`` (any container with video and audio).
    case
        The built case whose truth defines what should sound with each dance frame.
    at
        Fractions (0–1) of the output's picture span; default 0.1, 0.2, …, 0.9.
    times
        Output times in seconds, instead of ``at``.
    window
        Seconds of output audio correlated per point.
    search
        Largest error searched either way, seconds.
    """
    if case.truth.mismatch:
        raise ValueError("a mismatched case has no sync to measure")
    frames = read_frame_indices(output)
    if not frames:
        raise ValueError(f"{output}: no video frames")
    pts = [p for p, _ in frames]
    if times is None:
        fractions = at if at is not None else [i / 10 for i in range(1, 10)]
        last = pts[-1] + (pts[-1] - pts[0]) / max(1, len(pts) - 1)
        times = [pts[0] + f * (last - pts[0]) for f in fractions]
    out_audio, out_rate, out_start = decode_mono(output)
    ref_audio, ref_rate, ref_start = decode_mono(case.bgm)
    truth = case.truth
    b, fps = truth.scale, truth.fps

    results = []
    for tau in times:
        k = bisect.bisect_right(pts, tau + 1e-9) - 1
        index = frames[k][1] if k >= 0 else None
        if index is None:
            results.append(SyncSample(tau, None, math.nan, math.nan, math.nan, 0.0))
            continue
        expected = truth.bgm_time(index / fps + (tau - pts[k]))
        if case.truth.pitch_kept:
            lag, peak = _onset_lag(
                out_audio, out_rate, out_start, ref_audio, ref_rate, ref_start,
                tau=tau, beta=expected, scale=b, window=max(window, _ENV_WINDOW_S),
                search=min(search, 0.03),
            )  # fmt: skip
        else:
            lag, peak = _lag(
                out_audio, out_rate, out_start, ref_audio, ref_rate, ref_start,
                tau=tau, beta=expected, scale=b, window=window, search=search,
            )  # fmt: skip
        measured = expected + b * lag
        floor = _MIN_ONSET_PEAK if case.truth.pitch_kept else _MIN_PEAK
        error = -lag * 1000.0 if peak >= floor else math.nan
        results.append(
            SyncSample(float(tau), index, float(expected), float(measured), float(error), peak)
        )
    return results


def sync_errors(
    output: Path | str,
    case: BuiltCase,
    *,
    at: Sequence[float] | None = None,
    times: Sequence[float] | None = None,
) -> list[float]:
    """Audio-to-picture errors of ``output`` in ms (positive = audio late; NaN = not measurable:
    unreadable frame code, or the output's sound there is not the reference). See
    :func:`sync_samples` for the parameters."""
    return [s.error_ms for s in sync_samples(output, case, at=at, times=times)]


# Sync points keep this far from a seam (s) beyond half the edit's crossfade: the checker's
# one-second window then hears one piece only.
_SEAM_CLEARANCE = 0.6


def piece_sync(
    output: Path | str,
    case: BuiltCase,
    *,
    shift: float,
    cut: tuple[float, float],
    points: int = 5,
) -> list[list[float]]:
    """Audio-to-picture errors (ms, as :func:`sync_errors`) in each piece of ``case``'s edit.

    Per truth piece, ``points`` dance times spread over its part of ``cut`` (dance s), kept
    ``_SEAM_CLEARANCE`` plus half the crossfade away from its seams and that far inside the
    cut; ``shift`` turns a dance time into output time (``first_frame_time − video_start`` of
    the render). A piece with no room left gets an empty list.
    """
    truth = case.truth
    clear = _SEAM_CLEARANCE + truth.crossfade / 2
    times: list[list[float]] = []
    for start, end, _ in truth.pieces or ((truth.music_start, truth.music_end, truth.offset),):
        lo, hi = max(start, cut[0]) + clear, min(end, cut[1]) - clear
        if hi <= lo:
            times.append([])
            continue
        times.append([lo + (hi - lo) * i / max(points - 1, 1) for i in range(points)])
    flat = [t + shift for group in times for t in group]
    errors = sync_errors(output, case, times=flat) if flat else []
    out, at = [], 0
    for group in times:
        out.append(errors[at : at + len(group)])
        at += len(group)
    return out


def seam_errors(output: Path | str, case: BuiltCase, *, reach: float = 0.3) -> list[float]:
    """Where the output's sound switches from each piece to the next, against the truth (ms).

    Around each truth seam (within ``reach`` seconds), the output's audio is compared with the
    clean reference under the two pieces' truth mappings, through the frame code: the switch is
    the change point where the later piece starts to explain the sound better than the earlier
    (the centre of a crossfade). Only what differs between the two pieces' sounds tells them
    apart: where both play the same (a song built from loops plays the same drums, even the
    same bars, in both places), the output sounds the same whichever side it plays, and the
    switch may lie anywhere in that stretch. The switch is the best change point; the change
    points the output cannot tell from it are those whose fit differs by less than
    :data:`_SEAM_Z` standard deviations of the output's own noise about the pieces' sound, and
    when they spread over more than :data:`SEAM_UNSURE_MS`, the seam is unmeasurable here and
    its error is NaN (as when the seam is outside the output), never the middle of a stretch
    where both pieces sound alike. Positive when the output switches late.
    """
    truth = case.truth
    frames = [(p, i) for p, i in read_frame_indices(output) if i is not None]
    out_audio, out_rate, out_start = decode_mono(output)
    ref_audio, ref_rate, ref_start = decode_mono(case.bgm)
    errors = []
    for k, seam in enumerate(truth.seams):
        # Output time of the seam, from the frame on screen there.
        near = min(frames, key=lambda f: abs(f[1] / truth.fps - seam), default=None)
        if near is None or abs(near[1] / truth.fps - seam) > 1.0:
            errors.append(math.nan)
            continue
        to_dance = near[1] / truth.fps - near[0]  # dance time = output time + to_dance
        tau0 = seam - to_dance
        i0 = math.ceil((tau0 - reach - out_start) * out_rate)
        n = int(2 * reach * out_rate)
        if i0 < 0 or i0 + n > out_audio.size:
            errors.append(math.nan)
            continue
        tau = out_start + (i0 + np.arange(n)) / out_rate
        dance = tau + to_dance
        before, after = truth.pieces[k][2], truth.pieces[k + 1][2]
        seg = out_audio[i0 : i0 + n]
        if truth.pitch_kept:
            # A stretcher keeps the song's spectrum, not its waveform: short frames' spectra.
            at = np.arange(_KEPT_FRAME // 2, n - _KEPT_FRAME // 2)
            mine = _spectra(seg, at.astype(np.float64))
            pa, pb = (
                _spectra(ref_audio, np.rint((p + truth.scale * dance[at] - ref_start) * ref_rate))
                for p in (before, after)
            )
            gain = _apart(mine, pb) - _apart(mine, pa)
            dance = dance[at]
            # Frames half a frame apart hear different sound; the spectra's own scatter about
            # each side's level is their noise.
            noise = _frame_noise(gain, _KEPT_FRAME // 2)
        else:
            pa = cubic_at(ref_audio, (before + truth.scale * dance - ref_start) * ref_rate)
            pb = cubic_at(ref_audio, (after + truth.scale * dance - ref_start) * ref_rate)
            gain = (seg - pb) ** 2 - (seg - pa) ** 2
            noise = None
        running = np.cumsum(gain)
        j = int(np.argmax(running))
        if noise is None:
            # The output's departure from the side it plays, against what tells the sides
            # apart: its noise in each sample's gain (neighbouring samples' noise is alike:
            # counted once per _NOISE_RUN samples).
            heard = np.where(np.arange(n) <= j, seg - pa, seg - pb)
            # Away from the switch (the render's own crossfade is no noise).
            away = np.abs(np.arange(n) - j) > _AWAY_S * out_rate
            level = float(np.mean(heard[away] ** 2)) if away.any() else float(np.mean(heard**2))
            noise = 4.0 * level * (pa - pb) ** 2 * _NOISE_RUN
        spread = np.sqrt(np.abs(np.cumsum(noise) - np.cumsum(noise)[j]))
        alike = running[j] - running <= _SEAM_Z * spread + 1e-12 * abs(running[j])
        lo, hi = j, j
        while lo > 0 and alike[lo - 1]:
            lo -= 1
        while hi < len(running) - 1 and alike[hi + 1]:
            hi += 1
        if (dance[hi] - dance[lo]) * 1000.0 > SEAM_UNSURE_MS:
            errors.append(math.nan)
            continue
        switch = float(dance[j]) + 0.5 / out_rate
        errors.append((switch - seam) * 1000.0)
    return errors


# A seam is measured when the output's switch is placed within this many milliseconds; change
# points whose fit differs from the best by less than this many standard deviations of the
# output's noise are not told from it.
SEAM_UNSURE_MS = 20.0
_SEAM_Z = 2.0
_AWAY_S = 0.03
_NOISE_RUN = 8  # samples at 48 kHz whose noise in the output is counted as one


def _frame_noise(gain: NDArray[np.float64], independent: int) -> NDArray[np.float64]:
    """Per sample, the variance that spectral frames ``independent`` samples apart add to the
    running sum of ``gain``: the spread of ``gain`` about its median on each side of its
    running sum's peak (robust), shared out over the samples of one independent frame."""
    j = int(np.argmax(np.cumsum(gain)))
    out = np.empty(len(gain))
    for part in (slice(0, j + 1), slice(j + 1, len(gain))):
        g = gain[part]
        if len(g) == 0:
            continue
        mad = float(np.median(np.abs(g - np.median(g)))) * 1.4826
        out[part] = mad**2 * independent
    return out


_KEPT_FRAME = 512  # samples of the short frames a pitch-kept seam is told by


def _spectra(x: NDArray[np.float64], centres: NDArray[np.floating]) -> NDArray[np.float64]:
    """Unit-norm magnitude spectra of Hann frames of ``_KEPT_FRAME`` samples of ``x`` centred
    on sample ``centres`` (every 48th of them; zeros outside ``x``)."""
    half = _KEPT_FRAME // 2
    starts = np.asarray(centres, dtype=np.int64)[::48] - half
    padded = np.concatenate([np.zeros(_KEPT_FRAME), x, np.zeros(_KEPT_FRAME)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, _KEPT_FRAME)[
        np.clip(starts + _KEPT_FRAME, 0, len(padded) - _KEPT_FRAME)
    ]
    mag = np.abs(np.fft.rfft(frames * np.hanning(_KEPT_FRAME), axis=1))
    out: NDArray[np.float64] = mag / np.maximum(np.linalg.norm(mag, axis=1, keepdims=True), 1e-12)
    return np.repeat(out, 48, axis=0)[: len(centres)]


def _apart(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """How unlike each row of ``a`` is the same row of ``b`` (1 − their cosine)."""
    out: NDArray[np.float64] = 1.0 - np.sum(a * b, axis=1)
    return out


def _lag(
    out: NDArray[np.float64], out_rate: int, out_start: float,
    ref: NDArray[np.float64], ref_rate: int, ref_start: float,
    *, tau: float, beta: float, scale: float, window: float, search: float,
) -> tuple[float, float]:  # fmt: skip
    """Lag L (output seconds) such that output time τ+u plays reference time β + b·(u + L)."""
    i0 = math.ceil((tau - window / 2 - out_start) * out_rate)
    n = int(window * out_rate)
    if i0 < 0 or i0 + n > out.size:
        return math.nan, 0.0
    seg = out[i0 : i0 + n]
    u0 = out_start + i0 / out_rate - tau
    s = math.ceil(search * out_rate)
    v = u0 + np.arange(-s, n + s) / out_rate
    y = cubic_at(ref, (beta + scale * v - ref_start) * ref_rate)
    corr = sps.correlate(y, seg, mode="valid", method="fft")
    csum = np.concatenate([[0.0], np.cumsum(y * y)])
    energy = csum[n:] - csum[:-n]
    norm = np.sqrt(np.maximum(energy, 1e-20) * max(float(np.sum(seg * seg)), 1e-20))
    score = corr / norm
    j = int(np.argmax(score))
    frac = 0.0
    if 0 < j < score.size - 1:
        ym, y0, yp = score[j - 1], score[j], score[j + 1]
        denom = ym - 2 * y0 + yp
        if denom < 0:
            frac = 0.5 * (ym - yp) / denom
    return (j - s + frac) / out_rate, float(score[j])


_ENV_RATE = 4000  # Hz: the onset envelopes' sampling
_ENV_SMOOTH_S = 0.004
_ENV_FLOOR_S = 0.1
_ENV_WINDOW_S = 1.0  # at least this much output per point


def _onsets(x: NDArray[np.float64], rate: int, span: float = 1.0) -> NDArray[np.float64]:
    """A loudness-change curve at ``_ENV_RATE``: the high-passed signal's level over 2 ms,
    log-compressed, less its 50 ms average (rises and falls of any stretcher's output sit where
    the time map puts them, whatever it did to the waveform's phase)."""
    level = np.abs(np.diff(x, prepend=x[:1]))
    n = max(1, int(_ENV_SMOOTH_S * span * rate))
    level = np.convolve(level, np.ones(n) / n, mode="same")
    step = rate / _ENV_RATE
    env = np.log1p(1e3 * np.interp(np.arange(0, len(x), step), np.arange(len(x)), level))
    m = int(_ENV_FLOOR_S * span * _ENV_RATE)
    out: NDArray[np.float64] = env - np.convolve(env, np.ones(m) / m, mode="same")
    return out


def _onset_lag(
    out: NDArray[np.float64], out_rate: int, out_start: float,
    ref: NDArray[np.float64], ref_rate: int, ref_start: float,
    *, tau: float, beta: float, scale: float, window: float, search: float,
) -> tuple[float, float]:  # fmt: skip
    """As :func:`_lag` for a time-stretched output (pitch kept): the output's onset curve
    (:func:`_onsets`) against the reference's, read along the truth's time map; the
    reference's curve is made with its time constants scaled by the speed, so both are
    smoothed alike on one time line."""
    half = window / 2 + search + _ENV_FLOOR_S / 2
    i0 = math.floor((tau - half - out_start) * out_rate)
    i1 = math.ceil((tau + half - out_start) * out_rate)
    r0 = math.floor((beta - scale * half - ref_start) * ref_rate)
    r1 = math.ceil((beta + scale * half - ref_start) * ref_rate)
    if i0 < 0 or i1 > out.size or r0 < 0 or r1 > ref.size:
        return math.nan, 0.0
    eo = _onsets(out[i0:i1], out_rate)
    er = _onsets(ref[r0:r1], ref_rate, scale)
    to = out_start + i0 / out_rate + np.arange(eo.size) / _ENV_RATE - tau  # output time − τ
    tr = ref_start + r0 / ref_rate + np.arange(er.size) / _ENV_RATE  # reference time
    u = np.arange(-window / 2, window / 2, 1.0 / _ENV_RATE)
    seg = np.interp(u, to, eo)
    s = math.ceil(search * _ENV_RATE)
    v = np.arange(-window / 2 - s / _ENV_RATE, window / 2 + (s + 1) / _ENV_RATE, 1 / _ENV_RATE)
    y = np.interp(beta + scale * v, tr, er)
    seg = seg - seg.mean()
    corr = np.correlate(y, seg, mode="valid")
    n = seg.size
    csum = np.concatenate([[0.0], np.cumsum(y * y)])
    ysum = np.concatenate([[0.0], np.cumsum(y)])
    energy = (csum[n:] - csum[:-n]) - (ysum[n:] - ysum[:-n]) ** 2 / n
    score = corr / np.sqrt(np.maximum(energy, 1e-20) * max(float(seg @ seg), 1e-20))
    j = int(np.argmax(score))
    frac = 0.0
    if 0 < j < score.size - 1:
        ym, y0, yp = score[j - 1], score[j], score[j + 1]
        denom = ym - 2 * y0 + yp
        if denom < 0:
            frac = 0.5 * (ym - yp) / denom
    return (j - s + frac) / _ENV_RATE, float(score[j])


@dataclass(frozen=True, slots=True)
class PacketCopy:
    """Whether an output's video packets are a byte-identical run of the source's.

    ``source_start`` is the source packet (decode order) the output's first packet equals;
    ``packets`` the output's packet count; ``timing_preserved`` whether the output keeps the
    source's presentation-time differences (within 1 ms); ``reason`` says what failed.
    Truthy when ``identical``.
    """

    identical: bool
    source_start: int | None
    packets: int
    source_packets: int
    timing_preserved: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.identical


def _video_packets(path: Path | str) -> list[tuple[bytes, float | None]]:
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            digest = hashlib.blake2b(bytes(packet), digest_size=16).digest()
            pts = float(packet.pts * packet.time_base) if packet.pts is not None else None
            out.append((digest, pts))
    return out


def video_packets_copied(source: Path | str, output: Path | str) -> PacketCopy:
    """Check that ``output``'s video packets equal a contiguous run of ``source``'s packets."""
    src = _video_packets(source)
    dst = _video_packets(output)
    if not dst:
        return PacketCopy(False, None, 0, len(src), False, "the output has no video packets")
    hashes = [h for h, _ in src]
    try:
        j = hashes.index(dst[0][0])
    except ValueError:
        return PacketCopy(False, None, len(dst), len(src), False, "first packet not in source")
    if j + len(dst) > len(src):
        return PacketCopy(False, j, len(dst), len(src), False, "output runs past the source")
    for i, (h, _) in enumerate(dst):
        if src[j + i][0] != h:
            return PacketCopy(False, j, len(dst), len(src), False, f"packet {i} differs")
    timing = True
    base_s, base_d = src[j][1], dst[0][1]
    for i, (_, p) in enumerate(dst):
        q = src[j + i][1]
        if p is None or q is None or base_s is None or base_d is None:
            continue
        if abs((p - base_d) - (q - base_s)) > 1e-3:
            timing = False
            break
    return PacketCopy(True, j, len(dst), len(src), timing)
