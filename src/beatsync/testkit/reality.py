"""Class recordings made the way real rooms and phones make them, independently of :mod:`.cases`.

A :class:`Take` is one class filming one routine. The song (a :mod:`.music` track or a
:mod:`.studio` song) is played through a loudspeaker that band-limits and distorts it, in a
shoebox room simulated by PyPI ``pyroomacoustics`` (every image source up to the order it can
afford, then a tail whose highs die faster than its lows), with the dancers shadowing the direct
sound; a teacher counts "five, six, seven, eight" on the beat and the class claps and steps on
it; the phone band-limits its microphone (a high-pass near 150 Hz, a roll-off above 7 kHz), rides
its gain with a compressor (fast attack, slow release) and clips. The class may play an edit of
the song (pieces with jumps either way, short crossfades), stop the music and restart it from
where it stopped, play it at another speed (resampled, or time-stretched with the pitch kept)
on a phone whose clock drifts, start the recording after the music started or stop it before
the music ends.

The truth follows :mod:`.cases`' definitions: dance time is the direct sound's at the phone
(the room's propagation delay is taken out; every reflection comes later); piece k holds the
dance interval ``[s_k, e_k)`` with ``bgm_time = a_k + b·dance_time``, b = speed × (1 + drift).
When the class stops the music, the piece before the stop ends at the stop and the next starts
at the restart (the gap between them has no music); its seam is the restart. The loudspeaker's
and microphone's filters are zero-phase, so they shape the sound without moving it.

``accept`` says what a correct engine does with the pair: ``yes`` (sync it), ``no`` (refuse
it: another song) or ``either`` (a remix: the benchmark reports what happens).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from .cases import KIT_VERSION, BuiltCase, CaseSpec, Truth, _truth_from_json
from .encode import Scene, TailPlan, VideoParams, write_video_file
from .grains import overlap_add
from .music import Song, load_track, play
from .reference import write_reference
from .room import speech
from .studio import STUDIO_PREFIX, studio_song

__all__ = ["Take", "TakeRoom", "build_take", "load_any"]

logger = logging.getLogger(__name__)

SPEED_OF_SOUND = 343.0
_RATE = 48000


@dataclass(frozen=True, slots=True)
class TakeRoom:
    """Where the class dances and how the phone hears it (lengths in metres, levels in dB).

    ``shadow_db``: loss of the direct sound through the dancers; ``snr_db``: crowd noise (pink
    and footsteps on the beat) against the music at the phone; ``teacher_db``: the teacher's
    counting against the music (None: silent); ``claps``: the class claps on the beat;
    ``speaker_drive``: the loudspeaker's overdrive (1 = clean); ``agc``: the phone's
    compressor; ``clip_db``: gain into the phone's converter before it clips (None: no clip).
    """

    size: tuple[float, float, float] = (10.0, 7.0, 3.2)
    speaker: tuple[float, float, float] = (0.6, 3.5, 1.4)
    phone: tuple[float, float, float] = (8.0, 6.7, 1.0)
    rt60: float = 1.2
    shadow_db: float = 6.0
    snr_db: float = 0.0
    teacher_db: float | None = 0.0
    claps: bool = True
    speaker_drive: float = 2.0
    agc: bool = True
    clip_db: float | None = 6.0


@dataclass(frozen=True, slots=True)
class Take:
    """One class recording. Songs are :func:`load_any` names; ``ref_song`` None = ``song``.

    ``pieces``: ``(song_from, dance_seconds, stop_after)`` each; ``stop_after`` > 0 is a
    stop of that many seconds after the piece, the next piece restarting where it stopped (its
    own ``song_from`` is then ignored). ``music_start`` is the dance time the music starts
    (negative: the recording started after it); ``tail`` the seconds recorded after it ends
    (negative: the recording stops that long before). ``speed``, ``pitch_kept``, ``drift_ppm``,
    ``crossfade`` (seconds at each jump), ``ref_start``/``ref_end`` (the reference's cut of
    the song, seconds; None = the end).
    """

    name: str
    seed: int
    song: str
    pieces: tuple[tuple[float, float, float], ...]
    ref_song: str | None = None
    accept: str = "yes"
    music_start: float = 2.0
    tail: float = 2.0
    speed: float = 1.0
    pitch_kept: bool = False
    drift_ppm: float = 0.0
    crossfade: float = 0.0
    ref_start: float = 0.0
    ref_end: float | None = None
    room: TakeRoom = dataclasses.field(default_factory=TakeRoom)
    bpm: float = 120.0


def load_any(name: str) -> Song:
    """A :mod:`.studio` song (``studio:…``) or a :mod:`.music` track."""
    return studio_song(name) if name.startswith(STUDIO_PREFIX) else load_track(name)


def _starts(take: Take) -> tuple[list[float], list[float], list[float]]:
    """Dance start, dance end and song start of every piece (the stops resolved)."""
    b = take.speed * (1 + take.drift_ppm * 1e-6)
    starts: list[float] = []
    ends: list[float] = []
    songs: list[float] = []
    at = take.music_start
    for k, (song_from, seconds, _) in enumerate(take.pieces):
        stopped = k > 0 and take.pieces[k - 1][2] > 0
        songs.append(songs[-1] + b * (ends[-1] - starts[-1]) if stopped else song_from)
        starts.append(at)
        ends.append(at + seconds)
        at += seconds + take.pieces[k][2]
    return starts, ends, songs


def _loudspeaker(take: Take, song: Song, length: int) -> NDArray[np.float64]:
    """What the loudspeaker is fed on the recording's timeline, at ``_RATE``."""
    b = take.speed * (1 + take.drift_ppm * 1e-6)
    mono = song.mono()
    clock = 1 + take.drift_ppm * 1e-6
    if take.pitch_kept:
        # The practice player stretches the whole song; its time s carries song time speed·s.
        mono = overlap_add(mono, take.speed, song.rate, frame=0.06, seed=take.seed)
    out = np.zeros(length)
    t = np.arange(length) / _RATE
    starts, ends, songs = _starts(take)
    fade = take.crossfade
    for k, (s, e, p) in enumerate(zip(starts, ends, songs, strict=True)):
        jump_in = k > 0 and take.pieces[k - 1][2] == 0
        jump_out = k < len(starts) - 1 and take.pieces[k][2] == 0
        lo = s - fade / 2 if jump_in else s
        hi = e + fade / 2 if jump_out else e
        lo_c, hi_c = max(lo, -60.0), min(hi, length / _RATE)
        at_song = p + b * (lo_c - s)
        if take.pitch_kept:
            part = play(mono, song.rate, rate=_RATE, length=length, start=lo_c, end=hi_c,
                        song_start=at_song / take.speed, speed=clock)  # fmt: skip
        else:
            part = play(mono, song.rate, rate=_RATE, length=length, start=lo_c, end=hi_c,
                        song_start=at_song, speed=b)  # fmt: skip
        gain = np.ones(length)
        # A crossfade at a jump; a player's 20 ms fade where the class stops or restarts it.
        edge_in = fade if jump_in and fade > 0 else 0.02
        edge_out = fade if jump_out and fade > 0 else 0.02
        if k > 0 or s > 0:
            gain *= np.sin(0.5 * np.pi * np.clip((t - lo) / edge_in, 0.0, 1.0)) ** 2
        if k < len(starts) - 1 or take.tail > 0:
            gain *= np.sin(0.5 * np.pi * np.clip((hi - t) / edge_out, 0.0, 1.0)) ** 2
        out += part * gain
    # A loudspeaker pushed hard: no deep bass, no air, and its cone saturates.
    sos = sps.butter(2, [90.0, 11000.0], btype="bandpass", fs=_RATE, output="sos")
    out = sps.sosfiltfilt(sos, out)
    drive = take.room.speaker_drive
    peak = float(np.max(np.abs(out))) or 1.0
    driven: NDArray[np.float64] = np.tanh(drive * out / peak) / math.tanh(drive)
    return driven


def _room_response(room: TakeRoom, rng: np.random.Generator) -> NDArray[np.float64]:
    """Loudspeaker-to-phone response at ``_RATE`` with the direct sound at sample 0."""
    import pyroomacoustics as pra

    absorption, order = pra.inverse_sabine(room.rt60, list(room.size))
    order = min(order, 24)

    def simulate(max_order: int) -> NDArray[np.float64]:
        box = pra.ShoeBox(list(room.size), fs=_RATE, materials=pra.Material(absorption),
                          max_order=max_order, air_absorption=False)  # fmt: skip
        box.add_source(list(room.speaker))
        box.add_microphone(list(room.phone))
        box.compute_rir()
        return np.asarray(box.rir[0][0], dtype=np.float64)

    full, direct = simulate(order), simulate(0)
    n = max(full.size, direct.size)
    full, direct = np.pad(full, (0, n - full.size)), np.pad(direct, (0, n - direct.size))
    full -= (1.0 - 10 ** (-room.shadow_db / 20)) * direct
    # Where the modelled orders run out, a tail decaying at RT60 (highs faster) continues.
    dist = math.dist(room.speaker, room.phone)
    at = dist / SPEED_OF_SOUND * _RATE + pra.constants.get("frac_delay_length") // 2
    horizon = int(np.flatnonzero(np.abs(full) > 1e-6)[-1])
    length = int(at) + int(1.5 * room.rt60 * _RATE)
    ir = np.pad(full, (0, max(0, length - n)))[:length]
    tail_from = max(int(at) + 1, horizon - int(0.05 * _RATE))
    if tail_from < length - 1:
        k = np.arange(length - tail_from)
        level = math.sqrt(float(np.mean(ir[tail_from - 2400 : tail_from] ** 2)) + 1e-12)
        noise = rng.standard_normal(k.size)
        lows = sps.sosfilt(sps.butter(2, 2000.0, fs=_RATE, output="sos"), noise)
        decay = np.exp(-6.908 * k / _RATE / room.rt60)
        ramp = np.minimum(1.0, k / (0.05 * _RATE))
        tail = (lows + 0.5 * (noise - lows) * decay) * decay * level / (np.std(lows) + 1e-12)
        ir[tail_from:] = ir[tail_from:] * (1 - ramp) + tail * ramp
    # Take the propagation delay out, exactly: shift by its fraction in the frequency domain.
    whole, frac = int(at), at - int(at)
    ir = ir[whole:]
    spec = np.fft.rfft(ir, 2 * ir.size)
    freqs = np.fft.rfftfreq(2 * ir.size)
    shifted = np.fft.irfft(spec * np.exp(2j * np.pi * freqs * frac), 2 * ir.size)[: ir.size]
    out: NDArray[np.float64] = shifted / (abs(shifted[0]) + 1e-12) * 10 ** (-room.shadow_db / 20)
    return out


def _beats(take: Take, length: int) -> NDArray[np.float64]:
    """Dance times of the beats the class hears (from each piece's own song time)."""
    period = 60.0 / take.bpm / (take.speed * (1 + take.drift_ppm * 1e-6))
    out: list[float] = []
    for s, e, p in zip(*_starts(take), strict=True):
        beat = 60.0 / take.bpm
        first = s + (math.ceil(p / beat) * beat - p) * period / beat
        out.extend(np.arange(first, min(e, length / _RATE), period))
    return np.asarray([t for t in out if t >= 0])


def _crowd(take: Take, rng: np.random.Generator, length: int) -> tuple[NDArray[np.float64], ...]:
    """Noise (pink hum and footsteps), claps and the teacher's counting, each unit RMS."""
    beats = _beats(take, length)
    pink = sps.lfilter([0.05, -0.09, 0.05, -0.004], [1, -2.49, 2.02, -0.52],
                       rng.standard_normal(length))  # fmt: skip
    steps = np.zeros(length)
    claps = np.zeros(length)
    thump = np.exp(-np.arange(int(0.08 * _RATE)) / (0.015 * _RATE)) * rng.standard_normal(
        int(0.08 * _RATE)
    )
    thump = sps.lfilter(*sps.butter(2, 300.0, fs=_RATE), thump)
    clap = np.exp(-np.arange(int(0.05 * _RATE)) / (0.006 * _RATE))
    for t in beats:
        for _ in range(3):  # dancers land a few ms apart
            i = int((t + rng.normal(0.0, 0.03)) * _RATE)
            if 0 <= i < length - thump.size:
                steps[i : i + thump.size] += thump * rng.uniform(0.5, 1.0)
        if take.room.claps and rng.random() < 0.5:
            i = int((t + rng.normal(0.0, 0.01)) * _RATE)
            if 0 <= i < length - clap.size:
                claps[i : i + clap.size] += clap * rng.standard_normal(clap.size)
    counting = np.zeros(length)
    bars = beats[::4]
    for j, t in enumerate(bars):
        if j % 4 == 3:  # the teacher counts the class in every fourth bar
            phrase = ("five six seven eight", "one two three four")[j // 4 % 2]
            word = speech(phrase, rate=_RATE).astype(np.float64)
            i = int(t * _RATE)
            n = min(word.size, length - i)
            counting[i : i + n] += word[:n]
    unit = [x / (np.std(x) + 1e-12) for x in (pink + 0.7 * steps / (np.std(steps) + 1e-12),
                                                claps, counting)]  # fmt: skip
    return unit[0], unit[1], unit[2]


def _phone(x: NDArray[np.float64], room: TakeRoom) -> NDArray[np.float64]:
    """The phone's microphone (150 Hz high-pass, roll-off above 7 kHz), its gain control (a
    compressor: 10 ms attack, 600 ms release, 4:1 above −30 dBFS, 12 dB make-up) and its
    converter's clipping."""
    sos = sps.butter(2, [150.0, 7000.0], btype="bandpass", fs=_RATE, output="sos")
    x = sps.sosfiltfilt(sos, x)
    x = x / (np.max(np.abs(x)) + 1e-12) * 0.5
    if room.agc:
        hop = _RATE // 1000
        blocks = x.size // hop + 1
        padded = np.zeros(blocks * hop)
        padded[: x.size] = x
        level = np.sqrt(np.mean(padded.reshape(blocks, hop) ** 2, axis=1)) + 1e-9
        attack, release = math.exp(-1.0 / 10.0), math.exp(-1.0 / 600.0)
        env = np.empty(blocks)
        state = float(level[0])
        for i, v in enumerate(level.tolist()):
            coef = attack if v > state else release
            state = coef * state + (1.0 - coef) * v
            env[i] = state
        over = np.maximum(20 * np.log10(env) + 30.0, 0.0)
        gain_db = 12.0 - over * (1.0 - 1.0 / 4.0)
        x = x * 10 ** (np.interp(np.arange(x.size) / hop, np.arange(blocks), gain_db) / 20)
    if room.clip_db is None:
        peak: float = float(np.max(np.abs(x))) or 1.0
        return x * min(1.0, 0.9 / peak)
    x = x / (np.max(np.abs(x)) + 1e-12) * 10 ** (room.clip_db / 20)
    return np.clip(x, -1.0, 1.0)


def build_take(take: Take, directory: Path | str, *, reuse: bool = True) -> BuiltCase:
    """Record ``take`` in ``directory``: ``<name>.dance.mp4`` (320×240, 30 fps, frames stamped
    with their index; 48 kHz AAC), ``<name>.bgm.m4a`` and ``<name>.truth.json``; reused when
    an identical take was built before."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dance = directory / f"{take.name}.dance.mp4"
    bgm = directory / f"{take.name}.bgm.m4a"
    manifest = directory / f"{take.name}.truth.json"
    take_json = json.loads(json.dumps(dataclasses.asdict(take)))
    spec = CaseSpec(name=take.name, seed=take.seed, track=take.song)  # names the case only
    if reuse and manifest.is_file() and dance.is_file() and bgm.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("kit") == KIT_VERSION and saved.get("take") == take_json:
            return BuiltCase(dance, bgm, _truth_from_json(saved["truth"]), spec)

    rng = np.random.default_rng(take.seed)
    song = load_any(take.song)
    ref_song = load_any(take.ref_song) if take.ref_song else song
    starts, ends, songs = _starts(take)
    b = take.speed * (1 + take.drift_ppm * 1e-6)
    for p, s, e in zip(songs, starts, ends, strict=True):
        if p - take.crossfade < 0 or p + b * (e - s + take.crossfade) > song.duration:
            raise ValueError(f"take {take.name}: piece from {p} s runs outside the song")
    fps = 30
    frames = round((ends[-1] + take.tail) * fps)
    duration = frames / fps
    length = round(duration * _RATE)

    feed = _loudspeaker(take, song, length)
    ir = _room_response(take.room, rng)
    heard = sps.oaconvolve(feed, ir)[:length]
    t = np.arange(length) / _RATE
    playing = np.zeros(length, dtype=bool)
    for s, e in zip(starts, ends, strict=True):
        playing |= (t >= s) & (t < e)
    power = float(np.mean(heard[playing] ** 2))
    noise, claps, counting = _crowd(take, rng, length)
    room = take.room
    mix = heard + noise * math.sqrt(power * 10 ** (-room.snr_db / 10))
    mix += sps.oaconvolve(claps, ir)[:length] * math.sqrt(power * 10 ** (-6.0 / 10))
    if room.teacher_db is not None:
        # The teacher stands by the phone: the direct voice, then the room.
        voice = counting + 0.3 * sps.oaconvolve(counting, ir)[:length]
        mix += (
            voice
            / (np.std(voice[playing]) + 1e-12)
            * math.sqrt(power * 10 ** (room.teacher_db / 10))
        )
    recorded = _phone(mix, room).astype(np.float32)
    write_video_file(
        dance, video=VideoParams(width=320, height=240, fps=Fraction(fps)), frames=frames,
        scene=Scene(320, 240, rng), plan=TailPlan(good_start=0, good_end=None, tail=None),
        audio=np.stack([recorded, recorded], axis=1), audio_rate=_RATE,
    )  # fmt: skip

    r_first = round(take.ref_start * ref_song.rate)
    r_last = (
        ref_song.samples.shape[0] if take.ref_end is None else round(take.ref_end * ref_song.rate)
    )
    bgm_rate, bgm_start = write_reference(bgm, ref_song, r_first, r_last, "m4a",
                                          version=KIT_VERSION)  # fmt: skip
    r0 = r_first / ref_song.rate
    offsets = [p - r0 + bgm_start - b * s for p, s in zip(songs, starts, strict=True)]
    main = max(range(len(offsets)), key=lambda k: (ends[k] - starts[k], -k))
    covered = (
        (bgm_start - offsets[0]) / b,
        (r_last / ref_song.rate - r0 + bgm_start - offsets[-1]) / b,
    )
    mismatch = take.accept == "no"
    lo, hi = max(starts[0], covered[0], 0.0), min(ends[-1], covered[1], duration)
    truth = Truth(
        offset=math.nan if mismatch else offsets[main], scale=math.nan if mismatch else b,
        speed=take.speed, drift_ppm=take.drift_ppm, music_start=starts[0], music_end=ends[-1],
        reference_span=(math.nan, math.nan) if mismatch else covered,
        picture_start=0.0, picture_end=duration, cut=None if mismatch else (lo, hi),
        duration=duration, fps=fps, frames=frames, width=320, height=240, rotation=0,
        codec="h264", container="mp4", audio_rate=_RATE, bgm_start=bgm_start,
        bgm_duration=(r_last - r_first) / ref_song.rate, bgm_rate=bgm_rate, mismatch=mismatch,
        pieces=tuple(zip(starts, ends, offsets, strict=True)), seams=tuple(starts[1:]),
        crossfade=take.crossfade, pitch_kept=take.pitch_kept and not mismatch,
    )  # fmt: skip
    manifest.write_text(json.dumps({"kit": KIT_VERSION, "take": take_json,
                                    "truth": dataclasses.asdict(truth)}))  # fmt: skip
    logger.info("recorded take %s (%.1f s)", take.name, duration)
    return BuiltCase(dance, bgm, truth, spec)
