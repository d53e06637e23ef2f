"""Decode audio by presentation time into a float32 array.

Each decoded frame is placed at the sample its timestamp names, so gaps in the stream stay silent
and the array's time axis is the file's own timeline. Only resampled audio is kept, never the
source's: memory is about twice the output (the resampled blocks, then the assembled array), so a
10-minute file at 16 kHz mono needs about 80 MB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidFormatError, NoAudioTrackError
from .probe import open_media

__all__ = ["Audio", "decode_audio", "decoded_frames"]

log = logging.getLogger(__name__)

ANALYSIS_RATE = 16_000


@dataclass(frozen=True, slots=True)
class Audio:
    """Samples on a file's timeline.

    ``samples`` has shape (n,) for mono or (channels, n); ``start`` is the time in seconds of
    ``samples[..., 0]`` on the file's presentation timeline.
    """

    samples: NDArray[np.float32]
    rate: int
    start: float

    @property
    def duration(self) -> float:
        return float(self.samples.shape[-1]) / self.rate

    @property
    def end(self) -> float:
        return self.start + self.duration


def decode_audio(
    path: str | os.PathLike[str],
    *,
    rate: int = ANALYSIS_RATE,
    mono: bool = True,
    start: float | None = None,
    end: float | None = None,
    on_frame: Callable[[av.AudioFrame], None] | None = None,
) -> Audio:
    """Decode the first audio stream, resampled, by presentation time.

    Parameters
    ----------
    path
        Media file with an audio stream.
    rate
        Output sample rate in Hz.
    mono
        Mix down to one channel (shape (n,)); otherwise keep two channels (shape (2, n)), a mono
        source being duplicated.
    start, end
        Decode only this span of the file's timeline, in seconds (``None``: from the first or to
        the last sample). The result starts at the first sample at or after ``start``.
    on_frame
        Also called with every decoded frame at its own rate, in decode order, before it is
        resampled (to keep the stream's own samples in the same pass).

    Returns
    -------
    Audio
        float32 samples in [-1, 1] and the time of the first one.
    """
    layout = "mono" if mono else "stereo"
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate, frame_size=8192)
    blocks: list[tuple[int, NDArray[np.float32]]] = []
    with open_media(path) as container:
        if not container.streams.audio:
            raise NoAudioTrackError("the file has no audio track", path=str(path))
        stream = container.streams.audio[0]
        time_base = stream.time_base or Fraction(1, stream.codec_context.sample_rate or 1)
        for other in container.streams:
            if other.index != stream.index:
                other.discard = av.stream.Discard.all
        if start is not None and start > 1.0:
            # Seek a little early: audio packets are not all key packets in every container.
            container.seek(int(max(0.0, start - 1.0) / time_base), stream=stream)
        failure: av.error.FFmpegError | None = None
        try:
            for frame in decoded_frames(container, stream):
                if end is not None and frame.pts is not None and frame.pts * time_base > end:
                    break
                if on_frame is not None:
                    on_frame(frame)
                for out in resampler.resample(frame):
                    blocks.append(_block(out, rate))
            for out in resampler.resample(None):
                blocks.append(_block(out, rate))
        except av.error.FFmpegError as exc:
            # The file itself cannot be read on (a truncated or damaged tail): keep what
            # decoded, as a player would.
            failure = exc
        if not blocks and failure is not None:
            msg = f"the audio cannot be decoded: {failure}"
            raise InvalidFormatError(msg, path=str(path)) from failure
    if not blocks:
        raise NoAudioTrackError("the audio track holds no samples", path=str(path))
    return _assemble(blocks, rate, channels=1 if mono else 2, start=start, end=end)


def decoded_frames(container: Any, stream: Any) -> Iterator[Any]:
    """The frames of ``stream``, skipping packets the decoder refuses.

    A damaged packet in the middle of a file (a phone's glitch, a bad copy) costs its own frame
    and, for video, the pictures that depend on it, as in a player; it does not end the stream.
    The file's own read errors (a truncated tail) still raise ``av.error.FFmpegError``.
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            log.debug("skipped an undecodable packet at pts %s", packet.pts)
            continue
        yield from frames


def _block(frame: av.AudioFrame, rate: int) -> tuple[int, NDArray[np.float32]]:
    data = np.asarray(frame.to_ndarray(), dtype=np.float32)  # packed flt: (1, n * channels)
    channels = len(frame.layout.channels)
    samples = data.reshape(-1, channels).T if channels > 1 else data
    tb = frame.time_base
    if frame.pts is None or tb is None:
        return -1, samples
    return (frame.pts * tb.numerator * rate + tb.denominator // 2) // tb.denominator, samples


def _assemble(
    blocks: list[tuple[int, NDArray[np.float32]]],
    rate: int,
    *,
    channels: int,
    start: float | None,
    end: float | None,
) -> Audio:
    # A block without a timestamp continues the previous one.
    placed: list[tuple[int, NDArray[np.float32]]] = []
    cursor = 0
    for index, samples in blocks:
        at = cursor if index < 0 else index
        placed.append((at, samples))
        cursor = at + samples.shape[1]
    first = placed[0][0]
    last = max(at + s.shape[1] for at, s in placed)
    lo = first if start is None else max(first, round(start * rate))
    hi = last if end is None else min(last, round(end * rate))
    out = np.zeros((channels, max(0, hi - lo)), dtype=np.float32)
    for at, samples in placed:
        a, b = max(at, lo), min(at + samples.shape[1], hi)
        if b > a:
            out[:, a - lo : b - lo] = samples[:, a - at : b - at]
    return Audio(out[0] if channels == 1 else out, rate, lo / rate)
