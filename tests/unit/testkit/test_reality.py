"""Outside class recordings: the room's direct sound at delay 0, and a built take's own sound
heard where its truth says, in each piece, with silence where the class stopped the music."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from beatsync.testkit import decode_mono, sync_errors
from beatsync.testkit.reality import SPEED_OF_SOUND, Take, TakeRoom, _room_response, build_take
from beatsync.testkit.studio import studio_song

RATE = 48_000
# The phone a metre and a half from the loudspeaker in a damped room: the direct sound dominates.
_QUIET = TakeRoom(phone=(2.0, 3.6, 1.3), rt60=0.3, shadow_db=0.0, snr_db=40.0, teacher_db=None,
                  claps=False, speaker_drive=0.5, agc=False, clip_db=None)  # fmt: skip


def test_the_direct_sound_is_at_sample_zero_shadowed_and_the_wall_behind_the_phone_follows() -> (
    None
):
    room = TakeRoom(rt60=1.0, shadow_db=6.0, phone=(0.3, 2.0, 1.0), speaker=(6.0, 5.0, 1.5))
    ir = _room_response(room, np.random.default_rng(3))
    assert ir[0] == pytest.approx(10 ** (-6.0 / 20), rel=1e-6)
    # The mirror wall (x = 0) behind the phone: the image loudspeaker at x = −6 m.
    direct = math.dist(room.speaker, room.phone)
    wall = math.dist((-room.speaker[0], *room.speaker[1:]), room.phone)
    at = (wall - direct) / SPEED_OF_SOUND * RATE
    # Louder than the shadowed direct sound, where the geometry puts it (to a sample).
    near = np.abs(ir[int(at) - 2 : int(at) + 3])
    assert int(at) - 2 + int(np.argmax(near)) == pytest.approx(at, abs=1.0)
    assert near.max() > ir[0]
    assert np.max(np.abs(ir[5 : int(at) - 45])) < 0.05 * ir[0]


def test_a_stopped_and_restarted_take_sounds_where_its_truth_says(tmp_path: Path) -> None:
    take = Take("stop", 5, "immich/happy/happy_acoustic_1", ((2.0, 6.0, 3.0), (0.0, 6.0, 0.0)),
                music_start=1.0, tail=1.0, drift_ppm=50.0, room=_QUIET)  # fmt: skip
    case = build_take(take, tmp_path)
    truth = case.truth
    assert truth.seams == (10.0,)
    assert [p[:2] for p in truth.pieces] == [(1.0, 7.0), (10.0, 16.0)]
    # The second piece restarts where the first stopped: the same line, three seconds later.
    assert truth.pieces[1][2] == pytest.approx(truth.pieces[0][2] - 3.0 * truth.scale, abs=1e-9)
    # The dance file's own sound (through the room) against the clean reference, via its frames.
    errors = sync_errors(case.dance, case, times=[2.5, 4.0, 5.5, 11.5, 13.0, 14.5])
    assert np.max(np.abs(errors)) < 0.05, errors
    audio, rate, start = decode_mono(case.dance)
    level = [float(np.std(audio[int((t - start) * rate) :][: rate // 2])) for t in (4.0, 8.6)]
    assert level[1] < 0.01 * level[0]


def test_studio_songs_copy_their_choruses_and_variants_keep_the_timing() -> None:
    song = studio_song("studio:pop:full").mono()
    bar = int(2.0 * 44100)
    # Chorus 1 starts at bar 16, its copies at bars 28 and 44; past the first two bars, where
    # what came before still rings, they are the same samples.
    assert np.array_equal(song[18 * bar : 24 * bar], song[30 * bar : 36 * bar])
    assert np.array_equal(song[18 * bar : 24 * bar], song[46 * bar : 52 * bar])
    instrumental = studio_song("studio:pop:instrumental").mono()
    assert instrumental.size == song.size
    assert not np.array_equal(instrumental[16 * bar : 24 * bar], song[16 * bar : 24 * bar])
