"""The manifest validator: every lie is refused with a message naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from beatsync.engine.errors import ManifestError
from beatsync.engine.media.manifest import ManifestLimits, parse_manifest


def _manifest() -> dict[str, Any]:
    """Ten seconds at 30 fps with B-frames: IPBB…, a keyframe a second, an edit list."""
    return {
        "version": 1,
        "brand": "isom",
        "movie_timescale": 1000,
        "duration": 10.0,
        "video": {
            "track_id": 1,
            "codec": "avc1",
            "width": 1920,
            "height": 1080,
            "rotation": 90,
            "timescale": 19200,
            "sample_count": 300,
            "stts": [[300, 640]],
            "ctts": [[1, 1280], *[[1, 1920], [1, 0], [1, 640]] * 99, [1, 640], [1, 0]],
            "sync": list(range(0, 300, 30)),
            "edits": [[10000, 1280, 1]],
        },
        "audio": {
            "track_id": 2,
            "codec": "mp4a",
            "timescale": 48000,
            "sample_rate": 48000,
            "channels": 2,
            "edits": [[10000, 1024, 1]],
        },
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(_manifest())
    *parents, last = path.split(".")
    node = manifest
    for name in parents:
        node = node[name]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return manifest


_DELETE = object()


def test_an_honest_manifest_is_read() -> None:
    manifest = parse_manifest(_manifest())
    assert manifest.video.sample_count == 300
    assert manifest.video.ffmpeg_codec == "h264"
    assert manifest.video.sync == tuple(range(0, 300, 30))
    assert manifest.video.edits is not None
    assert manifest.video.edits[0].media_time == 1280
    assert manifest.audio.sample_rate == 48000


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("version", 2, "version"),
        ("brand", "isom2", "brand"),
        ("duration", "10", "duration"),
        ("duration", 0, "duration"),
        ("duration", 601.0, "duration"),
        ("movie_timescale", True, "movie_timescale: must be an integer"),
        ("video", [], "video: must be an object"),
        ("video.codec", "mjpg", "video.codec"),
        ("video.width", 8, "video.width"),
        ("video.rotation", 45, "video.rotation"),
        ("video.timescale", 0, "video.timescale"),
        ("video.sample_count", 299, "video.stts: counts 300 samples, sample_count is 299"),
        ("video.stts", [[299, 640]], "video.stts: counts 299"),
        ("video.stts", [[1, 640], [1, 0], [298, 640]], "decode times must increase"),
        ("video.stts", [[300, -640]], "video.stts[0][1]"),
        ("video.stts", [[300, 640, 1]], "video.stts[0]"),
        ("video.stts", [[300, 640.5]], "must be an integer"),
        ("video.ctts", [[299, 0]], "video.ctts: counts 299"),
        ("video.sync", [30, 0], "sorted"),
        ("video.sync", [0, 0], "sorted"),
        ("video.sync", [0, 300], "video.sync[1]: 300 is outside 0–299"),
        ("video.sync", [], "names no keyframe"),
        ("video.edits", [[10000, 1280, 2]], "rate 2.0"),
        ("video.edits", [[10000, 1280, 1], [100, -1, 1]], "empty edit after"),
        ("video.edits", [[5000, 0, 1], [5000, 1280, 1]], "more than one media edit"),
        ("video.edits", [[10000, -2, 1]], "video.edits[0][1]"),
        ("video.extra", 1, "unknown field extra"),
        ("video.ctts", _DELETE, "missing ctts"),
        ("audio.codec", "opus", "audio.codec"),
        ("audio.sample_rate", 100, "audio.sample_rate"),
        ("audio.track_id", 1, "is the video's track id"),
    ],
)
def test_a_lie_is_refused_by_name(path: str, value: Any, says: str) -> None:
    with pytest.raises(ManifestError) as refused:
        parse_manifest(_with(path, value))
    assert refused.value.code == "INVALID_MANIFEST"
    assert says in refused.value.message


def test_the_limits_are_the_callers() -> None:
    with pytest.raises(ManifestError, match="sample_count: 300 is outside 1–100"):
        parse_manifest(_manifest(), limits=ManifestLimits(max_samples=100))
    with pytest.raises(ManifestError, match="outside 0–5 s"):
        parse_manifest(_manifest(), limits=ManifestLimits(max_duration=5.0))
    long_video = _with("video.stts", [[300, 6400]])  # 100 s of samples in a 10 s movie
    with pytest.raises(ManifestError, match=r"lasts 100\.0 s"):
        parse_manifest(long_video, limits=ManifestLimits(max_duration=60.0))


def test_null_tables_mean_what_the_format_says() -> None:
    plain = _with("video.ctts", None)
    plain["video"]["sync"] = None
    plain["video"]["edits"] = None
    manifest = parse_manifest(plain)
    assert manifest.video.sync is None
    assert manifest.video.ctts is None
    assert manifest.video.edits is None
