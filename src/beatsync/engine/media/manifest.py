"""The video manifest of an audio-first job: the class video's picture as sample tables, no pixels.

A client that keeps its video sends the sound and this manifest (the ``stts``/``ctts``/``stss``
and ``elst`` tables of the MP4's video track, as JSON). :func:`parse_manifest` checks every field
and the tables against each other and against the limits; :mod:`.movtime` turns the tables into
the timestamps FFmpeg's demuxer would give the file's packets. Times in the tables are integers
in the track's timescale; edit durations are in the movie's timescale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ManifestError

__all__ = [
    "MANIFEST_VERSION",
    "VIDEO_CODECS",
    "AudioTable",
    "Edit",
    "Manifest",
    "ManifestLimits",
    "VideoTable",
    "parse_manifest",
]

MANIFEST_VERSION = 1
# Sample entry (fourcc) → FFmpeg codec name.
VIDEO_CODECS = {
    "avc1": "h264",
    "avc3": "h264",
    "hvc1": "hevc",
    "hev1": "hevc",
    "av01": "av1",
    "vp09": "vp9",
}
_ROTATIONS = (0, 90, 180, 270)
_INT32 = 2**31
_UINT32 = 2**32
_MAX_EDITS = 64
_MAX_TIMESCALE = 10_000_000


@dataclass(frozen=True, slots=True)
class ManifestLimits:
    """What a manifest may describe: samples of video and seconds of media."""

    max_samples: int = 200_000
    max_duration: float = 600.0


@dataclass(frozen=True, slots=True)
class Edit:
    """One ``elst`` entry: ``duration`` in movie ticks, ``media_time`` in track ticks (−1 = an
    empty edit, a delay), ``rate`` the playback rate."""

    duration: int
    media_time: int
    rate: float


@dataclass(frozen=True, slots=True)
class VideoTable:
    """The video track: its codec, coded size, display rotation (degrees counter-clockwise) and
    sample tables as run-length ``(count, value)`` pairs, in the track's ``timescale``.

    ``sync`` holds the 0-based decode-order indices of keyframes (None: every sample is one).
    """

    track_id: int
    codec: str
    width: int
    height: int
    rotation: int
    timescale: int
    sample_count: int
    stts: tuple[tuple[int, int], ...]
    ctts: tuple[tuple[int, int], ...] | None
    sync: tuple[int, ...] | None
    edits: tuple[Edit, ...] | None

    @property
    def ffmpeg_codec(self) -> str:
        return VIDEO_CODECS[self.codec]


@dataclass(frozen=True, slots=True)
class AudioTable:
    """The audio track the sound was taken from (its timing is the uploaded audio's)."""

    track_id: int
    codec: str
    timescale: int
    sample_rate: int
    channels: int
    edits: tuple[Edit, ...] | None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checked manifest; ``duration`` is the movie's, in seconds."""

    version: int
    brand: str
    movie_timescale: int
    duration: float
    video: VideoTable
    audio: AudioTable


def _fail(where: str, what: str) -> ManifestError:
    return ManifestError(f"video_manifest.{where}: {what}")


def _obj(value: object, where: str, keys: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object")
    missing = keys - set(value)
    if missing:
        raise _fail(where, f"missing {', '.join(sorted(missing))}")
    unknown = set(value) - keys - optional
    if unknown:
        raise _fail(where, f"unknown field {', '.join(sorted(unknown))}")
    return value


def _int(value: object, where: str, lo: int, hi: int) -> int:
    # bool is an int in Python but never a count in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(where, "must be an integer")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is outside {lo}–{hi}")
    return value


def _list(value: object, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, "must be an array")
    if len(value) > limit:
        raise _fail(where, f"has {len(value)} entries; at most {limit}")
    return value


def _runs(value: object, where: str, limit: int, lo: int, hi: int) -> tuple[tuple[int, int], ...]:
    runs = []
    for i, entry in enumerate(_list(value, where, limit)):
        pair = _list(entry, f"{where}[{i}]", 2)
        if len(pair) != 2:
            raise _fail(f"{where}[{i}]", "must be [count, value]")
        runs.append(
            (_int(pair[0], f"{where}[{i}][0]", 1, limit), _int(pair[1], f"{where}[{i}][1]", lo, hi))
        )
    return tuple(runs)


def _edits(value: object, where: str) -> tuple[Edit, ...] | None:
    if value is None:
        return None
    edits = []
    for i, entry in enumerate(_list(value, where, _MAX_EDITS)):
        item = _list(entry, f"{where}[{i}]", 3)
        if len(item) != 3:
            raise _fail(f"{where}[{i}]", "must be [segment_duration, media_time, rate]")
        rate = item[2]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
            raise _fail(f"{where}[{i}][2]", "must be a number")
        edits.append(
            Edit(
                _int(item[0], f"{where}[{i}][0]", 0, 2**63 - 1),
                _int(item[1], f"{where}[{i}][1]", -1, 2**63 - 1),
                float(rate),
            )
        )
    return tuple(edits)


def _video(value: object, limits: ManifestLimits) -> VideoTable:
    keys = {"track_id", "codec", "width", "height", "rotation", "timescale", "sample_count"}
    keys |= {"stts", "ctts", "sync", "edits"}
    v = _obj(value, "video", keys, set())
    codec = v["codec"]
    if codec not in VIDEO_CODECS:
        raise _fail("video.codec", f"{codec!r} is not one of {', '.join(VIDEO_CODECS)}")
    rotation = _int(v["rotation"], "video.rotation", 0, 270)
    if rotation not in _ROTATIONS:
        raise _fail("video.rotation", f"{rotation} is not 0, 90, 180 or 270")
    count = _int(v["sample_count"], "video.sample_count", 1, limits.max_samples)
    stts = _runs(v["stts"], "video.stts", limits.max_samples, 0, _UINT32 - 1)
    ctts = None
    if v["ctts"] is not None:
        ctts = _runs(v["ctts"], "video.ctts", limits.max_samples, -_INT32, _INT32 - 1)
    for name, runs in (("stts", stts), ("ctts", ctts)):
        total = sum(n for n, _ in runs or ())
        if runs is not None and total != count:
            raise _fail(f"video.{name}", f"counts {total} samples, sample_count is {count}")
    sync = None
    if v["sync"] is not None:
        entries = _list(v["sync"], "video.sync", limits.max_samples)
        sync = tuple(_int(k, f"video.sync[{i}]", 0, count - 1) for i, k in enumerate(entries))
    table = VideoTable(
        track_id=_int(v["track_id"], "video.track_id", 1, _UINT32 - 1),
        codec=codec,
        width=_int(v["width"], "video.width", 16, 16384),
        height=_int(v["height"], "video.height", 16, 16384),
        rotation=rotation,
        timescale=_int(v["timescale"], "video.timescale", 1, _MAX_TIMESCALE),
        sample_count=count,
        stts=stts,
        ctts=ctts,
        sync=sync,
        edits=_edits(v["edits"], "video.edits"),
    )
    _check_tables(table)
    return table


def _check_tables(v: VideoTable) -> None:
    """Decode times increase, keyframes are listed in order, the edits can be followed."""
    if any(delta == 0 for n, delta in v.stts[:-1]):
        # A zero delta before the end stops decode time: two samples would decode at once.
        raise _fail("video.stts", "decode times must increase (a delta of 0 before the end)")
    if v.sync is not None:
        if not v.sync:
            raise _fail("video.sync", "names no keyframe (null means every sample is one)")
        if any(b <= a for a, b in zip(v.sync, v.sync[1:], strict=False)):
            raise _fail("video.sync", "indices must be sorted and distinct")
    for i, edit in enumerate(v.edits or ()):
        if edit.rate != 1.0:
            raise _fail(f"video.edits[{i}]", f"rate {edit.rate} is not supported (only 1)")
        if edit.media_time == -1 and any(e.media_time >= 0 for e in (v.edits or ())[:i]):
            raise _fail(f"video.edits[{i}]", "an empty edit after the media started")
        if edit.media_time >= 0 and any(e.media_time >= 0 for e in (v.edits or ())[:i]):
            # A second piece of media would repeat or skip samples: no single copy run.
            raise _fail(f"video.edits[{i}]", "more than one media edit is not supported")


def _audio(value: object) -> AudioTable:
    keys = {"track_id", "codec", "timescale", "sample_rate", "channels", "edits"}
    a = _obj(value, "audio", keys, set())
    if a["codec"] != "mp4a":
        raise _fail("audio.codec", f"{a['codec']!r} is not 'mp4a'")
    return AudioTable(
        track_id=_int(a["track_id"], "audio.track_id", 1, _UINT32 - 1),
        codec="mp4a",
        timescale=_int(a["timescale"], "audio.timescale", 1, _MAX_TIMESCALE),
        sample_rate=_int(a["sample_rate"], "audio.sample_rate", 8000, 192_000),
        channels=_int(a["channels"], "audio.channels", 1, 8),
        edits=_edits(a["edits"], "audio.edits"),
    )


def parse_manifest(data: object, *, limits: ManifestLimits | None = None) -> Manifest:
    """Check a manifest as decoded from JSON and return it typed.

    Parameters
    ----------
    data
        The ``video_manifest`` object.
    limits
        Most samples and longest duration (s) accepted.

    Raises
    ------
    ManifestError
        Naming the first field that is missing, mistyped, out of range or inconsistent.
    """
    limits = limits or ManifestLimits()
    keys = {"version", "brand", "movie_timescale", "duration", "video", "audio"}
    m = _obj(data, "", keys, set())
    if m["version"] != MANIFEST_VERSION or isinstance(m["version"], bool):
        raise _fail("version", f"{m['version']!r} is not {MANIFEST_VERSION}")
    brand = m["brand"]
    if not isinstance(brand, str) or len(brand) != 4 or not brand.isascii():
        raise _fail("brand", "must be a four-character code")
    duration = m["duration"]
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise _fail("duration", "must be a number of seconds")
    if not (math.isfinite(duration) and 0 < duration <= limits.max_duration):
        raise _fail("duration", f"{duration} s is outside 0–{limits.max_duration:g} s")
    manifest = Manifest(
        version=MANIFEST_VERSION,
        brand=brand,
        movie_timescale=_int(m["movie_timescale"], "movie_timescale", 1, _MAX_TIMESCALE),
        duration=float(duration),
        video=_video(m["video"], limits),
        audio=_audio(m["audio"]),
    )
    if manifest.video.track_id == manifest.audio.track_id:
        raise _fail("audio.track_id", "is the video's track id")
    media = sum(n * d for n, d in manifest.video.stts) / manifest.video.timescale
    if media > limits.max_duration:
        raise _fail("video.stts", f"lasts {media:.1f} s; the limit is {limits.max_duration:g} s")
    return manifest
