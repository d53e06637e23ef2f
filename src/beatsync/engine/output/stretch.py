"""A source laid on the output time-stretched with its pitch kept, for a class whose player
changed the tempo without the pitch.

The reference is first resampled at its own pitch onto the 48 kHz grid (:class:`ResampledSource`
at speed 1), then time-stretched by Rubber Band (through Spotify's ``pedalboard``) in chunks of
ten seconds of the reference with a second of margin either side; neighbouring chunks
are cross-faded over 50 ms where both are well inside their margins. The chunk grid is fixed on
the reference, so any reader, starting anywhere, makes the same samples (the audio encoder's
threads stitch their segments without a seam), and memory stays a few chunks whatever the
song's length.

Placement: output sample ``n`` carries reference time ``t0 + scale·n / 48000``. A chunk that
starts at grid sample ``j`` of the 48 kHz reference lands at output sample ``j / scale``
(rounded: under 11 µs off); ``pedalboard`` compensates Rubber Band's latency and returns the
stretched chunk starting where its input starts. Rubber Band runs its faster engine (R2) with the
short analysis window: the finer engine (R3) lays transients up to 10–25 ms off the time line at
some speeds (0.9×, 1.25×), the short window keeps attacks where the line puts them
(``bench/stretchers.py`` measures both).

Rubber Band's output leans: a phase vocoder spreads each attack over its window, and its rise
is heard early when the music is slowed (2–11 ms at 0.5×, depending on the music; about 1.3 ms
at 0.9×) and late when it is sped up. So each chunk, once stretched, is measured against its own
input (:func:`measured_lean`: the loudness-rise curves of both, the input's read along the time
line, cross-correlated within 20 ms) and laid that much later or earlier, so the attacks sound
where the mapping puts them. A chunk whose curves do not agree well enough (silence, noise)
takes the table's lean instead (:data:`_LEAN_MS`, measured on five songs that the test kit's
pitch-kept cases do not play). The measure is the chunk's own, so any reader lays it alike.
"""

from __future__ import annotations

import math

import numpy as np
import pedalboard

from ..media.audiosource import OUTPUT_RATE, Audio, ResampledSource, Source

__all__ = ["StretchedSource", "lean", "measured_lean", "stretch"]

_CHUNK = 10 * OUTPUT_RATE  # reference samples per chunk (48 kHz grid)
_MARGIN = OUTPUT_RATE  # reference samples stretched beyond each chunk's edges
_FADE = OUTPUT_RATE // 20  # output samples of the cross-fade between chunks
# (speed, ms): where Rubber Band's attacks land against the time line, negative when early.
_LEAN_MS = (
    (0.5, -3.3), (0.6, -3.7), (0.75, -2.5), (0.9, -1.3), (1.0, 0.0),
    (1.1, 0.8), (1.25, 1.3), (1.5, 1.8),
)  # fmt: skip


def lean(scale: float) -> float:
    """Seconds by which the stretched attacks land late (negative: early) at speed ``scale``,
    interpolated on a log-speed axis between the measured speeds, held beyond them."""
    speeds, ms = zip(*_LEAN_MS, strict=True)
    return float(np.interp(math.log(scale), np.log(speeds), ms)) / 1000.0


_ENV_RATE = 4000  # Hz: the rise curves' sampling
_ENV_STEP = OUTPUT_RATE // _ENV_RATE
_SEARCH = 0.02  # s of output either way searched for a chunk's lean
_MIN_PEAK = 0.5  # below this correlation of the rise curves a chunk keeps the table's lean


def _boxcar(x: np.ndarray, n: int, at: np.ndarray) -> np.ndarray:
    """Means of ``x`` over ``n`` samples centred on the samples ``at`` (zeros beyond the ends)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    lo = np.clip(at - n // 2, 0, x.size)
    out: np.ndarray = (c[np.clip(lo + n, 0, x.size)] - c[lo]) / n
    return out


def _rises(x: np.ndarray, span: float) -> np.ndarray:
    """Loudness changes of mono ``x`` (48 kHz) at ``_ENV_RATE``: the high-passed level over
    ``4·span`` ms, log-compressed, less its ``100·span`` ms average. ``span`` = the speed for the
    unstretched input, so both curves are smoothed alike on the output's time line."""
    level = np.abs(np.diff(x))
    n = max(1, int(0.004 * span * OUTPUT_RATE))
    env = np.log1p(1e3 * _boxcar(level, n, np.arange(0, level.size, _ENV_STEP)))
    m = max(1, int(0.1 * span * _ENV_RATE))
    out: np.ndarray = env - _boxcar(env, m, np.arange(env.size))
    return out


def measured_lean(samples: Audio, stretched: Audio, scale: float, lo: int, hi: int) -> float | None:
    """Seconds by which ``stretched`` (:func:`stretch` of ``samples`` at ``scale``) plays
    ``samples``' loudness rises late (negative: early) over input samples [lo, hi): the peak
    of the correlation of both rise curves, the input's read along the time line (output sample
    ``m`` carries input sample ``scale·m``). None when the curves do not agree well enough
    (silence, noise), or the peak sits at the edge of the search."""
    eo = _rises(stretched.mean(axis=0), 1.0)
    ei = _rises(samples.mean(axis=0), scale)
    s = math.ceil(_SEARCH * _ENV_RATE)
    u0 = max(math.ceil(lo / scale / _ENV_STEP), s + 1)
    u1 = min(math.floor(hi / scale / _ENV_STEP), eo.size - s - 1)
    if u1 - u0 < _ENV_RATE:
        return None
    seg = eo[u0:u1] - eo[u0:u1].mean()
    # The input's curve at output frames u0 − s … u1 + s.
    y = np.interp(np.arange(u0 - s, u1 + s) * scale, np.arange(ei.size), ei)
    n = seg.size
    size = 1 << (y.size - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(seg, size)), size)[: 2 * s + 1]
    csum = np.concatenate([[0.0], np.cumsum(y * y)])
    ysum = np.concatenate([[0.0], np.cumsum(y)])
    energy = (csum[n:] - csum[:-n]) - (ysum[n:] - ysum[:-n]) ** 2 / n
    score = corr / np.sqrt(np.maximum(energy, 1e-20) * max(float(seg @ seg), 1e-20))
    j = int(np.argmax(score))
    if score[j] < _MIN_PEAK or not 0 < j < score.size - 1:
        return None
    ym, y0, yp = score[j - 1], score[j], score[j + 1]
    denom = ym - 2 * y0 + yp
    frac = 0.5 * (ym - yp) / denom if denom < 0 else 0.0
    # Output frame u plays the input's frame (u + lag)·scale: early by lag.
    return -float(j - s + frac) / _ENV_RATE


def stretch(samples: Audio, scale: float) -> Audio:
    """``samples`` (channels, n) at 48 kHz played ``scale`` times as fast with the pitch kept:
    about ``n / scale`` samples, output sample ``m`` carrying input sample ``scale·m``."""
    out = pedalboard.time_stretch(
        np.ascontiguousarray(samples, dtype=np.float32),
        float(OUTPUT_RATE),
        stretch_factor=scale,
        high_quality=False,
        use_long_fft_window=False,
    )
    return np.asarray(out, dtype=np.float32)


class StretchedSource:
    """Output samples of a pitch-kept source; ``take`` as :class:`ResampledSource`'s."""

    def __init__(self, source: Source, first: int) -> None:
        self.scale = source.scale
        # Grid sample j of the reference at 48 kHz (pitch unchanged) is reference time
        # t0 + (j − pad) / 48000; the pad leaves room for the first chunk's margin.
        self.pad = _MARGIN + _CHUNK
        flat = Source(
            source.path, source.index, source.t0 - self.pad / OUTPUT_RATE, 1.0,
            decoded=source.decoded,
        )  # fmt: skip
        self.grid_first = max(0, self._chunk_of(first - _FADE) * _CHUNK - _MARGIN)
        self.reader = ResampledSource(flat, self.grid_first)
        self.read_to = self.grid_first
        self.held = np.zeros((2, 0), np.float32)  # grid samples from self.held_from on
        self.held_from = self.grid_first
        self.chunks: dict[int, tuple[int, Audio]] = {}
        self.shift = round(-lean(self.scale) * OUTPUT_RATE)  # output samples each chunk moves

    def _chunk_of(self, n: int) -> int:
        """The chunk whose own (unfaded) span holds output sample ``n``."""
        return math.floor((n * self.scale + self.pad) / _CHUNK)

    def _grid(self, lo: int, hi: int) -> Audio:
        """Grid samples [lo, hi), read forward from the file."""
        if hi > self.read_to:
            more = self.reader.take(self.read_to, hi)
            self.held = np.concatenate([self.held, more], axis=1)
            self.read_to = hi
        drop = max(0, lo - self.held_from)
        self.held = self.held[:, drop:]
        self.held_from += drop
        return self.held[:, lo - self.held_from : hi - self.held_from]

    def _chunk(self, c: int) -> tuple[int, Audio]:
        """Chunk ``c`` stretched: (output sample of its first sample, samples)."""
        if c not in self.chunks:
            lo = max(0, c * _CHUNK - _MARGIN)
            grid = self._grid(lo, (c + 1) * _CHUNK + _MARGIN)
            data = stretch(grid, self.scale)
            late = measured_lean(grid, data, self.scale, c * _CHUNK - lo, (c + 1) * _CHUNK - lo)
            shift = self.shift if late is None else round(-late * OUTPUT_RATE)
            self.chunks = {k: v for k, v in self.chunks.items() if k >= c - 1}
            self.chunks[c] = (round((lo - self.pad) / self.scale) + shift, data)
        return self.chunks[c]

    def _piece(self, c: int, n0: int, n1: int) -> Audio:
        at, data = self._chunk(c)
        out = np.zeros((2, n1 - n0), np.float32)
        lo, hi = max(n0, at), min(n1, at + data.shape[1])
        if lo < hi:
            out[:, lo - n0 : hi - n0] = data[:, lo - at : hi - at]
        return out

    def take(self, n0: int, n1: int) -> Audio:
        """Output samples [n0, n1) as (2, n1 − n0); successive calls move forward."""
        out = np.zeros((2, n1 - n0), np.float32)
        n = np.arange(n0, n1)
        for c in range(self._chunk_of(n0 - _FADE), self._chunk_of(n1 + _FADE) + 1):
            # Chunk c owns output from its start edge to the next's, cross-faded over _FADE
            # samples centred on each edge.
            start = (c * _CHUNK - self.pad) / self.scale
            end = ((c + 1) * _CHUNK - self.pad) / self.scale
            rise = np.clip((n - start) / _FADE + 0.5, 0.0, 1.0) if c > 0 else 1.0
            fall = np.clip((end - n) / _FADE + 0.5, 0.0, 1.0)
            weight = np.asarray(rise * fall, dtype=np.float32)
            if not weight.any():
                continue
            out += self._piece(c, n0, n1) * weight
        return out

    def close(self) -> None:
        self.reader.close()
