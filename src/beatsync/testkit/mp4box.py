"""Read the edit lists of an MP4/MOV file straight from its boxes (moov/trak/edts/elst).

Some players ignore edit lists, so a file whose sync depends on one is fragile; these readers let
tests see exactly what a file asks of a player. Only the boxes on the path to ``elst`` are parsed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EditEntry", "TrackEdits", "mp4_edit_lists", "mp4_has_edit_list"]


@dataclass(frozen=True, slots=True)
class EditEntry:
    """One ``elst`` entry: ``duration`` in movie timescale units, ``media_time`` in the track's
    media timescale (−1 = an empty edit, i.e. a gap), ``rate`` the playback rate."""

    duration: int
    media_time: int
    rate: float


@dataclass(frozen=True, slots=True)
class TrackEdits:
    """The edit list of one track. ``handler`` is ``vide``, ``soun``…; timescales in ticks/s."""

    track_id: int
    handler: str
    movie_timescale: int
    media_timescale: int
    entries: tuple[EditEntry, ...]

    @property
    def is_identity(self) -> bool:
        """True when the list plays the media as it is: no list, or one entry from 0 at rate 1."""
        if not self.entries:
            return True
        return (
            len(self.entries) == 1 and self.entries[0].media_time == 0 and self.entries[0].rate == 1
        )

    @property
    def start_skip(self) -> float:
        """Seconds of media skipped at the start (media_time of the first non-empty edit)."""
        for entry in self.entries:
            if entry.media_time >= 0:
                return entry.media_time / self.media_timescale
        return 0.0

    @property
    def empty_lead(self) -> float:
        """Seconds of empty edits (delays) before the media starts."""
        lead = 0
        for entry in self.entries:
            if entry.media_time != -1:
                break
            lead += entry.duration
        return lead / self.movie_timescale


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, payload end) of each box in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind.decode("latin-1"), pos + header, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, kind: str) -> tuple[int, int] | None:
    for k, s, e in _boxes(data, start, end):
        if k == kind:
            return s, e
    return None


def _timescale(data: bytes, span: tuple[int, int] | None, v0_offset: int, v1_offset: int) -> int:
    if span is None:
        return 1
    s, _ = span
    offset = v1_offset if data[s] == 1 else v0_offset
    return int(struct.unpack(">I", data[s + offset : s + offset + 4])[0])


def _elst(data: bytes, s: int) -> tuple[EditEntry, ...]:
    version = data[s]
    (count,) = struct.unpack(">I", data[s + 4 : s + 8])
    pos = s + 8
    entries = []
    for _ in range(count):
        if version == 1:
            duration, media_time = struct.unpack(">Qq", data[pos : pos + 16])
            pos += 16
        else:
            duration, media_time = struct.unpack(">Ii", data[pos : pos + 8])
            pos += 8
        whole, frac = struct.unpack(">hh", data[pos : pos + 4])
        pos += 4
        entries.append(EditEntry(int(duration), int(media_time), whole + frac / 65536.0))
    return tuple(entries)


def _read_moov(path: Path) -> bytes:
    """The payload of the top-level moov box, read without loading the media data."""
    size_total = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            header = 8
            if size == 1:
                (size,) = struct.unpack(">Q", f.read(8))
                header = 16
            elif size == 0:
                size = size_total - pos
            if size < header:
                break
            if kind == b"moov":
                return f.read(size - header)
            pos += size
    raise ValueError(f"{path}: no moov box (not an MP4/MOV file, or a fragmented one)")


def mp4_edit_lists(path: Path | str) -> tuple[TrackEdits, ...]:
    """The edit list of every track of an MP4/MOV file (an empty ``entries`` when it has none)."""
    data = _read_moov(Path(path))
    moov = (0, len(data))
    # mvhd: version, flags, then creation/modification times (4 or 8 bytes each) before timescale.
    movie_scale = _timescale(data, _child(data, *moov, "mvhd"), 12, 20)
    tracks = []
    for kind, s, e in _boxes(data, *moov):
        if kind != "trak":
            continue
        tkhd = _child(data, s, e, "tkhd")
        track_id = _timescale(data, tkhd, 12, 20)  # track_ID sits where mvhd keeps its timescale
        mdia = _child(data, s, e, "mdia")
        handler, media_scale = "", 1
        if mdia is not None:
            hdlr = _child(data, *mdia, "hdlr")
            if hdlr is not None:
                handler = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
            media_scale = _timescale(data, _child(data, *mdia, "mdhd"), 12, 20)
        entries: tuple[EditEntry, ...] = ()
        edts = _child(data, s, e, "edts")
        if edts is not None:
            elst = _child(data, *edts, "elst")
            if elst is not None:
                entries = _elst(data, elst[0])
        tracks.append(TrackEdits(track_id, handler, movie_scale, media_scale, entries))
    return tuple(tracks)


def mp4_has_edit_list(path: Path | str, *, handler: str | None = None) -> bool:
    """True when a track (of kind ``handler``, e.g. ``"vide"``, if given) has an edit list that
    does more than play its media from the start: a skip, a delay, several edits, or a rate."""
    return any(
        not t.is_identity for t in mp4_edit_lists(path) if handler is None or t.handler == handler
    )
