"""Pictures an audio-first client decoded: a :class:`~.picture.FrameSource` over its thumbnails.

The client may send a thumbnail of every keyframe with the job; otherwise the source asks
``fetch`` for the pictures the check reads as it reads them: the keyframes a few at a time while
it scans, every frame of a stretch (one group of pictures at an edge) when it needs them, and the
caller gets them from the client. :meth:`ClientFrames.hint` asks for the first pictures of both
edges of a span in one request, so a clean span costs the client one or two exchanges. Which
packets a decoder would show after a seek is worked out from the manifest's timeline exactly as
:class:`~.picture.FileFrames` meets them in the file, so both sources answer alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ManifestError, ProcessingError
from ..media.movtime import VideoTimeline, seek_packet
from .picture import SCAN_SECONDS, TAIL_SECONDS, THUMB_SIZE, Thumb

__all__ = [
    "THUMB_BYTES",
    "ClientFrames",
    "FetchFrames",
    "FramesUnavailableError",
    "split_thumbnails",
]

THUMB_BYTES = THUMB_SIZE[0] * THUMB_SIZE[1]
KEY_BATCH = 8
"""Keyframes asked for at once while a scan reads them one by one."""


class FramesUnavailableError(ProcessingError):
    """The client did not send the frames asked for (in time, or at all)."""


FetchFrames = Callable[[tuple[int, ...]], Mapping[int, Thumb]]
"""Thumbnails of these source samples (decode-order indices), from the client."""


def split_thumbnails(data: bytes, samples: Sequence[int]) -> dict[int, Thumb]:
    """``len(samples)`` grey 96×54 thumbnails laid end to end (row by row, one byte a pixel),
    keyed by the sample each belongs to.

    Raises
    ------
    ManifestError
        When the bytes are not exactly that many thumbnails.
    """
    if len(data) != THUMB_BYTES * len(samples):
        raise ManifestError(
            f"thumbnails: {len(data)} bytes are not {len(samples)} pictures of "
            f"{THUMB_SIZE[0]}×{THUMB_SIZE[1]} grey bytes ({THUMB_BYTES * len(samples)} bytes)"
        )
    pictures = np.frombuffer(data, np.uint8).reshape(len(samples), THUMB_SIZE[1], THUMB_SIZE[0])
    return {s: pictures[i].astype(np.int16) for i, s in enumerate(samples)}


class ClientFrames:
    """Thumbnails sent by the client, laid on the timeline of its video.

    ``keyframes`` maps source sample → thumbnail for the frames already known (every keyframe,
    or none); ``fetch`` is asked for the other frames when they are needed. Without ``fetch``, or
    when it raises :class:`FramesUnavailableError`, a stretch with a frame missing raises it.
    """

    def __init__(
        self,
        timeline: VideoTimeline,
        keyframes: Mapping[int, Thumb],
        fetch: FetchFrames | None = None,
    ) -> None:
        self.timeline = timeline
        self.known: dict[int, Thumb] = dict(keyframes)
        self.fetch = fetch
        self.requests: list[tuple[int, ...]] = []
        tb = timeline.time_base
        # Exactly as the file source computes a frame's time: float(pts × time_base).
        self._time = np.array([float(int(p) * tb) for p in timeline.pts])

    def _shown(self, start: float, end: float, *, keys: bool) -> list[int]:
        """Packets decoded from the seek point that a decoder shows up to ``end``, by time.

        Pictures decoded after the seek point's keyframe but shown before it (the leading
        pictures of an open GOP) refer to frames before the seek: the decoder drops them.
        """
        tl = self.timeline
        first = seek_packet(tl, start)
        pts = tl.pts[first:]
        shown = ~tl.discard[first:] & (self._time[first:] <= end) & (pts >= tl.pts[first])
        if keys:
            shown &= tl.key[first:]
        chosen = (np.flatnonzero(shown) + first).tolist()
        return sorted(chosen, key=lambda i: float(self._time[i]))

    def hint(self, start: float, end: float) -> None:
        """Ask at once for what checking the edges of ``[start, end]`` reads first: the first
        keyframes from ``start`` and the last two frames before ``end``."""
        keys = self._shown(start, min(end, start + SCAN_SECONDS), keys=True)[:KEY_BATCH]
        tail = self._shown(max(start, end - TAIL_SECONDS), end, keys=False)
        tail = [i for i in tail if self._time[i] < end]
        self._fetch(keys + tail[-2:])

    def keyframes(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        packets = self._shown(start, end, keys=True)
        for first in range(0, len(packets), KEY_BATCH):
            batch = packets[first : first + KEY_BATCH]
            yield from self._yield(batch)

    def frames(self, start: float, end: float) -> Iterator[tuple[float, Thumb]]:
        return self._yield(self._shown(start, end, keys=False))

    def last_two(self, start: float, end: float) -> list[tuple[float, Thumb]]:
        shown = [i for i in self._shown(start, end, keys=False) if self._time[i] < end]
        return list(self._yield(shown[-2:]))

    def _fetch(self, packets: list[int]) -> None:
        """Get the thumbnails of these packets that are not known yet from the client."""
        samples = [int(self.timeline.sample[i]) for i in packets]
        missing = tuple(dict.fromkeys(s for s in samples if s not in self.known))
        if not missing:
            return
        if self.fetch is None:
            raise FramesUnavailableError(f"{len(missing)} frames are not known")
        self.requests.append(missing)
        got = self.fetch(missing)
        self.known.update({s: got[s] for s in missing if s in got})
        if any(s not in self.known for s in missing):
            raise FramesUnavailableError("the client sent fewer frames than asked for")

    def _yield(self, packets: list[int]) -> Iterator[tuple[float, Thumb]]:
        self._fetch(packets)
        samples = [int(self.timeline.sample[i]) for i in packets]
        pairs = zip(packets, samples, strict=True)
        return iter([(float(self._time[i]), self.known[s]) for i, s in pairs])
