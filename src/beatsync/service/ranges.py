"""HTTP ``Range: bytes=…`` requests (RFC 9110 §14), reduced to what result files need.

Players (``<video>``, ``wx.downloadFile``, iOS AVPlayer) ask for one range at a time, so only a
single range is served as 206; a multi-range request gets the whole file (a server may always
ignore ``Range``), as does a header we cannot read. Only a well-formed single range that starts
beyond the end of the file is refused (416). Parsing never raises: a header is client input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ByteRange", "Unsatisfiable", "parse_range"]

# ASCII digits only: str.isdigit() would also accept "²" and other Unicode digits.
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
# Longer numbers than this are beyond any file and cost time to convert; treat them as huge.
_MAX_DIGITS = 30


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``[start, stop)`` of a file of ``size`` bytes; never empty."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 206 answer."""
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """A readable range that no byte of a ``size``-byte file satisfies (answer 416)."""

    size: int

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 416 answer."""
        return f"bytes */{self.size}"


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _before(smaller: str, larger: str) -> bool:
    """``int(smaller) < int(larger)`` for digit strings of any length, without converting."""
    a, b = smaller.lstrip("0"), larger.lstrip("0")
    return (len(a), a) < (len(b), b)


def parse_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """What to send for ``header`` against a file of ``size`` bytes.

    Returns a :class:`ByteRange` for one satisfiable range (``a-b``, ``a-`` or the suffix
    ``-n``; ``b`` is clipped to the file), :class:`Unsatisfiable` for one range beyond the file
    (or any range of an empty file), and None when the whole file should be sent: no header,
    another unit, several ranges, or a header that does not parse.
    """
    if not header or size < 0:
        return None
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    # A list may hold empty elements ("0-9,"), which recipients skip (RFC 9110 §5.6.1).
    specs = [s.strip() for s in ranges.split(",") if s.strip()]
    if len(specs) != 1:
        return None
    match = _SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None
        suffix = _number(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size, size)
    start = _number(first)
    if last:
        if _before(last, first):
            return None  # syntactically invalid: ignored, not refused (RFC 9110 §14.1.1)
        stop = min(_number(last) + 1, size)
    else:
        stop = size
    if start >= size:
        return Unsatisfiable(size)
    return ByteRange(start, stop, size)
