"""Rational-ratio resampling through a given FIR filter, in NumPy.

The same results as ``scipy.signal.firwin`` (Kaiser window) and ``scipy.signal.resample_poly``
(explicit taps, zero padding), without importing ``scipy.signal``: that import alone takes most of
a second, against a budget of a few seconds for a whole three-minute job.

Output sample ``r`` of ``resample_poly`` is ``up · Σₙ x[n] · h[r·down + half − n·up]`` with
``half = (len(h) − 1) // 2``: the filter centred on input position ``r·down/up``. Outputs ``up``
apart use the same taps on inputs ``down`` apart, so the outputs are laid out as rows of ``U`` (a
multiple of ``up``) consecutive phases, ``D`` input samples apart. The phases are cut into blocks
of ~32; each block reads one short stretch of every row, so a block is one small matrix product
of the rows' stretches (gathered from a strided view) with a banded matrix of its taps. Those
products run in BLAS, each kept below the size at which OpenBLAS starts its own threads (the
renderer already runs one resampler per core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, NDArray

__all__ = ["PolyphaseResampler", "kaiser_lowpass", "resample_poly"]

_MIN_PHASES = 1024  # rows of at least this many outputs keep the Python loop short
_BLOCK_PHASES = 32
_GEMM_LIMIT = 1 << 18  # multiply-adds per product; OpenBLAS threads larger ones
_CHUNK = 1 << 16  # input values gathered per step: the working set stays in the cache


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> NDArray[np.float64]:
    """Windowed-sinc low-pass FIR taps with unit gain at DC.

    Equal to ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``.

    Parameters
    ----------
    numtaps
        Filter length (taps).
    cutoff
        Cut-off frequency as a fraction of the Nyquist frequency, in (0, 1).
    beta
        Kaiser window shape (5.0: about 55 dB stop-band rejection).

    Returns
    -------
    ndarray of float64, shape (numtaps,)
        The taps, symmetric, summing to 1.
    """
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, not {numtaps}")
    if not 0.0 < cutoff < 1.0:
        raise ValueError(f"cut-off {cutoff} is not between 0 and the Nyquist frequency (1)")
    m = np.arange(numtaps, dtype=np.float64) - 0.5 * (numtaps - 1)
    taps = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    taps /= taps.sum()
    result: NDArray[np.float64] = taps
    return result


@dataclass(frozen=True, slots=True)
class _Bank:
    """The filter bank for rows of ``phases`` outputs that advance ``stride`` inputs per row.

    ``starts[b]`` is the first input (relative to the row's) read by block ``b`` of ``block``
    phases and ``taps[b]`` its (width, block) matrix; phases past ``phases`` compute nothing.
    """

    phases: int
    stride: int
    block: int
    width: int
    starts: NDArray[np.intp]
    taps: NDArray[Any]


class PolyphaseResampler:
    """``resample_poly`` by ``up/down`` through fixed taps, prepared once for many signals.

    Parameters
    ----------
    up, down
        The resampling ratio (reduced by their common divisor, as SciPy does).
    window
        The FIR taps, 1-D, designed for the upsampled rate (e.g. ``kaiser_lowpass``); the
        output is scaled by ``up``.
    """

    def __init__(self, up: int, down: int, window: ArrayLike) -> None:
        if up != int(up) or down != int(down) or up < 1 or down < 1:
            raise ValueError(f"up and down must be positive integers, not {up} and {down}")
        common = math.gcd(int(up), int(down))
        self.up, self.down = int(up) // common, int(down) // common
        taps = np.asarray(window)
        if taps.ndim != 1 or taps.size == 0:
            raise ValueError("the window must be a non-empty 1-D array of taps")
        if taps.dtype.kind not in "fc":
            taps = taps.astype(np.float64)
        self.taps = taps * taps.dtype.type(self.up)  # in the taps' own precision, as SciPy
        self._bank = _bank(self.up, self.down, self.taps.astype(np.result_type(taps, np.float32)))

    def output_length(self, n: int) -> int:
        """Outputs for ``n`` input samples: ``ceil(n · up / down)``."""
        return -(-n * self.up // self.down)

    def __call__(self, x: ArrayLike, *, axis: int = -1) -> NDArray[Any]:
        """Resample ``x`` along ``axis``; see ``resample_poly``."""
        data = np.asarray(x)
        if self.up == self.down == 1:
            return data.copy()
        dtype = np.result_type(data.dtype, self.taps.dtype, np.float32)
        moved = np.moveaxis(data, axis, -1)
        n = moved.shape[-1]
        lead = moved.shape[:-1]
        n_out = self.output_length(n)
        if moved.size == 0:
            return np.moveaxis(np.zeros((*lead, n_out), dtype), -1, axis)
        rows = np.asarray(moved.reshape(-1, n), dtype)
        out = _apply(self._bank, rows, n_out)
        return np.moveaxis(out.reshape(*lead, n_out), -1, axis)


def resample_poly(
    x: ArrayLike, up: int, down: int, *, window: ArrayLike, axis: int = -1
) -> NDArray[Any]:
    """Resample by ``up/down`` through the FIR ``window``: ``scipy.signal.resample_poly``.

    Parameters
    ----------
    x
        The signal; resampled along ``axis``, zero outside it.
    up, down
        Upsampling and downsampling factors (positive integers).
    window
        The FIR taps at the upsampled rate, 1-D. The output is delayed by none of them: output
        sample ``r`` is centred on input sample ``r · down / up``.
    axis
        The time axis.

    Returns
    -------
    ndarray
        ``ceil(n · up / down)`` samples along ``axis`` (``n`` the input's), dtype the promotion
        of ``x``'s, the window's and float32. With ``up == down`` after reduction, a copy of ``x``.
    """
    return PolyphaseResampler(up, down, window)(x, axis=axis)


def _bank(up: int, down: int, taps: NDArray[Any]) -> _Bank:
    length = taps.shape[0]
    half = (length - 1) // 2
    per_phase = -(-length // up)
    padded = np.zeros(per_phase * up, taps.dtype)
    padded[:length] = taps
    # reverse[p, j]: the tap that weighs the j-th of the phase's inputs, oldest first
    reverse = padded.reshape(per_phase, up).T[:, ::-1]
    repeat = -(-_MIN_PHASES // up)
    phases = repeat * up
    r = np.arange(phases)
    centre = r * down + half
    first_input = centre // up - (per_phase - 1)
    blocks = -(-phases // _BLOCK_PHASES)
    block = -(-phases // blocks)
    which = r // block
    starts = first_input[::block]
    offset = first_input - starts[which]
    width = int(offset.max()) + per_phase
    bank = np.zeros((blocks, width, block), taps.dtype)
    bank[which[:, None], offset[:, None] + np.arange(per_phase), (r % block)[:, None]] = reverse[
        centre % up
    ]
    return _Bank(phases, repeat * down, block, width, starts, bank)


def _apply(bank: _Bank, x: NDArray[Any], n_out: int) -> NDArray[Any]:
    channels, n = x.shape
    taps = bank.taps.astype(x.dtype, copy=False)
    blocks = taps.shape[0]
    rows = -(-n_out // bank.phases)
    lo, hi = int(bank.starts[0]), int(bank.starts[-1])
    relative = bank.starts - lo
    out = np.empty((channels, rows, bank.phases), x.dtype)
    per_row = blocks * channels * bank.width
    span = max(1, min(_GEMM_LIMIT // (channels * bank.width * bank.block), _CHUNK // per_row))
    for m0 in range(0, rows, span):
        m1 = min(rows, m0 + span)
        begin, end = lo + m0 * bank.stride, hi + (m1 - 1) * bank.stride + bank.width
        if begin >= 0 and end <= n:
            source = x[:, begin:end]
        else:  # zeros beyond the signal's ends
            source = np.zeros((channels, end - begin), x.dtype)
            source[:, max(0, -begin) : min(n, end) - begin] = x[:, max(0, begin) : min(n, end)]
        step = source.strides[1]
        view = as_strided(
            source,
            shape=(hi - lo + 1, channels, m1 - m0, bank.width),
            strides=(step, source.strides[0], bank.stride * step, step),
            writeable=False,
        )
        product = np.matmul(view[relative].reshape(blocks, -1, bank.width), taps)
        out[:, m0:m1] = (
            product.reshape(blocks, channels, m1 - m0, bank.block)
            .transpose(1, 2, 0, 3)
            .reshape(channels, m1 - m0, -1)[:, :, : bank.phases]
        )
    return out.reshape(channels, -1)[:, :n_out]
