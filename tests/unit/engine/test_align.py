"""Alignment on signals built from real music with a known mapping."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from numpy.typing import NDArray

from beatsync.engine import (
    Alignment,
    AlignParams,
    Audio,
    Mapping,
    MusicMismatchError,
    align_signals,
)
from beatsync.testkit.music import load_track, play
from beatsync.testkit.room import hard_clip, impulse_response, pink_noise, reverberate

RATE = 16_000


@cache
def song(name: str) -> NDArray[np.float32]:
    track = load_track(name)
    return track.mono() if track.rate == RATE else _to_rate(track.mono(), track.rate)


def _to_rate(x: NDArray[np.float32], rate: int) -> NDArray[np.float32]:
    from fractions import Fraction

    import scipy.signal

    f = Fraction(RATE, rate)
    return scipy.signal.resample_poly(x, f.numerator, f.denominator).astype(np.float32)


@dataclass(frozen=True)
class Take:
    """A simulated class recording and the truth: ``bgm = offset + scale × dance``."""

    dance: Audio
    mapping: Mapping
    music: tuple[float, float]


def record(
    track: str,
    *,
    play_from: float,
    music_start: float,
    duration: float,
    tail: float = 3.0,
    speed: float = 1.0,
    drift_ppm: float = 0.0,
    rt60: float = 0.0,
    snr_db: float | None = None,
    clip_db: float | None = None,
    seed: int = 0,
) -> Take:
    rng = np.random.default_rng(seed)
    scale = speed * (1 + drift_ppm * 1e-6)
    length = int((music_start + duration + tail) * RATE)
    x = play(
        song(track),
        RATE,
        rate=RATE,
        length=length,
        start=music_start,
        end=music_start + duration,
        song_start=play_from,
        speed=scale,
    )
    if rt60:
        x = reverberate(x, impulse_response(rng, RATE, rt60=rt60, drr_db=-3.0))
    if snr_db is not None:
        music = x[int(music_start * RATE) : int((music_start + duration) * RATE)]
        noise = pink_noise(rng, length)
        noise *= np.sqrt(np.mean(music**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
        x = x + noise
    if clip_db is not None:
        x = hard_clip(x, clip_db)
    mapping = Mapping(play_from - scale * music_start, scale)
    return Take(
        Audio(x.astype(np.float32), RATE, 0.0), mapping, (music_start, music_start + duration)
    )


def reference(track: str, start: float = 0.0, end: float | None = None) -> Audio:
    x = song(track)
    lo, hi = int(start * RATE), int((end or len(x) / RATE) * RATE)
    return Audio(x[lo:hi], RATE, 0.0)


def within_reference(found: Alignment, ref: Audio) -> tuple[float, float]:
    """The found music span within what the reference covers: where nothing can tell whether
    the music plays (no reference to compare), the span goes on and the cut is the
    reference's."""
    covered = sorted(found.mapping.dance_time(t) for t in (ref.start, ref.end))
    return max(found.music.start, covered[0]), min(found.music.end, covered[1])


def error_ms(found: Mapping, truth: Mapping, times: tuple[float, ...]) -> float:
    return max(abs(found.bgm_time(t) - truth.bgm_time(t)) for t in times) * 1000 / truth.scale


ROOMS: dict[str, dict[str, float]] = {
    "clean": dict(play_from=31.0, music_start=4.0, duration=20.0),
    "room at -5 dB": dict(play_from=3.0, music_start=2.0, duration=30.0, rt60=1.5, snr_db=-5.0),
    "drift +300 ppm": dict(
        play_from=0.0, music_start=4.0, duration=40.0, drift_ppm=300, rt60=1.0, snr_db=0.0
    ),
    "drift -250 ppm clipped": dict(
        play_from=12.0, music_start=2.0, duration=30.0, drift_ppm=-250, rt60=0.5, clip_db=9.0
    ),
    "practice x0.93": dict(
        play_from=5.0, music_start=3.0, duration=25.0, speed=0.93, rt60=0.8, snr_db=5.0
    ),
    "practice x1.08": dict(
        play_from=2.0, music_start=3.0, duration=25.0, speed=1.08, rt60=0.5, snr_db=10.0
    ),
}


@pytest.mark.parametrize("name", sorted(ROOMS))
def test_recovers_mapping(name: str) -> None:
    take = record("etr/freezingpoint", **ROOMS[name])
    ref = reference("etr/freezingpoint")
    found = align_signals(take.dance, ref)
    lo, hi = take.music
    assert error_ms(found.mapping, take.mapping, (lo, (lo + hi) / 2, hi)) < 1.0, name
    assert abs(found.mapping.drift_ppm - take.mapping.drift_ppm) < 5.0
    assert found.confidence > 0.5
    music = within_reference(found, ref)
    assert abs(music[0] - lo) < 0.5
    assert abs(music[1] - hi) < 0.5
    assert found.windows.inlier.sum() >= 0.7 * len(
        found.windows.times[(found.windows.times > lo) & (found.windows.times < hi)]
    )


def test_reference_that_starts_late_and_ends_early() -> None:
    # The class plays 4–44 s of the song; the reference holds only 12–34 s of it.
    take = record(
        "etr/freezingpoint", play_from=4.0, music_start=2.0, duration=40.0, rt60=0.6, snr_db=5.0
    )
    ref = reference("etr/freezingpoint", 12.0, 34.0)
    found = align_signals(take.dance, ref)
    truth = Mapping(take.mapping.offset - 12.0, take.mapping.scale)
    assert error_ms(found.mapping, truth, (12.0, 20.0, 28.0)) < 1.0
    # Beyond the reference nothing can tell that the music stops: the span goes on, unheard.
    assert found.music.start < 10.0 - 5.0
    assert found.music.end > 32.0 + 5.0
    assert found.music.start_evidence.unheard > 5.0
    assert found.music.end_evidence.unheard > 5.0
    music = within_reference(found, ref)
    assert abs(music[0] - 10.0) < 0.5
    assert abs(music[1] - 32.0) < 0.5


def test_different_songs_are_refused() -> None:
    take = record(
        "etr/race1-jt", play_from=10.0, music_start=3.0, duration=25.0, rt60=0.8, snr_db=5.0
    )
    with pytest.raises(MusicMismatchError) as info:
        align_signals(take.dance, reference("etr/freezingpoint"))
    assert info.value.code == "MUSIC_MISMATCH"


def test_silence_is_refused() -> None:
    quiet = Audio(np.zeros(20 * RATE, dtype=np.float32), RATE, 0.0)
    with pytest.raises(MusicMismatchError):
        align_signals(quiet, reference("etr/freezingpoint"))


def test_looped_section_reports_the_other_loop_as_candidate() -> None:
    # race1-jt repeats a 3.84 s loop sample-exactly from 10 s on: within it, any loop shift fits.
    take = record("etr/race1-jt", play_from=12.0, music_start=2.0, duration=20.0)
    found = align_signals(take.dance, reference("etr/race1-jt"))
    answers = [found.mapping, *(c.mapping for c in found.candidates)]
    assert any(error_ms(m, take.mapping, (4.0, 12.0, 20.0)) < 1.0 for m in answers)
    assert found.candidates, "an ambiguous answer must come with its runner-up"
    assert found.confidence < 0.5
    # The loop copy is as plausible as the answer: each gets a real share, not zero.
    assert found.candidates[0].confidence > 0.2
    assert found.confidence + found.candidates[0].confidence <= 1.0


def test_offset_hint_keeps_the_search_near_it() -> None:
    take = record("etr/race1-jt", play_from=12.0, music_start=2.0, duration=20.0)
    truth = take.mapping
    # Name the loop copy that starts one loop later: the answer must stay there.
    hint = truth.offset + 3.84
    found = align_signals(
        take.dance, reference("etr/race1-jt"), params=AlignParams(offset_hint=hint)
    )
    assert abs(found.mapping.offset - hint) < 0.05


def test_start_times_of_both_signals_are_honoured() -> None:
    take = record("etr/freezingpoint", play_from=20.0, music_start=3.0, duration=20.0)
    shifted_dance = Audio(take.dance.samples, RATE, 1.5)
    ref = reference("etr/freezingpoint")
    shifted_ref = Audio(ref.samples, RATE, -0.25)
    found = align_signals(shifted_dance, shifted_ref)
    # dance time t' = t + 1.5, reference time β' = β - 0.25
    expected = Mapping(take.mapping.offset - 0.25 - 1.5 * take.mapping.scale, take.mapping.scale)
    assert error_ms(found.mapping, expected, (5.0, 15.0)) < 1.0


def test_music_for_a_short_stretch_of_a_long_recording() -> None:
    # 20 s of music in the middle of 110 s of room noise and talking.
    take = record(
        "etr/credits1-cp", play_from=30.0, music_start=50.0, duration=20.0, tail=40.0, snr_db=3.0
    )
    found = align_signals(take.dance, reference("etr/credits1-cp"))
    assert error_ms(found.mapping, take.mapping, (52.0, 60.0, 68.0)) < 1.0
    assert abs(found.mapping.drift_ppm - take.mapping.drift_ppm) < 5.0
    assert abs(found.music.start - 50.0) < 0.5
    assert abs(found.music.end - 70.0) < 0.5


def test_offset_hint_with_a_practice_version() -> None:
    take = record("etr/freezingpoint", play_from=5.0, music_start=3.0, duration=25.0, speed=0.93)
    hint = AlignParams(offset_hint=take.mapping.offset + 0.2)
    found = align_signals(take.dance, reference("etr/freezingpoint"), params=hint)
    assert error_ms(found.mapping, take.mapping, (5.0, 15.0, 25.0)) < 1.0
