"""Music sources, varispeed playback and the room simulation, each against a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from beatsync.testkit import (
    Room,
    TrackSourceMissingError,
    case_named,
    list_tracks,
    load_song,
    load_track,
    repeat_section,
)
from beatsync.testkit.music import Song, play, quieten, track_path
from beatsync.testkit.room import impulse_response, record_in_room, speech


def test_both_sources_are_listed_with_stable_names() -> None:
    names = list_tracks()
    assert "etr/race1-jt" in names
    assert "immich/happy/happy_electronic_1" in names
    assert names == tuple(sorted(names))
    assert all(n.startswith(("etr/", "immich/")) for n in names)


def test_missing_or_malformed_tracks_say_what_to_install() -> None:
    with pytest.raises(TrackSourceMissingError, match="extremetuxracer-data"):
        track_path("etr/no-such-track")
    with pytest.raises(TrackSourceMissingError, match="immich-memories-music"):
        track_path("immich/happy/no-such-track")
    with pytest.raises(ValueError, match="unknown track name"):
        track_path("race1-jt")


def test_loaded_track_is_stereo_float_and_read_only() -> None:
    song = load_track("etr/race1-jt")
    assert song.rate == 44100
    assert song.samples.dtype == np.float32
    assert song.samples.shape[1] == 2
    assert 53.0 < song.duration < 54.5
    assert not song.samples.flags.writeable


def test_repeat_section_plays_the_section_twice() -> None:
    song = load_track("etr/race1-jt")
    rep = repeat_section(song, 20.0, 32.0)
    r = song.rate
    assert rep.samples.shape[0] == song.samples.shape[0] + 12 * r
    np.testing.assert_array_equal(rep.samples[32 * r : 44 * r], song.samples[20 * r : 32 * r])
    np.testing.assert_array_equal(rep.samples[44 * r :], song.samples[32 * r :])


def test_medley_joins_tracks_with_a_crossfade_at_the_first_rate() -> None:
    first, second = load_track("etr/race1-jt"), load_track("etr/wonrace1-jt")
    assert first.rate == 44100
    song = load_track("medley:etr/race1-jt,etr/wonrace1-jt,immich/happy/happy_electronic_1")
    assert song.name == "medley:etr/race1-jt,etr/wonrace1-jt,immich/happy/happy_electronic_1"
    assert song.rate == first.rate
    assert not song.samples.flags.writeable
    r, fade = song.rate, round(0.5 * song.rate)
    third = load_track("immich/happy/happy_electronic_1")
    resampled = round(third.samples.shape[0] * 44100 / third.rate)
    expected = first.samples.shape[0] + second.samples.shape[0] + resampled - 2 * fade
    assert abs(song.samples.shape[0] - expected) <= 1
    # Each track is heard as it is outside the crossfades.
    n1 = first.samples.shape[0]
    np.testing.assert_array_equal(song.samples[: n1 - fade], first.samples[: n1 - fade])
    np.testing.assert_array_equal(
        song.samples[n1 : n1 + 5 * r], second.samples[fade : fade + 5 * r]
    )
    # The crossfade moves from one track to the other.
    mid = n1 - fade // 2
    blend = 0.5 * (first.samples[n1 - fade // 2] + second.samples[fade // 2])
    np.testing.assert_allclose(song.samples[mid], blend, atol=2e-3)


def test_quieten_lowers_a_passage_and_glides_back() -> None:
    rate = 1000
    song = Song("ones", np.ones((10 * rate, 2), dtype=np.float32), rate)
    quiet = quieten(song, 2.0, 5.0, db=20.0, after=1.0)
    gain_db = 20 * np.log10(quiet.samples[:, 0])
    at = [1.999, 2.0, 4.999, 5.5, 6.0, 9.0]
    assert gain_db[[round(t * rate) for t in at]] == pytest.approx(
        [0, -20, -20, -10, 0, 0], abs=0.01
    )
    faded = quieten(song, 2.0, 5.0, db=12.0, before=2.0)
    assert 20 * np.log10(faded.samples[1 * rate, 1]) == pytest.approx(-6.0, abs=0.01)
    with pytest.raises(ValueError, match="quiet passage"):
        quieten(song, 5.0, 2.0, db=10.0)


def test_a_quiet_intro_and_outro_are_in_the_song_the_class_plays() -> None:
    # The intro is quiet from the class's first note (song time p0), the outro up to its last.
    spec = case_named("small-quiet-intro-loud")
    plain = load_track(spec.track).samples[:, 0].astype(np.float64)
    gain_db = 20 * np.log10(np.abs(load_song(spec).samples[:, 0]) / np.maximum(np.abs(plain), 1e-9))
    rate = load_track(spec.track).rate
    p0, last = spec.play_from, spec.play_from + spec.play_duration

    def level(t: float) -> float:
        i = round(t * rate)
        part, loud = gain_db[i : i + 50], np.abs(plain[i : i + 50]) > 1e-3
        return float(np.median(part[loud]))

    assert level(p0 - 0.1) == pytest.approx(0.0, abs=0.01)
    assert level(p0) == pytest.approx(-spec.intro_db, abs=0.01)
    assert level(p0 + spec.intro_seconds - 0.1) == pytest.approx(-spec.intro_db, abs=0.01)
    assert level(p0 + spec.intro_seconds + 1.5) == pytest.approx(0.0, abs=0.01)
    assert level(last - spec.outro_seconds + 0.1) == pytest.approx(-spec.outro_db, abs=0.01)
    assert level(last + 0.01) == pytest.approx(0.0, abs=0.01)


def test_play_reads_the_song_at_the_given_speed() -> None:
    rate = 8000
    tone = np.sin(2 * np.pi * 50.0 * np.arange(10 * rate) / rate).astype(np.float32)
    out = play(
        tone, rate, rate=rate, length=6 * rate, start=1.0, end=5.0, song_start=2.0, speed=1.1
    )
    assert not out[: rate - 1].any()
    assert not out[5 * rate + 1 :].any()
    t = np.arange(int(1.5 * rate), int(4.5 * rate)) / rate
    expected = np.sin(2 * np.pi * 50.0 * (2.0 + 1.1 * (t - 1.0)))
    assert np.max(np.abs(out[int(1.5 * rate) : int(4.5 * rate)] - expected)) < 2e-3


def test_impulse_response_has_unit_direct_path_drr_and_rt60() -> None:
    rate = 16000
    ir = impulse_response(np.random.default_rng(1), rate, rt60=1.0, drr_db=3.0)
    assert ir[0] == 1.0
    assert np.argmax(np.abs(ir)) == 0
    tail = ir[1:].astype(np.float64)
    assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(3.0, abs=0.05)
    # Schroeder backward integration; the −5…−25 dB slope extrapolated to −60 dB.
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
    i5, i25 = np.argmax(edc < -5), np.argmax(edc < -25)
    assert 3 * (i25 - i5) / rate == pytest.approx(1.0, rel=0.15)
    assert impulse_response(np.random.default_rng(1), rate, rt60=0.0, drr_db=0.0).tolist() == [1.0]


def test_room_noise_sits_at_the_requested_snr() -> None:
    rate = 16000
    rng = np.random.default_rng(3)
    music = load_track("etr/race1-jt").mono()[: 20 * 44100 : 3].copy()[: 20 * rate]
    room = Room(snr_db=0.0, footsteps=True, preroll_talk=False)
    rec = record_in_room(music, rate, rng, room, music_span=(0, music.size)).astype(np.float64)
    gain = float(np.dot(rec, music) / np.dot(music, music))
    noise = rec - gain * music
    snr = 10 * np.log10(np.mean((gain * music) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(0.0, abs=0.5)
    assert np.max(np.abs(rec)) <= 1.0


def test_clipping_clips_and_speech_is_real_and_fixed() -> None:
    rate = 16000
    music = np.sin(np.arange(5 * rate) * 0.05).astype(np.float32)
    room = Room(clip_db=6.0, preroll_talk=False)
    rec = record_in_room(music, rate, np.random.default_rng(0), room, music_span=(0, music.size))
    assert np.mean(np.abs(rec) >= 0.999) > 0.2
    voice = speech("five six seven eight", voice="en", rate=rate)
    assert 0.5 * rate < voice.size < 4 * rate
    assert np.sqrt(np.mean(voice**2)) > 0.01
    with pytest.raises(ValueError, match="not a known phrase"):
        speech("anything; rm -rf /", voice="en")
