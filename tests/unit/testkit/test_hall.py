"""Image-source halls: the direct sound at delay 0, reflections where the geometry puts them."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from beatsync.testkit import Room
from beatsync.testkit.hall import CORNER_STUDIO, GYM, MIRROR_STUDIO, SPEED_OF_SOUND, hall_response
from beatsync.testkit.room import record_in_room

RATE = 48_000


def _path(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return math.dist(a, b)


def test_direct_sound_is_an_impulse_at_sample_zero_and_nothing_comes_before() -> None:
    ir = hall_response(GYM, RATE, np.random.default_rng(1), rt60=1.5)
    # The loudspeaker's cardioid-family gain towards the phone, less the crowd's shadow.
    towards = np.subtract(GYM.phone, GYM.speaker) / _path(GYM.phone, GYM.speaker)
    axis = np.array([math.cos(math.radians(GYM.aim)), math.sin(math.radians(GYM.aim)), 0.0])
    gain = GYM.pattern + (1 - GYM.pattern) * float(towards @ axis)
    assert ir[0] == pytest.approx(gain * 10 ** (-GYM.shadow_db / 20), rel=1e-4)
    # The floor's reflection is the first to follow, and not before its path says.
    floor = (GYM.speaker[0], GYM.speaker[1], -GYM.speaker[2])
    first = (_path(floor, GYM.phone) - _path(GYM.speaker, GYM.phone)) / SPEED_OF_SOUND
    assert np.max(np.abs(ir[1 : int(first * RATE) - 40])) < 1e-3 * ir[0]


def test_the_gym_ceiling_returns_the_sound_louder_than_the_direct_path() -> None:
    ir = hall_response(GYM, RATE, np.random.default_rng(2), rt60=1.5)
    ceiling = (GYM.speaker[0], GYM.speaker[1], 2 * GYM.size[2] - GYM.speaker[2])
    delay = (_path(ceiling, GYM.phone) - _path(GYM.speaker, GYM.phone)) / SPEED_OF_SOUND
    at = round(delay * RATE)
    assert 0.014 < delay < 0.016
    peak = np.max(np.abs(ir[at - 2 : at + 3]))
    assert peak > ir[0]
    # The strongest arrival of all is not the direct sound: a lock on the loudest peak is wrong.
    assert np.argmax(np.abs(ir)) > 0


@pytest.mark.parametrize(
    "hall", [MIRROR_STUDIO, CORNER_STUDIO, GYM], ids=["mirror", "corner", "gym"]
)
@pytest.mark.parametrize("rt60", [1.0, 2.0])
def test_decay_follows_the_requested_rt60(hall, rt60: float) -> None:  # type: ignore[no-untyped-def]
    ir = hall_response(hall, RATE, np.random.default_rng(3), rt60=rt60).astype(np.float64)
    # Schroeder backward integration; the −5…−25 dB slope extrapolated to −60 dB.
    energy = ir**2
    edc = 10 * np.log10(np.cumsum(energy[::-1])[::-1] / energy.sum())
    i5, i25 = np.argmax(edc < -5), np.argmax(edc < -25)
    assert 3 * (i25 - i5) / RATE == pytest.approx(rt60, rel=0.15)
    # Early reflections carry real energy: the direct sound is a small share of the whole.
    assert -20.0 < 10 * np.log10(energy[0] / energy[1:].sum()) < -3.0


def test_a_recording_in_a_hall_keeps_the_direct_sound_at_the_music_time() -> None:
    rng = np.random.default_rng(4)
    music = np.zeros(4 * RATE, dtype=np.float32)
    music[RATE] = 1.0  # one click at 1 s
    hall = replace(MIRROR_STUDIO, shadow_db=0.0)
    room = Room(rt60=1.0, hall=hall, preroll_talk=False)
    rec = record_in_room(music, RATE, rng, room, music_span=(RATE, 3 * RATE))
    assert np.flatnonzero(np.abs(rec) > 1e-6)[0] == RATE
    with pytest.raises(ValueError, match="no absorption"):
        hall_response(MIRROR_STUDIO, RATE, rng, rt60=0.05)
