"""The reference file of a case: a clean cut of a song, as a small music video or audio only.

References depend only on (song, cut, kind), not on the class recording, so cases that share
one build it once: it is kept under ``<directory>/.references`` and hard-linked into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy import signal as sps

from .encode import Scene, TailPlan, VideoParams, write_audio_file, write_video_file
from .music import Song

__all__ = ["REFERENCE_KINDS", "write_reference"]

logger = logging.getLogger(__name__)

# Kind → (file suffix, audio codec); ``video`` is an MP4 with H.264 and AAC.
REFERENCE_KINDS = {"video": ("mp4", "aac"), "m4a": ("m4a", "aac"), "opus": ("ogg", "opus"),
                   "mp3": ("mp3", "mp3")}  # fmt: skip


def write_reference(
    path: Path, song: Song, first: int, last: int, kind: str, *, version: int
) -> tuple[int, float]:
    """Put the reference ``song[first:last]`` of ``kind`` at ``path``.

    Returns
    -------
    (rate, start)
        The file's sample rate (Hz) and the presentation time of its first sample (s): 0, except
        for MP3, whose decoder reports the encoder delay as the stream's start.
    """
    key = f"{version}|{song.name}|{song.rate}|{first}|{last}|{kind}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    store = path.parent / ".references"
    store.mkdir(exist_ok=True)
    shared = store / f"{digest}.{REFERENCE_KINDS[kind][0]}"
    facts = store / f"{digest}.json"
    if not (shared.is_file() and facts.is_file()):
        # Write under a private name and rename, so parallel builders never see half a file.
        partial = store / f"{digest}.{os.getpid()}.part.{REFERENCE_KINDS[kind][0]}"
        rng = np.random.default_rng(int(digest, 16) % (1 << 63))
        rate = _encode(partial, song, first, last, kind, rng)
        start = _first_audio_time(partial)
        os.replace(partial, shared)
        facts.write_text(json.dumps({"key": key, "rate": rate, "start": start}))
        logger.debug("wrote reference %s for %s", shared.name, key)
    saved = json.loads(facts.read_text())
    path.unlink(missing_ok=True)
    try:
        os.link(shared, path)
    except OSError:
        shutil.copyfile(shared, path)
    return int(saved["rate"]), float(saved["start"])


def _encode(
    path: Path, song: Song, first: int, last: int, kind: str, rng: np.random.Generator
) -> int:
    audio = np.asarray(song.samples[first:last], dtype=np.float32)
    rate = song.rate
    if kind == "opus" and rate != 48000:
        g = math.gcd(48000, rate)
        audio = sps.resample_poly(audio, 48000 // g, rate // g, axis=0).astype(np.float32)
        rate = 48000
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0.98:
        audio = audio * (0.98 / peak)  # codec headroom; a gain does not move the truth
    if kind == "video":
        # A small, slow picture: only its sound matters, and it must build quickly.
        fps, width, height = 10, 256, 144
        frames = math.ceil(audio.shape[0] / rate * fps)
        params = VideoParams(width=width, height=height, fps=Fraction(fps), gop=2 * fps, crf=32)
        write_video_file(
            path, video=params, frames=frames, scene=Scene(width, height, rng), plan=TailPlan(),
            audio=audio, audio_rate=rate, audio_bit_rate=192_000,
        )  # fmt: skip
    else:
        write_audio_file(path, audio, rate, codec=REFERENCE_KINDS[kind][1])
    return rate


def _first_audio_time(path: Path) -> float:
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            return float(frame.time or 0.0)
    return 0.0
