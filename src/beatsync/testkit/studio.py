"""Songs produced like a bedroom studio's: one-shot and loop samples arranged bar by bar.

The samples are those of the Debian package ``sonic-pi-samples``
(``/usr/share/sonic-pi/samples``: drum hits, loops, pads, basses, bells; 44.1 kHz FLAC). A song
is a seeded arrangement of sections (intro, verse, chorus, breakdown, outro) over four stems:
drums, bass, harmony and lead. Sections of one name are the same audio sample for sample, as a
production copies a chorus in its editor: a class recording that hears only a chorus matches
every copy of it, and only what lies around it tells them apart.

Names: ``studio:<style>:<variant>``. Styles:

* ``pop``: 120 bpm, a 16 s intro of a lone pad 18 dB below the rest, verse, chorus, an 8 s
  breakdown 14 dB down, the chorus again (an exact copy), verse, chorus (a copy),
  outro; 112 s.
* ``sparse``: 100 bpm, tabla and snaps only, with bars of rest; 77 s.
* ``tonal``: 72 bpm, pads and piano chords, no drums, slow attacks; 93 s.

Variants of one style share the bpm, key and arrangement's timing: ``full``; ``instrumental``
(the lead removed); ``remix`` (other drums, no bass, the harmony played by another
instrument, the same lead); ``other`` (another song of the same tempo and key: other chords,
melody and drum patterns).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from .music import Song, TrackSourceMissingError

__all__ = ["SAMPLES_DIR", "STUDIO_PREFIX", "studio_song"]

SAMPLES_DIR = Path("/usr/share/sonic-pi/samples")
STUDIO_PREFIX = "studio:"
_RATE = 44100
# Semitones above C of the chords' roots a progression draws from (C major: I ii iii IV V vi).
_ROOTS = (0, 2, 4, 5, 7, 9)
_MAJOR = (0, 4, 7)
_MINOR = (0, 3, 7)


@functools.lru_cache(maxsize=64)
def _sample(name: str) -> NDArray[np.float64]:
    path = SAMPLES_DIR / f"{name}.flac"
    if not path.is_file():
        raise TrackSourceMissingError(
            f"sample {name!r} not found at {path}: install the Debian package sonic-pi-samples"
        )
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            data = frame.to_ndarray().astype(np.float64)
            chunks.append(data.mean(axis=0) if frame.format.is_planar else data.reshape(-1))
    x = np.concatenate(chunks)
    if int(stream.rate) != _RATE:
        raise TrackSourceMissingError(f"sample {name!r} is not at {_RATE} Hz")
    out: NDArray[np.float64] = x / (np.max(np.abs(x)) + 1e-12)
    out.setflags(write=False)
    return out


def _pitched(name: str, semitones: float) -> NDArray[np.float64]:
    """The sample played ``semitones`` higher (read faster, as a sampler does)."""
    x = _sample(name)
    step = 2.0 ** (semitones / 12.0)
    pos = np.arange(0.0, x.size - 1, step)
    return np.interp(pos, np.arange(x.size), x)


def _fit(name: str, seconds: float) -> NDArray[np.float64]:
    """A loop read at the speed that makes it last ``seconds``."""
    x = _sample(name)
    n = round(seconds * _RATE)
    return np.interp(np.linspace(0.0, x.size - 1, n), np.arange(x.size), x)


@dataclass(frozen=True, slots=True)
class _Style:
    bpm: float
    sections: tuple[tuple[str, int, float], ...]  # (name, bars, level in dB)
    kicks: tuple[str, ...]
    snares: tuple[str, ...]
    hats: tuple[str, ...]
    pad: str
    keys: str
    bass: str
    lead: str
    drums: bool = True
    rest: float = 0.0  # chance that a bar of drums rests


_STYLES = {
    "pop": _Style(
        bpm=120.0,
        sections=(("intro", 8, -18.0), ("verse", 8, -3.0), ("chorus", 8, 0.0),
                  ("breakdown", 4, -14.0), ("chorus", 8, 0.0), ("verse2", 8, -3.0),
                  ("chorus", 8, 0.0), ("outro", 4, -8.0)),
        kicks=("bd_haus", "bd_klub", "bd_808"), snares=("sn_dub", "sn_generic", "elec_snare"),
        hats=("drum_cymbal_closed", "elec_tick"), pad="ambi_glass_hum", keys="ambi_piano",
        bass="bass_thick_c", lead="elec_bell",
    ),
    "sparse": _Style(
        bpm=100.0,
        sections=(("a", 8, 0.0), ("b", 8, 0.0), ("a", 8, 0.0), ("c", 4, -6.0), ("b", 4, 0.0)),
        kicks=("tabla_tun1", "tabla_ghe1", "tabla_dhec"), snares=("tabla_na", "perc_snap"),
        hats=("tabla_te1", "tabla_ke1"), pad="", keys="", bass="", lead="",
        rest=0.25,
    ),
    "tonal": _Style(
        bpm=72.0,
        sections=(("intro", 4, -10.0), ("verse", 8, 0.0), ("chorus", 8, 0.0), ("verse", 4, -3.0),
                  ("outro", 4, -12.0)),
        kicks=(), snares=(), hats=(), pad="ambi_choir", keys="ambi_piano", bass="ambi_drone",
        lead="ambi_lunar_land", drums=False,
    ),
}  # fmt: skip
_VARIANTS = ("full", "instrumental", "remix", "other")


def _place(out: NDArray[np.float64], x: NDArray[np.float64], at: float, gain: float) -> None:
    i = round(at * _RATE)
    if i >= out.size:
        return
    n = min(x.size, out.size - i)
    out[i : i + n] += gain * x[:n]


def _section(
    style: _Style, name: str, bars: int, variant: str, song_seed: int
) -> NDArray[np.float64]:
    """One section's four stems mixed, the same for the same name, style, variant and seed."""
    seed = zlib.crc32(f"{name}|{song_seed}".encode())
    rng = np.random.default_rng(seed)
    drum_rng = np.random.default_rng(seed + (7 if variant == "remix" else 0))
    beat = 60.0 / style.bpm
    bar = 4 * beat
    out = np.zeros(round((bars * bar + 4.0) * _RATE))
    progression = [int(rng.choice(_ROOTS)) for _ in range(4)]
    for b in range(bars):
        t0 = b * bar
        root = progression[b % 4]
        triad = _MINOR if root in (2, 4, 9) else _MAJOR
        if style.drums and drum_rng.random() >= style.rest:
            kit = 1 if variant == "remix" else 0
            kick = style.kicks[(kit + b // 4) % len(style.kicks)]
            pattern = drum_rng.random(16)
            for step in range(16):
                at = t0 + step * beat / 4
                if step % 8 == 0 or (pattern[step] < 0.15 and step % 2 == 0):
                    _place(out, _sample(kick), at, 0.9)
                if step % 8 == 4 or pattern[step] > 0.93:
                    _place(
                        out, _sample(style.snares[(step // 4 + kit) % len(style.snares)]), at, 0.6
                    )
                if step % 2 == 0 and pattern[step] > 0.3:
                    _place(out, _sample(style.hats[step // 2 % len(style.hats)]), at, 0.25)
        if style.bass and variant != "remix":
            bass = _pitched(style.bass, root - 12)[: round(bar * _RATE)]
            _place(out, bass * np.hanning(bass.size + 2)[1:-1] ** 0.2, t0, 0.5)
        if style.keys:
            keys = style.pad if variant == "remix" and style.pad else style.keys
            for k, step in enumerate(triad):
                hit = _pitched(keys, root + step)[: round(bar * _RATE)]
                _place(out, hit, t0 + (0.0 if name != "chorus" else k * beat / 2), 0.3)
        if style.pad and variant != "remix" and b % 2 == 0:
            pad = _pitched(style.pad, root - 5)[: round(2 * bar * _RATE)]
            fade = np.minimum(1.0, np.arange(pad.size) / (0.8 * _RATE))
            _place(out, pad * fade * fade[::-1], t0, 0.25)
        if style.lead and variant != "instrumental" and name not in ("intro", "outro"):
            notes = rng.choice([0, 2, 4, 7, 9, 12], size=8)
            for k, note in enumerate(notes):
                if rng.random() < 0.7:
                    _place(out, _pitched(style.lead, 12 + int(note)), t0 + k * beat / 2, 0.35)
    return out


@functools.lru_cache(maxsize=8)
def studio_song(name: str) -> Song:
    """The song ``studio:<style>:<variant>`` (see the module's docstring), stereo float32 at
    44.1 kHz, read-only (cached)."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] + ":" != STUDIO_PREFIX or parts[1] not in _STYLES:
        raise ValueError(f"unknown studio song {name!r}: expected studio:<style>:<variant>")
    style, variant = _STYLES[parts[1]], parts[2]
    if variant not in _VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(_VARIANTS)}")
    song_seed = 2 if variant == "other" else 1
    bar = 4 * 60.0 / style.bpm
    total = sum(bars for _, bars, _ in style.sections) * bar
    out = np.zeros(round((total + 4.0) * _RATE))
    at = 0.0
    for section, bars, level_db in style.sections:
        # Sections ring on into the next (a pad's release, a cymbal's decay).
        _place(out, _section(style, section, bars, variant, song_seed), at, 10 ** (level_db / 20))
        at += bars * bar
    # After the last section the song ends: its last notes' release fades over a second.
    end = round((total + 1.0) * _RATE)
    out = out[:end]
    out[-_RATE:] *= np.linspace(1.0, 0.0, _RATE)
    out *= 0.5 / (np.max(np.abs(out)) + 1e-12)
    samples = np.ascontiguousarray(np.stack([out, out], axis=1), dtype=np.float32)
    samples.setflags(write=False)
    return Song(name=name, samples=samples, rate=_RATE)
