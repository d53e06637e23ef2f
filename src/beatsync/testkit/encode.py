"""Write generated pictures and sound to real files with PyAV.

Every video frame ``n`` is stamped with its index (:mod:`.framecode`) and presented at exactly
``n / fps``; audio starts at time 0 (the muxers' edit lists or codec-delay fields hide the encoder
priming, which the round-trip tests check).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from numpy.typing import NDArray

from .framecode import draw_frame_code

__all__ = ["Scene", "TailPlan", "VideoParams", "write_audio_file", "write_video_file"]

logger = logging.getLogger(__name__)

_FORMATS = {
    "mp4": "mp4",
    "mov": "mov",
    "mkv": "matroska",
    "m4a": "ipod",
    "ogg": "ogg",
    "mp3": "mp3",
}
_AUDIO_CODECS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame"}
# Samples per audio frame handed to the encoder; PyAV re-chunks to the codec's frame size.
_AUDIO_CHUNK = 1024
_BLACK = 16


@dataclass(frozen=True, slots=True)
class VideoParams:
    """How the picture is coded. ``bit_rate`` (bit/s) overrides the constant-quality ``crf``."""

    width: int = 320
    height: int = 240
    fps: Fraction = Fraction(30)
    codec: str = "h264"
    gop: int = 30
    b_frames: bool = False
    rotation: int = 0
    crf: int = 23
    bit_rate: int | None = None


@dataclass(frozen=True, slots=True)
class TailPlan:
    """Which frames show the scene: black before ``good_start``; from ``good_end`` on, black
    (``tail="black"``) or the last good picture repeated (``tail="frozen"``)."""

    good_start: int = 0
    good_end: int | None = None
    tail: str | None = None


class Scene:
    """Cheap moving content: a panning textured backdrop with grain, and three swaying boxes.

    Pictures are built straight in yuv420p so no colour conversion is paid per frame.
    """

    def __init__(self, width: int, height: int, rng: np.random.Generator, *, bank: int = 6):
        self.width, self.height = width, height
        self._pan = max(16, width // 8)
        yy, xx = np.mgrid[0:height, 0 : width + self._pan]
        base = 60 + 70 * (xx / (width + self._pan)) + 30 * np.sin(yy / max(8, height / 6))
        blobs = np.zeros_like(base)
        for _ in range(24):
            cx, cy = rng.uniform(0, width + self._pan), rng.uniform(0, height)
            r = rng.uniform(0.02, 0.08) * height
            blobs += rng.uniform(-60, 60) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        self._textures = [
            np.clip(base + blobs + rng.normal(0, 3, base.shape), 16, 235).astype(np.uint8)
            for _ in range(bank)
        ]
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)
        self._chroma[:, : width // 2] = 118
        # Three "dancers": bright or dark boxes swaying at their own pace, so that a good share
        # of the picture changes every frame and a frozen tail stands out.
        size = (max(8, width // 8), max(8, height // 2))
        self._dancers = [
            (size, value, rng.uniform(4.0, 9.0), rng.uniform(6.0, 14.0), rng.uniform(0, 6.3, 2))
            for value in (210, 30, 180)
        ]

    def frame(self, content: int | None, index: int) -> av.VideoFrame:
        """The yuv420p frame for scene time ``content`` (None = black), stamped with ``index``."""
        buf = np.empty((self.height * 3 // 2, self.width), dtype=np.uint8)
        luma = buf[: self.height]
        if content is None:
            luma.fill(_BLACK)
            buf[self.height :].fill(128)
        else:
            texture = self._textures[content % len(self._textures)]
            shift = (5 * content) % self._pan
            np.copyto(luma, texture[:, shift : shift + self.width])
            for (bw, bh), value, fx, fy, phase in self._dancers:
                x = int((self.width - bw) * (0.5 + 0.5 * np.sin(content / fx + phase[0])))
                y = int((self.height - bh) * (0.5 + 0.5 * np.sin(content / fy + phase[1])))
                luma[y : y + bh, x : x + bw] = value
            buf[self.height :] = self._chroma
        draw_frame_code(luma, index)
        return av.VideoFrame.from_ndarray(buf, format="yuv420p")


def _content_index(n: int, plan: TailPlan) -> int | None:
    if n < plan.good_start:
        return None
    if plan.good_end is not None and n >= plan.good_end:
        if plan.tail == "black":
            return None
        return max(plan.good_start, plan.good_end - 1)
    return n


def _add_video_stream(
    container: av.container.OutputContainer, p: VideoParams, fmt: str
) -> av.VideoStream:
    bframes = 2 if p.b_frames else 0
    gop = f"keyint={p.gop}:min-keyint={p.gop}:scenecut=0:bframes={bframes}"
    if p.codec == "h264":
        stream = container.add_stream("libx264", rate=p.fps)
        options: dict[str, object] = {"preset": "ultrafast", "x264-params": gop}
    elif p.codec == "hevc":
        stream = container.add_stream("libx265", rate=p.fps)
        options = {"preset": "ultrafast", "x265-params": f"log-level=error:{gop}"}
        if fmt in ("mp4", "mov"):
            stream.codec_tag = "hvc1"  # what phones write; Apple players refuse hev1
    else:
        raise ValueError(f"unknown video codec {p.codec!r}")
    stream.width, stream.height, stream.pix_fmt = p.width, p.height, "yuv420p"
    stream.time_base = 1 / p.fps
    if p.bit_rate:
        stream.bit_rate = p.bit_rate
        options.update(maxrate=str(p.bit_rate * 3 // 2), bufsize=str(p.bit_rate * 2))
    else:
        options["crf"] = str(p.crf)
    stream.options = options
    if p.rotation % 360:
        stream.set_display_rotation(p.rotation % 360)
    return stream


class _AudioFeed:
    """Encodes an (n, channels) float32 array into a stream, a chunk at a time, on demand."""

    def __init__(
        self,
        container: av.container.OutputContainer,
        codec: str,
        rate: int,
        samples: NDArray[np.float32],
        bit_rate: int,
    ):
        self.container = container
        self.stream = cast(
            "av.AudioStream",
            container.add_stream(_AUDIO_CODECS[codec], rate=rate, layout="stereo"),
        )
        self.stream.bit_rate = bit_rate
        # Quick encoder settings: generated media must build in seconds, and a phone's own
        # encoder is no better.
        if codec == "aac":
            self.stream.options = {"aac_coder": "fast"}
        elif codec == "mp3":
            self.stream.options = {"compression_level": "7"}
        self.rate = rate
        self.samples = np.ascontiguousarray(samples.T, dtype=np.float32)
        self.pos = 0

    def until(self, end: int) -> None:
        end = min(end, self.samples.shape[1])
        while self.pos < end:
            stop = min(self.pos + _AUDIO_CHUNK, self.samples.shape[1])
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self.samples[:, self.pos : stop]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = self.rate
            frame.pts = self.pos
            frame.time_base = Fraction(1, self.rate)
            self.container.mux(self.stream.encode(frame))
            self.pos = stop

    def finish(self) -> None:
        self.until(self.samples.shape[1])
        self.container.mux(self.stream.encode(None))


def write_video_file(
    path: Path,
    *,
    video: VideoParams,
    frames: int,
    scene: Scene,
    plan: TailPlan,
    audio: NDArray[np.float32],
    audio_rate: int,
    audio_bit_rate: int = 128_000,
) -> None:
    """Write ``frames`` stamped pictures and the stereo ``audio`` (n, 2) as AAC, interleaved.

    The container is chosen by ``path``'s suffix: .mp4, .mov or .mkv.
    """
    fmt = path.suffix.lstrip(".").lower()
    with av.open(str(path), "w", format=_FORMATS[fmt]) as container:
        vstream = _add_video_stream(container, video, fmt)
        feed = _AudioFeed(container, "aac", audio_rate, audio, audio_bit_rate)
        for n in range(frames):
            frame = scene.frame(_content_index(n, plan), n)
            frame.pts = n
            frame.time_base = 1 / video.fps
            container.mux(vstream.encode(frame))
            feed.until(round((n + 1) / video.fps * audio_rate))
        container.mux(vstream.encode(None))
        feed.finish()
    logger.debug("wrote %s: %d frames", path, frames)


def write_audio_file(
    path: Path, audio: NDArray[np.float32], rate: int, *, codec: str, bit_rate: int = 192_000
) -> None:
    """Write stereo ``audio`` (n, 2) as an audio-only file; the container follows the suffix
    (.m4a, .ogg, .mp3) and ``codec`` is ``aac``, ``opus`` or ``mp3``."""
    fmt = path.suffix.lstrip(".").lower()
    with av.open(str(path), "w", format=_FORMATS[fmt]) as container:
        feed = _AudioFeed(container, codec, rate, audio, bit_rate)
        feed.finish()
