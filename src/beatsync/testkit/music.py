"""Real music for generated test media: list and load tracks, repeat a section, play at a speed.

Two sources, both installed from package registries:

* ``etr/<stem>``: the Ogg Vorbis tracks of the Debian package ``extremetuxracer-data``
  (``/usr/share/games/etr/music``; 6–114 s, 44.1 kHz and one at 48 kHz);
* ``immich/<mood>/<stem>``: the Opus tracks of the PyPI package ``immich-memories-music``
  (about 30 s each, 48 kHz, one folder per mood).

``medley:<name>,<name>,…`` joins tracks into one long song that never repeats itself.

A :class:`Song` is the decoded stereo float32 signal; the song time of sample ``i`` is
``i / rate``. Everything downstream (references, class recordings, the truth) is defined on that
decoded signal, so the codec's own delays never enter the truth.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

__all__ = [
    "ETR_MUSIC_DIR",
    "LONG_MEDLEY",
    "MEDLEY_PREFIX",
    "OTHER_LONG_MEDLEY",
    "Song",
    "TrackSourceMissingError",
    "cubic_at",
    "list_tracks",
    "load_track",
    "medley",
    "play",
    "quieten",
    "repeat_section",
    "track_path",
]

logger = logging.getLogger(__name__)

ETR_MUSIC_DIR = Path("/usr/share/games/etr/music")
MEDLEY_PREFIX = "medley:"

# Two long songs that share no music, each track heard once: enough for a 10-minute class
# plus the reference's margin (the scaling benchmark's true pairs and refusals).
LONG_MEDLEY = MEDLEY_PREFIX + ",".join(
    [
        "etr/calmrace-ks",
        "etr/freezingpoint",
        "etr/spunkyrace-ks",
        "etr/credits1-cp",
        "etr/start1-jt",
        "etr/race1-jt",
        "immich/energetic/energetic_electronic_2",
        "immich/happy/happy_acoustic_1",
        "immich/energetic/energetic_acoustic_1",
        "immich/happy/happy_electronic_2",
        "immich/nostalgic/nostalgic_electronic_2",
    ]
)
OTHER_LONG_MEDLEY = MEDLEY_PREFIX + ",".join(
    f"immich/{mood}/{stem}"
    for mood, stems in (
        ("calm", ("calm_acoustic_1", "calm_acoustic_s411", "calm_electronic_s411")),
        ("tender", ("tender_acoustic_1", "tender_acoustic_2", "tender_electronic_1")),
        ("nostalgic", ("nostalgic_acoustic_1", "nostalgic_acoustic_s411")),
        ("happy", ("happy_acoustic_2", "happy_electronic_1", "happy_electronic_s411")),
        ("energetic", ("energetic_acoustic_2", "energetic_electronic_s411")),
        ("calm", ("calm_acoustic_s522", "calm_electronic_s522")),
        ("tender", ("tender_acoustic_s411", "tender_electronic_2", "tender_electronic_s411")),
        ("nostalgic", ("nostalgic_acoustic_s522", "nostalgic_electronic_s411")),
        ("happy", ("happy_acoustic_s411",)),
        ("energetic", ("energetic_acoustic_s522",)),
    )
    for stem in stems
)


class TrackSourceMissingError(FileNotFoundError):
    """A music source is not installed; the message names the package that provides it."""


@dataclass(frozen=True, slots=True, eq=False)
class Song:
    """A decoded track: ``samples`` is (n, 2) float32 at ``rate`` Hz, read-only."""

    name: str
    samples: NDArray[np.float32]
    rate: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return float(self.samples.shape[0] / self.rate)

    def mono(self) -> NDArray[np.float32]:
        """The channel average, shape (n,)."""
        out: NDArray[np.float32] = self.samples.mean(axis=1, dtype=np.float32)
        return out


def _immich_dir() -> Path:
    try:
        import immich_memories_music
    except ImportError as exc:
        raise TrackSourceMissingError(
            "immich/* tracks need the PyPI package immich-memories-music "
            "(pip install immich-memories-music)"
        ) from exc
    return Path(immich_memories_music.tracks_dir())


def list_tracks(source: str | None = None, *, min_duration: float = 0.0) -> tuple[str, ...]:
    """Names of the installed tracks, sorted.

    Parameters
    ----------
    source
        ``"etr"``, ``"immich"`` or None for both.
    min_duration
        Only tracks at least this long (seconds); needs a quick read of each file's header.
    """
    names: list[str] = []
    if source in (None, "etr") and ETR_MUSIC_DIR.is_dir():
        names += [f"etr/{p.stem}" for p in ETR_MUSIC_DIR.glob("*.ogg")]
    if source in (None, "immich"):
        try:
            root = _immich_dir()
        except TrackSourceMissingError:
            if source == "immich":
                raise
        else:
            names += [f"immich/{p.parent.name}/{p.stem}" for p in root.glob("*/*.opus")]
    if source == "etr" and not names:
        raise TrackSourceMissingError(
            f"no etr tracks in {ETR_MUSIC_DIR}: install the Debian package extremetuxracer-data"
        )
    if min_duration > 0:
        names = [n for n in names if _header_duration(track_path(n)) >= min_duration]
    return tuple(sorted(names))


def track_path(name: str) -> Path:
    """The file behind a track name: ``etr/race1-jt``, ``immich/happy/happy_acoustic_1``."""
    parts = name.split("/")
    if parts[0] == "etr" and len(parts) == 2:
        path = ETR_MUSIC_DIR / f"{parts[1]}.ogg"
        package = "the Debian package extremetuxracer-data"
    elif parts[0] == "immich" and len(parts) == 3:
        path = _immich_dir() / parts[1] / f"{parts[2]}.opus"
        package = "the PyPI package immich-memories-music"
    else:
        raise ValueError(
            f"unknown track name {name!r}: expected etr/<stem> or immich/<mood>/<stem>"
        )
    if not path.is_file():
        raise TrackSourceMissingError(f"track {name!r} not found at {path}: install {package}")
    return path


def _header_duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return float((container.duration or 0) / av.time_base)


@functools.lru_cache(maxsize=16)
def load_track(name: str) -> Song:
    """Decode a track to stereo float32 at its own sample rate (cached; arrays are read-only).

    ``medley:<name>,<name>,…`` is the named tracks one after another (see :func:`medley`).
    """
    if name.startswith(MEDLEY_PREFIX):
        return medley(tuple(name.removeprefix(MEDLEY_PREFIX).split(",")))
    path = track_path(name)
    chunks: list[NDArray[np.float32]] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = int(stream.rate)
        for frame in container.decode(stream):
            data = frame.to_ndarray().astype(np.float32)
            data = data.T if frame.format.is_planar else data.reshape(-1, frame.layout.nb_channels)
            if data.shape[1] == 1:
                data = np.repeat(data, 2, axis=1)
            chunks.append(data[:, :2])
    samples = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    samples.setflags(write=False)
    logger.debug("decoded %s: %d samples at %d Hz", name, samples.shape[0], rate)
    return Song(name=name, samples=samples, rate=rate)


def medley(names: tuple[str, ...], *, crossfade: float = 0.5) -> Song:
    """The tracks one after another, each faded into the next over ``crossfade`` seconds, at
    the first track's sample rate: a long song that never repeats itself, for measuring how the
    cost grows with duration. Named ``medley:<name>,<name>,…`` like the name that loads it.
    """
    if not names:
        raise ValueError("a medley needs at least one track")
    songs = [load_track(n) for n in names]
    rate = songs[0].rate
    fade = round(crossfade * rate)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
    out = songs[0].samples.copy()
    for song in songs[1:]:
        samples = song.samples
        if song.rate != rate:
            g = math.gcd(rate, song.rate)
            samples = sps.resample_poly(samples, rate // g, song.rate // g, axis=0)
            samples = samples.astype(np.float32)
        n = min(fade, out.shape[0], samples.shape[0])
        joined = out[-n:] * (1.0 - ramp[-n:]) + samples[:n] * ramp[:n]
        out = np.concatenate([out[:-n], joined, samples[n:]])
    out = np.ascontiguousarray(out, dtype=np.float32)
    out.setflags(write=False)
    return Song(name=MEDLEY_PREFIX + ",".join(names), samples=out, rate=rate)


def repeat_section(song: Song, start: float, end: float, *, times: int = 2) -> Song:
    """The song with ``[start, end)`` (seconds) played ``times`` times in a row, then the rest.

    The joins are butt splices, as a DJ edit of a loop would be. The result is named
    ``<name>+repeat(<start>-<end>)x<times>``.
    """
    i0, i1 = round(start * song.rate), round(end * song.rate)
    if not 0 <= i0 < i1 <= song.samples.shape[0] or times < 1:
        raise ValueError(f"bad section [{start}, {end}) x{times} of a {song.duration:.2f} s song")
    section = song.samples[i0:i1]
    parts = [song.samples[:i1], *([section] * (times - 1)), song.samples[i1:]]
    samples = np.ascontiguousarray(np.concatenate(parts))
    samples.setflags(write=False)
    name = f"{song.name}+repeat({start:g}-{end:g})x{times}"
    return Song(name=name, samples=samples, rate=song.rate)


def quieten(
    song: Song, start: float, end: float, *, db: float, before: float = 0.0, after: float = 0.0
) -> Song:
    """The song ``db`` decibels quieter from ``start`` to ``end`` (song seconds).

    The level glides down over ``before`` seconds ahead of ``start`` and back up over ``after``
    seconds past ``end``, linearly in decibels as a fader would; a side without a glide is a
    step. A quiet intro where the class starts the song is ``after`` only; a quiet outro where it
    stops, ``before`` only. The result is named ``<name>+quiet(<start>-<end>,-<db>dB)``.
    """
    if not 0 <= start < end or db < 0 or before < 0 or after < 0:
        raise ValueError(f"bad quiet passage [{start}, {end}) at -{db} dB")
    t = np.arange(song.samples.shape[0], dtype=np.float64) / song.rate
    depth = np.where((t >= start) & (t < end), 1.0, 0.0)
    if before > 0:
        depth = np.maximum(depth, np.where(t < start, 1.0 - (start - t) / before, 0.0))
    if after > 0:
        depth = np.maximum(depth, np.where(t >= end, 1.0 - (t - end) / after, 0.0))
    gain = 10.0 ** (-db * np.clip(depth, 0.0, 1.0) / 20.0)
    samples = np.ascontiguousarray(song.samples * gain[:, None].astype(np.float32))
    samples.setflags(write=False)
    name = f"{song.name}+quiet({start:g}-{end:g},-{db:g}dB)"
    return Song(name=name, samples=samples, rate=song.rate)


def play(
    mono: NDArray[np.float32],
    song_rate: int,
    *,
    rate: int,
    length: int,
    start: float,
    end: float,
    song_start: float,
    speed: float,
) -> NDArray[np.float32]:
    """What a loudspeaker plays on a timeline of ``length`` samples at ``rate`` Hz.

    Output time ``t`` (seconds) in ``[start, end)`` carries song time
    ``song_start + speed × (t − start)``; elsewhere there is silence. Varispeed: pitch follows
    speed, like a tape or a drifting clock. The song is upsampled ×2 with a polyphase filter and
    then read with cubic (Keys) interpolation, which is zero-phase, so no timing bias is added.
    """
    out = np.zeros(length, dtype=np.float32)
    j0 = max(0, int(np.ceil(start * rate)))
    j1 = min(length, int(np.ceil(end * rate)))
    if j1 <= j0:
        return out
    t = np.arange(j0, j1, dtype=np.float64) / rate
    pos = (song_start + speed * (t - start)) * song_rate
    # Only the part of the song that is played, with a margin for the filters' reach.
    margin = song_rate // 10
    lo = max(0, int(np.floor(pos[0])) - margin)
    hi = min(mono.size, int(np.ceil(pos[-1])) + margin)
    up = sps.resample_poly(mono[lo:hi].astype(np.float64), 2, 1)
    # In blocks: the interpolation's temporaries for a whole 3-minute song would take a gigabyte.
    block = 1 << 19
    for k in range(0, pos.size, block):
        part = (pos[k : k + block] - lo) * 2.0
        out[j0 + k : j0 + k + part.size] = cubic_at(up, part)
    return out


def cubic_at(x: NDArray[np.float64], pos: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` read at fractional sample indices ``pos`` by Keys cubic convolution (a = −0.5).

    Zero-phase, so it moves no timing; reads outside ``x`` are zero.
    """
    padded = np.concatenate([np.zeros(2), x, np.zeros(3)])
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    idx = np.clip(base + 2, 1, padded.size - 3)
    inside = (base >= -1) & (base <= x.size)
    p0, p1, p2, p3 = padded[idx - 1], padded[idx], padded[idx + 1], padded[idx + 2]
    # The Keys kernel in Horner form: fewer passes over these long arrays.
    val: NDArray[np.float64] = p1 + 0.5 * frac * (
        p2 - p0 + frac * (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3 + frac * (3.0 * (p1 - p2) + p3 - p0))
    )
    val[~inside] = 0.0
    return val
