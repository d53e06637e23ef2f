"""Named cases: the accuracy benchmark's standard set, small ones for tests, the speed pair."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from .cases import BuiltCase, CaseSpec, build_case
from .hall import CORNER_STUDIO, GYM, MIRROR_STUDIO
from .room import Room

__all__ = ["build_cases", "case_named", "small_cases", "speed_pair", "standard_cases"]

logger = logging.getLogger(__name__)

# A living room with a few people: the backdrop for most standard cases.
_ROOM = Room(rt60=0.6, drr_db=4.0, snr_db=15.0, footsteps=True)


def _std(name: str, seed: int, **kw: object) -> CaseSpec:
    base: dict[str, object] = {
        "track": "etr/race1-jt",
        "play_from": 8.0,
        "music_start": 3.0,
        "play_duration": 30.0,
        "tail": 2.0,
        "room": _ROOM,
        "width": 512,
        "height": 288,
    }
    base.update(kw)
    return CaseSpec(name=name, seed=seed, **base)  # type: ignore[arg-type]


def _edit(name: str, seed: int, pieces: tuple[tuple[float, float], ...], **kw: object) -> CaseSpec:
    """A standard case whose class danced to an edit of the song (see :mod:`.cases`)."""
    return _std(name, seed, pieces=pieces, play_from=pieces[0][0],
                play_duration=sum(d for _, d in pieces), **kw)  # fmt: skip


def standard_cases() -> tuple[CaseSpec, ...]:
    """The accuracy benchmark's cases: 84 pairs at 512×288, 17–110 s of dance.

    Covers clean rooms, reverb (RT60 0.5–2 s), noise to −5 dB SNR, talking over the music, clipping
    and phone AGC, songs that repeat a section, a class playing only a section, a reference that
    starts late or ends early, drift to ±300 ppm, speed ×0.90–×1.10, resampled versions ×0.75–×1.35
    and tempo changes with the pitch kept ×0.5–×1.5 (drift on top), black and frozen tails, a black
    start, portrait rotation, HEVC, MOV and MKV, audio-only references (M4A, Ogg Opus, MP3), 44.1
    kHz phone audio, music for only 20 s of a long recording, songs 10–16 dB quieter for their first
    or last 6–10 s (also in rooms at 3 to −5 dB SNR), edits of the song in two to four pieces (jumps
    forward and back, hard cuts and crossfades; also played with the pitch kept at ×0.75–×1.25,
    also resampled at ×0.8 and ×1.25; also of a song built from drum loops), and six mismatched
    songs that must be refused (one built from the same drum samples). The ``hardroom-`` cases
    put the class in image-source halls (RT60 1–2 s, a mirror wall, a gym, a corner) where a
    reflection is louder than the direct sound, at +9 to −5 dB SNR, one at 1.08× speed with
    drift, one with talking, clipping and gain control.
    """
    quiet = Room()
    rev = Room
    return (
        _std("clean-etr-race", 101, room=quiet),
        _std("clean-immich-happy", 102, room=quiet, track="immich/happy/happy_electronic_1",
             play_from=2.0, play_duration=25.0),
        _std("clean-etr-credits", 103, room=quiet, track="etr/credits1-cp", play_from=20.0),
        _std("reverb-rt05", 111, room=rev(rt60=0.5, drr_db=6.0, snr_db=20.0)),
        _std("reverb-rt10", 112, room=rev(rt60=1.0, drr_db=3.0, snr_db=15.0),
             track="etr/start1-jt", play_from=15.0),
        _std("reverb-rt15", 113, room=rev(rt60=1.5, drr_db=0.0, snr_db=15.0),
             track="etr/freezingpoint", play_from=30.0),
        _std("reverb-rt20", 114, room=rev(rt60=2.0, drr_db=-3.0, snr_db=10.0),
             track="etr/spunkyrace-ks", play_from=40.0),
        _std("noise-snr0", 121, room=rev(rt60=0.6, drr_db=3.0, snr_db=0.0, footsteps=True)),
        _std("noise-snr-5", 122, room=rev(rt60=0.8, drr_db=2.0, snr_db=-5.0, footsteps=True),
             track="etr/calmrace-ks", play_from=20.0),
        _std("talk-over-music", 131, room=rev(rt60=0.7, snr_db=10.0, speech_db=0.0)),
        _std("talk-loud-noisy", 132, room=rev(rt60=0.9, snr_db=5.0, speech_db=3.0, footsteps=True),
             track="immich/energetic/energetic_electronic_2", play_from=1.0, play_duration=26.0),
        _std("clipping-hard", 141, room=rev(rt60=0.5, snr_db=10.0, clip_db=12.0)),
        _std("clipping-agc", 142, room=rev(rt60=0.8, snr_db=8.0, clip_db=6.0, agc=True),
             track="etr/start1-jt", play_from=5.0),
        _std("repeat-chorus", 151, repeat=(20.0, 32.0), play_from=26.0, play_duration=24.0),
        _std("repeat-mostly-inside", 152, repeat=(20.0, 32.0), play_from=35.0, play_duration=12.0),
        _std("repeat-long-loop", 153, track="etr/spunkyrace-ks", repeat=(30.0, 60.0),
             play_from=50.0, play_duration=45.0, room=rev(rt60=1.0, snr_db=10.0)),
        _std("section-only", 161, track="etr/spunkyrace-ks", play_from=50.0, play_duration=20.0),
        _std("ref-starts-late", 162, ref_start=16.0, play_from=8.0),
        _std("ref-ends-early", 163, ref_end=32.0, play_from=8.0),
        _std("ref-short-cut", 164, track="etr/credits1-cp", ref_start=30.0, ref_end=50.0,
             play_from=20.0, play_duration=40.0),
        _std("drift-plus300", 171, drift_ppm=300.0, track="etr/calmrace-ks", play_from=10.0,
             play_duration=60.0),
        _std("drift-minus300", 172, drift_ppm=-300.0, track="etr/spunkyrace-ks",
             play_from=10.0, play_duration=60.0),
        _std("drift-plus120-reverb", 173, drift_ppm=120.0, room=rev(rt60=1.2, snr_db=8.0),
             track="etr/freezingpoint", play_from=5.0, play_duration=45.0),
        _std("speed-090", 181, speed=0.90),
        _std("speed-095-drift", 182, speed=0.95, drift_ppm=40.0, track="etr/start1-jt"),
        _std("speed-105", 183, speed=1.05, track="etr/credits1-cp", play_from=10.0),
        _std("speed-110-reverb", 184, speed=1.10, room=rev(rt60=1.0, snr_db=8.0, speech_db=-3.0)),
        # Resampled versions ("slowed", "sped up": the pitch moves with the speed).
        _std("resampled-075", 185, speed=0.75, drift_ppm=-150.0, track="etr/start1-jt",
             play_from=10.0),
        _std("resampled-080", 186, speed=0.80, drift_ppm=200.0),
        _std("resampled-125", 187, speed=1.25, drift_ppm=-250.0, track="etr/credits1-cp",
             play_from=10.0, play_duration=25.0),
        _std("resampled-135", 188, speed=1.35, drift_ppm=300.0, track="etr/spunkyrace-ks",
             play_from=20.0, play_duration=25.0, room=rev(rt60=0.8, snr_db=10.0)),
        # Tempo changes with the pitch kept (a practice player), stretched by grains on the line.
        _std("tempo-050", 251, speed=0.50, pitch_kept=True, drift_ppm=100.0),
        _std("tempo-075", 252, speed=0.75, pitch_kept=True, drift_ppm=-200.0,
             track="etr/start1-jt", play_from=10.0),
        _std("tempo-090", 253, speed=0.90, pitch_kept=True, drift_ppm=250.0,
             track="etr/credits1-cp", play_from=10.0),
        _std("tempo-125", 254, speed=1.25, pitch_kept=True, drift_ppm=-300.0,
             track="etr/spunkyrace-ks", play_from=20.0, play_duration=25.0),
        _std("tempo-150", 255, speed=1.50, pitch_kept=True, drift_ppm=150.0,
             track="etr/freezingpoint", play_from=10.0, play_duration=25.0,
             room=rev(rt60=0.8, snr_db=10.0)),
        _std("black-tail", 191, black_tail=4.0),
        _std("frozen-tail", 192, frozen_tail=4.0, track="etr/start1-jt"),
        _std("black-head", 193, black_head=3.0, music_start=2.0),
        _std("portrait-h264", 201, rotation=270, b_frames=True),
        _std("portrait-hevc-mov", 202, rotation=90, codec="hevc", container="mov",
             b_frames=True, track="etr/start1-jt"),
        _std("hevc-mp4", 203, codec="hevc", b_frames=True),
        _std("mov-h264-bframes", 204, container="mov", b_frames=True, gop=60),
        _std("mkv-h264", 205, container="mkv", fps=25),
        _std("long-gop-bframes", 206, gop=250, b_frames=True, track="etr/freezingpoint",
             play_from=12.0),
        _std("audio-ref-m4a", 211, reference="m4a"),
        _std("audio-ref-opus", 212, reference="opus", track="etr/credits1-cp"),
        _std("audio-ref-mp3", 213, reference="mp3", track="etr/start1-jt", play_from=3.0),
        _std("phone-44100", 214, audio_rate=44100, room=rev(rt60=0.8, snr_db=10.0)),
        _std("kitchen-sink", 221, room=rev(rt60=1.2, drr_db=0.0, snr_db=0.0, speech_db=0.0,
             footsteps=True, clip_db=6.0, agc=True), drift_ppm=200.0, codec="hevc",
             rotation=270, black_tail=3.0, track="etr/spunkyrace-ks", play_from=20.0),
        # The class used the music for a short stretch of a long recording.
        _std("sparse-music", 241, music_start=50.0, play_duration=20.0, tail=40.0,
             track="etr/credits1-cp", play_from=30.0),
        _std("sparse-music-noisy", 242, music_start=35.0, play_duration=18.0, tail=50.0,
             track="etr/spunkyrace-ks", play_from=40.0,
             room=rev(rt60=1.0, snr_db=3.0, speech_db=-3.0, footsteps=True)),
        # The song is quiet where the class starts or stops it (the reference too): still music.
        _std("intro-quiet10", 251, intro_db=10.0, intro_seconds=8.0),
        _std("intro-quiet16", 252, intro_db=16.0, intro_seconds=10.0, track="etr/start1-jt",
             play_from=15.0),
        _std("intro-quiet16-loudroom", 253, intro_db=16.0, intro_seconds=10.0,
             room=rev(rt60=1.0, drr_db=2.0, snr_db=-5.0, speech_db=0.0, footsteps=True)),
        _std("intro-quiet12-snr0-reverb", 254, intro_db=12.0, intro_seconds=6.0,
             track="etr/freezingpoint", play_from=30.0,
             room=rev(rt60=1.5, drr_db=0.0, snr_db=0.0, footsteps=True)),
        _std("intro-quiet14-talk-drift", 255, intro_db=14.0, intro_seconds=7.0, drift_ppm=-150.0,
             track="etr/spunkyrace-ks", play_from=40.0,
             room=rev(rt60=0.8, snr_db=3.0, speech_db=3.0, footsteps=True)),
        _std("intro-outro-quiet-loudroom", 256, intro_db=12.0, intro_seconds=6.0,
             outro_db=14.0, outro_seconds=7.0, track="etr/calmrace-ks", play_from=20.0,
             room=rev(rt60=1.2, drr_db=0.0, snr_db=-3.0, speech_db=0.0, footsteps=True)),
        _std("outro-quiet12", 257, outro_db=12.0, outro_seconds=8.0, track="etr/credits1-cp",
             play_from=20.0),
        _std("outro-quiet16-loudroom", 258, outro_db=16.0, outro_seconds=10.0,
             room=rev(rt60=1.0, drr_db=2.0, snr_db=-5.0, speech_db=0.0, footsteps=True)),
        # The class danced to an edit of the song: a section cut out, a chorus again, crossfades.
        _edit("edit-jump-forward", 261, ((8.0, 20.0), (47.3, 16.0)), track="etr/spunkyrace-ks"),
        _edit("edit-jump-back", 262, ((20.0, 22.0), (26.5, 14.0)), track="etr/credits1-cp"),
        _edit("edit-three-pieces", 263, ((10.0, 14.0), (45.2, 12.0), (22.6, 15.0)),
              track="etr/calmrace-ks", room=rev(rt60=0.9, drr_db=2.0, snr_db=10.0)),
        _edit("edit-crossfade", 264, ((12.0, 18.0), (60.4, 16.0)), crossfade=0.4,
              track="etr/spunkyrace-ks", room=rev(rt60=1.0, drr_db=2.0, snr_db=12.0)),
        _edit("edit-four-pieces", 265, ((6.0, 11.0), (38.3, 10.0), (70.9, 12.0), (19.1, 10.0)),
              track="etr/calmrace-ks", crossfade=0.15, drift_ppm=-150.0),
        # Edits of a song built from loops: the same drum samples bar after bar hold lines whole
        # bars apart alike, and only the chords and melody tell a piece from its neighbours.
        _edit("edit-loops-jump-forward", 266, ((19.0, 16.0), (75.0, 14.0)), crossfade=0.2,
              track="studio:pop:full"),
        _edit("edit-loops-three-pieces", 267, ((19.0, 14.0), (74.0, 12.0), (22.0, 12.0)),
              track="studio:pop:full", room=rev(rt60=0.9, drr_db=2.0, snr_db=10.0)),
        # An edit played with the pitch kept: the pieces of a stretched song, crossfaded.
        _edit("tempoedit-090-jump-forward", 271, ((8.0, 18.0), (47.3, 15.0)), speed=0.90,
              pitch_kept=True, drift_ppm=150.0, crossfade=0.2, track="etr/spunkyrace-ks"),
        _edit("tempoedit-075-three-pieces", 272, ((10.0, 20.0), (45.2, 12.0), (26.0, 12.0)),
              speed=0.75, pitch_kept=True, drift_ppm=-200.0, crossfade=0.3,
              track="etr/start1-jt", room=rev(rt60=0.8, drr_db=3.0, snr_db=12.0)),
        _edit("tempoedit-125-jump-back", 273, ((20.0, 16.0), (26.5, 14.0)), speed=1.25,
              pitch_kept=True, drift_ppm=-100.0, crossfade=0.1, track="etr/credits1-cp"),
        # An edit of a resampled version ("slowed", "sped up"): the pieces' pitch moves with
        # their speed, which the pieces found after the first are searched at.
        _edit("resampledit-125-four-pieces", 274, ((16.0, 10.0), (50.0, 9.0), (90.0, 10.0),
              (20.0, 10.0)), speed=1.25, drift_ppm=-50.0, crossfade=0.1,
              track="etr/calmrace-ks"),
        _edit("resampledit-080-jump-back", 275, ((30.0, 20.0), (12.0, 16.0)), speed=0.80,
              drift_ppm=200.0, track="etr/spunkyrace-ks",
              room=rev(rt60=0.9, drr_db=2.0, snr_db=10.0)),
        # Image-source rooms whose early reflections are as loud as the direct sound or louder.
        _std("hardroom-mirror-rt10-snr9", 261, track="etr/start1-jt", play_from=10.0,
             room=rev(rt60=1.0, snr_db=9.0, footsteps=True, hall=MIRROR_STUDIO)),
        _std("hardroom-gym-rt15-snr0", 262, track="etr/freezingpoint", play_from=20.0,
             room=rev(rt60=1.5, snr_db=0.0, footsteps=True, hall=GYM)),
        _std("hardroom-mirror-rt20-snr-5", 263, track="etr/calmrace-ks", play_from=15.0,
             room=rev(rt60=2.0, snr_db=-5.0, footsteps=True,
                      hall=replace(MIRROR_STUDIO, phone=(4.2, 6.2, 1.1), aim=-140.0))),
        _std("hardroom-corner-rt10-snr0", 264,
             room=rev(rt60=1.0, snr_db=0.0, hall=replace(CORNER_STUDIO, phone=(2.4, 4.4, 1.1)))),
        _std("hardroom-gym-speed108-drift", 265, speed=1.08, drift_ppm=-150.0,
             track="etr/credits1-cp", play_from=10.0, play_duration=40.0,
             room=rev(rt60=1.2, snr_db=3.0, footsteps=True, hall=GYM)),
        _std("hardroom-talk-clip-agc", 266, track="immich/energetic/energetic_electronic_2",
             play_from=1.0, play_duration=26.0,
             room=rev(rt60=1.5, snr_db=3.0, speech_db=0.0, footsteps=True, clip_db=6.0, agc=True,
                       hall=MIRROR_STUDIO)),
        _std("mismatch-etr-vs-immich", 231, mismatch_track="immich/calm/calm_acoustic_1"),
        _std("mismatch-immich-moods", 232, track="immich/energetic/energetic_electronic_2",
             play_from=1.0, play_duration=25.0, mismatch_track="immich/tender/tender_acoustic_1"),
        _std("mismatch-etr-pair", 233, track="etr/freezingpoint", play_from=10.0,
             mismatch_track="etr/credits1-cp"),
        _std("mismatch-noisy", 234, room=rev(rt60=1.5, snr_db=0.0, speech_db=0.0),
             track="etr/start1-jt", mismatch_track="etr/calmrace-ks"),
        _std("mismatch-audio-ref", 235, reference="m4a", track="etr/spunkyrace-ks",
             play_from=30.0, mismatch_track="immich/nostalgic/nostalgic_electronic_2"),
        # Another song of the same tempo and key built from the same drum samples.
        _std("mismatch-same-samples", 236, track="studio:pop:full", play_from=16.0,
             mismatch_track="studio:pop:other"),
    )  # fmt: skip


def _small(name: str, seed: int, **kw: object) -> CaseSpec:
    base: dict[str, object] = {
        "track": "etr/race1-jt",
        "ref_start": 5.0,
        "ref_end": 28.0,
        "play_from": 10.0,
        "music_start": 2.0,
        "play_duration": 11.0,
        "tail": 1.0,
    }
    base.update(kw)
    return CaseSpec(name=name, seed=seed, **base)  # type: ignore[arg-type]


def small_cases() -> tuple[CaseSpec, ...]:
    """Short (14–22 s), 320×240 cases for unit tests, each built in about a second: clean, drift
    and speed, a degraded room, black and frozen tails, HEVC portrait, a partial reference, a
    mismatch, a song 16 dB quieter for its first 5 s (12 dB for its last 3 s) in a room at
    −5 dB SNR, and an edit of the song in two pieces (a jump forward), also played at 0.9× with
    the pitch kept."""
    return (
        _small("small-clean", 1),
        _small("small-drift-speed", 2, speed=1.06, drift_ppm=250.0, audio_rate=44100),
        _small("small-degraded", 3, room=Room(rt60=1.0, drr_db=0.0, snr_db=0.0, speech_db=0.0,
               footsteps=True, clip_db=6.0)),
        _small("small-black-tail", 4, black_tail=2.0, tail=0.5, black_head=1.0),
        _small("small-frozen-tail", 5, frozen_tail=2.0, container="mkv", fps=25),
        _small("small-hevc-portrait", 6, codec="hevc", container="mov", rotation=270,
               b_frames=True, reference="m4a"),
        _small("small-partial", 7, ref_start=14.0, ref_end=19.0, play_duration=14.0, tail=2.0),
        _small("small-mismatch", 8, mismatch_track="immich/calm/calm_acoustic_1", ref_start=2.0,
               ref_end=25.0),
        _small("small-quiet-intro-loud", 9, intro_db=16.0, intro_seconds=5.0, outro_db=12.0,
               outro_seconds=3.0, play_duration=14.0, tail=1.5,
               room=Room(rt60=0.8, drr_db=2.0, snr_db=-5.0, speech_db=0.0, footsteps=True)),
        _small("small-edit", 10, track="etr/spunkyrace-ks", ref_start=0.0, ref_end=None,
               pieces=((8.0, 10.0), (47.3, 9.0)), play_from=8.0, play_duration=19.0,
               room=Room(rt60=0.5, drr_db=4.0, snr_db=20.0)),
        _small("small-resampled-080", 9, speed=0.80, drift_ppm=-200.0, ref_end=30.0,
               room=Room(rt60=0.5, drr_db=4.0, snr_db=15.0)),
        _small("small-tempo-edit", 11, track="etr/spunkyrace-ks", ref_start=0.0, ref_end=None,
               pieces=((8.0, 13.0), (47.3, 9.0)), play_from=8.0, play_duration=22.0,
               speed=0.90, pitch_kept=True, drift_ppm=150.0, crossfade=0.2,
               room=Room(rt60=0.5, drr_db=4.0, snr_db=20.0)),
        _small("small-tempo-075", 10, speed=0.75, pitch_kept=True, drift_ppm=150.0,
               ref_end=30.0, room=Room(rt60=0.5, drr_db=4.0, snr_db=15.0)),
    )  # fmt: skip


def case_named(name: str) -> CaseSpec:
    """The standard or small case called ``name``."""
    for spec in (*standard_cases(), *small_cases()):
        if spec.name == name:
            return spec
    raise KeyError(f"no case named {name!r}")


def _build_one(args: tuple[CaseSpec, str, bool]) -> BuiltCase:
    spec, directory, reuse = args
    return build_case(spec, directory, reuse=reuse)


def build_cases(
    specs: Iterable[CaseSpec], directory: Path | str, *, workers: int = 1, reuse: bool = True
) -> list[BuiltCase]:
    """Build several cases, in ``workers`` processes; results keep the order of ``specs``."""
    jobs = [(spec, str(directory), reuse) for spec in specs]
    if workers <= 1:
        return [_build_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_build_one, jobs))


_SPEED_BIT_RATE = 12_000_000


def speed_pair(
    directory: Path | str,
    seconds: float = 180.0,
    size: tuple[int, int] = (1920, 1080),
    fps: int = 30,
    *,
    seed: int = 7,
    bit_rate: int = _SPEED_BIT_RATE,
    reuse: bool = True,
) -> BuiltCase:
    """A phone-like dance video for the speed benchmark and its reference.

    ``seconds`` of H.264 at ``size`` and ``fps`` with a 1 s GOP at ``bit_rate`` bit/s (phones
    record 1080p30 at 10–17 Mbit/s), 48 kHz AAC from a living room; the reference is a small
    MP4 with AAC of the whole song. The song is a 108 s track with a 90 s section repeated, so
    up to about 190 s of dance can be made. Reused from ``directory`` when already built; a
    bit rate other than the default is part of the name.
    """
    rate = "" if bit_rate == _SPEED_BIT_RATE else f"-{bit_rate / 1e6:g}M"
    spec = CaseSpec(
        name=f"speed-{size[0]}x{size[1]}-{fps}-{int(seconds)}s{rate}",
        seed=seed,
        track="etr/spunkyrace-ks",
        repeat=(10.0, 100.0),
        play_from=5.0,
        music_start=2.0,
        play_duration=seconds - 5.0,
        tail=3.0,
        room=_ROOM,
        width=size[0],
        height=size[1],
        fps=fps,
        gop=fps,
        bit_rate=bit_rate,
    )
    return build_case(spec, directory, reuse=reuse)
