"""Video sample timestamps as FFmpeg's MP4/MOV demuxer gives them, from the sample tables alone.

The server path reads packets from the file; an audio-first job has only the tables. For the two
to agree on every cut, :func:`video_timeline` follows libavformat's ``mov`` demuxer step by step:
decode times from ``stts``, the ``dts_shift`` that keeps negative composition offsets from
putting a frame before its decoding (taken from every ``ctts`` run but the last two, as the
demuxer does), then the edit list as ``mov_fix_index`` applies it: leading empty edits delay the
track, each media edit starts from the keyframe shown at or before its media time, samples shown
outside an edit are flagged for discarding (decoded, never shown) and get decode times just
before the edit's first sample, and decode times are shifted so the first shown frame is at the
track's start.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from .manifest import VideoTable

__all__ = ["VideoTimeline", "seek_packet", "video_timeline"]


@dataclass(frozen=True, slots=True)
class VideoTimeline:
    """Per packet, in the order the demuxer reads them (decode order): the source sample index,
    decode and presentation times (track ticks), keyframe and discard flags, duration (ticks).

    ``start``/``duration`` (seconds) are the stream's start time and length as FFmpeg reports
    them (without an edit list the start is the first packet's pts, as probing sets it);
    ``time_base`` is one track tick. ``shift`` (ticks) is how far decode times were moved back
    so that the first frame shows at the start (by the edit list, or without one by the
    largest negative composition offset): a seek lands on the last keyframe whose decode time
    plus ``shift`` is at or before its target.
    """

    sample: NDArray[np.int64]
    dts: NDArray[np.int64]
    pts: NDArray[np.int64]
    key: NDArray[np.bool_]
    discard: NDArray[np.bool_]
    duration_ticks: NDArray[np.int64]
    time_base: Fraction
    start: float
    duration: float
    shift: int = 0

    def __len__(self) -> int:
        return int(self.sample.shape[0])


def seek_packet(timeline: VideoTimeline, seconds: float) -> int:
    """The packet a backward seek to ``seconds`` reads first (PyAV's ``container.seek`` of
    ``int(seconds / time_base)`` on the stream): the last keyframe whose decode time plus
    ``shift`` is at or before the target, or the first packet when none is."""
    target = int(max(seconds, 0.0) / timeline.time_base) - timeline.shift
    i = int(np.searchsorted(timeline.dts, target, side="right")) - 1
    keys = np.flatnonzero(timeline.key[: i + 1]) if i >= 0 else np.zeros(0, np.int64)
    return int(keys[-1]) if len(keys) else 0


def _expand(runs: tuple[tuple[int, int], ...]) -> NDArray[np.int64]:
    counts = np.array([n for n, _ in runs], np.int64)
    values = np.array([v for _, v in runs], np.int64)
    return np.repeat(values, counts)


def _rescale(a: int, b: int, c: int) -> int:
    """``a·b/c`` rounded to nearest, halves away from zero (FFmpeg's ``av_rescale``)."""
    num = a * b
    q, r = divmod(abs(num), c)
    q += 1 if 2 * r >= c else 0
    return q if num >= 0 else -q


def video_timeline(video: VideoTable, movie_timescale: int) -> VideoTimeline:
    """Timestamps of every packet the demuxer returns for ``video``.

    Parameters
    ----------
    video
        A checked video table (:func:`~.manifest.parse_manifest`).
    movie_timescale
        Ticks per second of the edit durations (``mvhd``).
    """
    n = video.sample_count
    deltas = _expand(video.stts)
    ctts = _expand(video.ctts) if video.ctts is not None else np.zeros(n, np.int64)
    key = np.zeros(n, np.bool_)
    if video.sync is None:
        key[:] = True
    else:
        key[list(video.sync)] = True
    shift = 0
    if video.ctts is not None:
        # The demuxer skips the last two runs, which may hold a stray final offset.
        negatives = [-v for _, v in video.ctts[:-2] if v < 0]
        shift = max(negatives, default=0)
    # Decode times start at −shift, so that no frame is shown before it is decoded.
    dts = (np.concatenate([[0], np.cumsum(deltas)[:-1]]) - shift).astype(np.int64)
    if not video.edits:
        pts = dts + shift + ctts
        tb = Fraction(1, video.timescale)
        order = np.arange(n, dtype=np.int64)
        durations = np.append(deltas[:-1], deltas[-1] if n else 0).astype(np.int64)
        return VideoTimeline(
            order,
            dts,
            pts,
            key,
            np.zeros(n, np.bool_),
            durations,
            tb,
            float(int(pts[0]) * tb) if n else 0.0,
            float(int(deltas.sum()) * tb),
            shift,
        )
    return _edited(video, movie_timescale, dts, ctts, key, shift, int(deltas.sum()))


def _prev_key(
    dts: NDArray[np.int64], ctts: NDArray[np.int64], key: NDArray[np.bool_], target: int, shift: int
) -> int:
    """``find_prev_closest_index``: the last keyframe decoded at or before ``target − shift``,
    stepped back until one is also shown at or before it."""
    wanted = target - shift
    i = bisect.bisect_right(dts.tolist(), wanted) - 1
    while i >= 0 and not key[i]:
        i -= 1
    if i < 0:
        return -1
    while i > 0 and dts[i] == dts[i - 1]:
        if key[i - 1]:
            i -= 1
        else:
            break
    while i >= 0 and not (dts[i] + ctts[i] <= wanted and key[i]):
        i -= 1
    return i


def _edited(
    video: VideoTable,
    movie_timescale: int,
    old_dts: NDArray[np.int64],
    ctts: NDArray[np.int64],
    key: NDArray[np.bool_],
    shift: int,
    media_duration: int,
) -> VideoTimeline:
    n = video.sample_count
    samples: list[int] = []
    stamps: list[int] = []
    flags: list[bool] = []
    entry_end = 0
    empty = 0
    started_media = False
    min_pts = -1
    first_dts: int | None = None
    for edit in video.edits or ():
        duration = _rescale(edit.duration, video.timescale, movie_timescale)
        counter = entry_end
        entry_end += duration
        if not started_media and edit.media_time == -1:
            empty += duration
            continue
        started_media = True
        media_time = edit.media_time
        index = _prev_key(old_dts, ctts, key, media_time, shift)
        if index < 0:
            index = 0
        encountered = False
        after_key = False
        discarded: list[tuple[int, int]] = []  # (position in output, frame duration)
        for i in range(index, n):
            frame_duration = int(old_dts[i + 1] - old_dts[i]) if i + 1 < n else duration
            cts = int(old_dts[i]) + shift + int(ctts[i])
            outside = cts < media_time or cts >= duration + media_time
            if outside:
                if not encountered:
                    discarded.append((len(samples), frame_duration))
            else:
                corrected = counter + int(ctts[i]) + shift
                min_pts = corrected if min_pts < 0 else min(min_pts, corrected)
                if not encountered:
                    encountered = True
                    end = counter
                    for position, d in reversed(discarded):
                        end -= d
                        stamps[position] = end
            samples.append(i)
            stamps.append(counter)
            flags.append(outside)
            if first_dts is None and not outside:
                first_dts = counter
            if encountered:
                counter += frame_duration
            if cts + frame_duration >= duration + media_time and key[i]:
                if video.ctts is not None and not after_key:
                    # Trailing B-frames after this keyframe may still belong to the edit.
                    after_key = True
                    continue
                break
    min_pts -= empty
    dts = np.array(stamps, np.int64)
    if min_pts > 0:
        dts -= min_pts
    order = np.array(samples, np.int64)
    pts = dts + shift + ctts[order]
    tb = Fraction(1, video.timescale)
    durations = np.append(np.diff(dts), 0).astype(np.int64)
    if len(durations):
        durations[-1] = max(0, media_duration - int(old_dts[order[-1]]))
    start_dts = (first_dts or 0) - max(min_pts, 0)
    length = min(media_duration, entry_end - start_dts)
    return VideoTimeline(
        order,
        dts,
        pts,
        key[order],
        np.array(flags, np.bool_),
        durations,
        tb,
        float(empty * tb),
        float(length * tb),
        max(min_pts, 0),
    )
