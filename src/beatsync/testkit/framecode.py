"""A frame index drawn into the top-left corner of every generated picture, and read back.

The code is a 3 × 6 grid of black/white square cells in the luma plane: 16 data bits (the frame
index modulo 65536) and 2 check bits, all whitened by a fixed pattern so that neither an all-black
nor an all-white corner reads as a valid code. The cell side is ``max(8, round(short_side / 30))``
pixels, aligned to the picture origin, so each cell spans whole 4×4 / 8×8 transform blocks and
survives H.264/HEVC compression at 320×240. The grid covers 2 % × short/long of the picture
(1.5 % at 4:3, 1.1 % at 16:9), so black- and freeze-detection that needs 98 % of the pixels still
sees a black or frozen picture with the code present.

A reading is refused (``None``) unless every cell's centre is flat and clearly black or white and
both check bits agree: a misread shows up as a missing index, never as a wrong one, for any single
flipped cell. The reader scales its grid with the picture's short side, so a proportionally scaled
(re-encoded) picture still reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FRAME_CODE_MODULUS",
    "CodeGeometry",
    "code_geometry",
    "draw_frame_code",
    "frame_luma",
    "read_frame_code",
]

FRAME_CODE_MODULUS = 1 << 16

_ROWS = 3
_COLS = 6
_DATA_BITS = 16
# Whitening: data pattern and check pattern. parity_check(_WHITE_DATA) ^ _WHITE_CHECK must be
# 0b01 or 0b10 so the all-black (bits = pattern) and all-white (bits = ~pattern) grids fail.
_WHITE_DATA = 0b1011_0010_0110_1101
_WHITE_CHECK = 0b11
_EVEN_MASK = 0x5555
_ODD_MASK = 0xAAAA

# Limited-range luma levels for a black and a white cell.
_BLACK = 16
_WHITE = 235
# A cell centre reads as 0 below _LOW, as 1 above _HIGH; in between it is unreadable.
_LOW = 90
_HIGH = 160
# Largest spread (max − min) of luma inside a cell centre that still counts as a flat cell.
_MAX_SPREAD = 150


@dataclass(frozen=True, slots=True)
class CodeGeometry:
    """Where the code sits: ``cell`` pixels per side, a ``rows × cols`` grid at the origin."""

    cell: float
    rows: int = _ROWS
    cols: int = _COLS

    @property
    def width(self) -> int:
        return round(self.cell * self.cols)

    @property
    def height(self) -> int:
        return round(self.cell * self.rows)


def code_geometry(width: int, height: int, *, for_writing: bool = True) -> CodeGeometry:
    """The grid for a ``width × height`` picture.

    The writer rounds the cell to whole pixels; the reader keeps the exact fraction so that a
    picture scaled after writing still samples the middle of each cell.
    """
    short = min(width, height)
    cell = short / 30.0
    if for_writing:
        return CodeGeometry(cell=float(max(8, round(cell))))
    return CodeGeometry(cell=max(8.0, cell))


def _check_bits(data: int) -> int:
    even = bin(data & _EVEN_MASK).count("1") & 1
    odd = bin(data & _ODD_MASK).count("1") & 1
    return (odd << 1) | even


def _encode(index: int) -> int:
    data = index % FRAME_CODE_MODULUS
    word = data | (_check_bits(data) << _DATA_BITS)
    return word ^ (_WHITE_DATA | (_WHITE_CHECK << _DATA_BITS))


def _decode(word: int) -> int | None:
    word ^= _WHITE_DATA | (_WHITE_CHECK << _DATA_BITS)
    data = word & (FRAME_CODE_MODULUS - 1)
    if (word >> _DATA_BITS) != _check_bits(data):
        return None
    return data


def draw_frame_code(luma: NDArray[np.uint8], index: int) -> None:
    """Draw ``index`` (taken modulo 65536) into the top-left corner of ``luma`` in place.

    Parameters
    ----------
    luma
        The picture's luma plane, shape (height, width), uint8, limited range.
    index
        The frame index to write.
    """
    height, width = luma.shape
    geo = code_geometry(width, height)
    cell = int(geo.cell)
    word = _encode(index)
    for bit in range(_ROWS * _COLS):
        row, col = divmod(bit, _COLS)
        value = _WHITE if (word >> bit) & 1 else _BLACK
        luma[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = value


def read_frame_code(luma: NDArray[np.uint8]) -> int | None:
    """The index drawn in ``luma`` (height × width, uint8), or None if it cannot be trusted."""
    height, width = luma.shape
    geo = code_geometry(width, height, for_writing=False)
    half = geo.cell / 4.0
    word = 0
    for bit in range(_ROWS * _COLS):
        row, col = divmod(bit, _COLS)
        cy = (row + 0.5) * geo.cell
        cx = (col + 0.5) * geo.cell
        y0, y1 = round(cy - half), round(cy + half)
        x0, x1 = round(cx - half), round(cx + half)
        patch = luma[y0:y1, x0:x1]
        if patch.size == 0:
            return None
        lo, hi = int(patch.min()), int(patch.max())
        if hi - lo > _MAX_SPREAD:
            return None
        mean = float(patch.mean())
        if mean >= _HIGH:
            word |= 1 << bit
        elif mean > _LOW:
            return None
    return _decode(word)


def frame_luma(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """The luma plane of a decoded frame as (height, width) uint8, without colour conversion."""
    name = frame.format.name
    if name in {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12"}:
        plane = frame.planes[0]
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8)
        return rows.reshape(frame.height, plane.line_size)[:, : frame.width]
    return np.asarray(frame.to_ndarray(format="gray"), dtype=np.uint8)
