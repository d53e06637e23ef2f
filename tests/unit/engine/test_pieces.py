"""Edits of a song: the pieces and seams found on signals built from real music."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
import pytest
import scipy.signal
from numpy.typing import NDArray

from beatsync.engine import Audio, Mapping, align_signals
from beatsync.engine.alignment.seam import find_seam
from beatsync.engine.alignment.signals import Signals
from beatsync.engine.piece import Piece, bgm_times, piece_at
from beatsync.testkit.music import load_track, play, repeat_section
from beatsync.testkit.room import impulse_response, pink_noise, reverberate
from beatsync.testkit.studio import studio_song

RATE = 16_000
TRACK = "etr/spunkyrace-ks"


@cache
def song(name: str = TRACK, repeat: tuple[float, float] | None = None) -> NDArray[np.float32]:
    track = load_track(name)
    if repeat is not None:
        track = repeat_section(track, *repeat)
    f = Fraction(RATE, track.rate)
    return scipy.signal.resample_poly(track.mono(), f.numerator, f.denominator).astype(np.float32)


@dataclass(frozen=True)
class Edit:
    """A class recording of an edit and its truth: one mapping per piece, the seams."""

    dance: Audio
    mappings: tuple[Mapping, ...]
    seams: tuple[float, ...]
    music: tuple[float, float]


def record_edit(
    pieces: tuple[tuple[float, float], ...],
    *,
    music: NDArray[np.float32] | None = None,
    start: float = 3.0,
    tail: float = 3.0,
    crossfade: float = 0.0,
    rt60: float = 0.6,
    snr_db: float | None = 15.0,
    drift_ppm: float = 0.0,
    seed: int = 0,
) -> Edit:
    """The song played as ``(song time, dance seconds)`` pieces from dance time ``start``, hard
    cuts or raised-cosine crossfades centred on the seams, in a room."""
    x_song = song() if music is None else music
    rng = np.random.default_rng(seed)
    b = 1.0 + drift_ppm * 1e-6
    total = sum(d for _, d in pieces)
    length = int((start + total + tail) * RATE)
    t = np.arange(length) / RATE
    x = np.zeros(length)
    at, seams, mappings = start, [], []
    for k, (p, d) in enumerate(pieces):
        first, last = k == 0, k == len(pieces) - 1
        lo = at if first else at - crossfade / 2
        hi = at + d if last else at + d + crossfade / 2
        part = play(x_song, RATE, rate=RATE, length=length, start=lo, end=hi,
                    song_start=p - b * (at - lo), speed=b).astype(np.float64)  # fmt: skip
        if crossfade:
            if not first:
                part *= np.sin(0.5 * np.pi * np.clip((t - lo) / crossfade, 0, 1)) ** 2
            if not last:
                part *= np.sin(0.5 * np.pi * np.clip((hi - t) / crossfade, 0, 1)) ** 2
        x += part
        mappings.append(Mapping(p - b * at, b))
        at += d
        if not last:
            seams.append(at)
    if rt60:
        x = reverberate(x.astype(np.float32), impulse_response(rng, RATE, rt60=rt60, drr_db=4.0))
    if snr_db is not None:
        noise = pink_noise(rng, length)
        noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
        x = x + noise
    dance = Audio(np.asarray(x, np.float32), RATE, 0.0)
    return Edit(dance, tuple(mappings), tuple(seams), (start, at))


def reference(music: NDArray[np.float32] | None = None) -> Audio:
    return Audio(song() if music is None else music, RATE, 0.0)


def error_ms(found: Mapping, truth: Mapping, t: float) -> float:
    return abs(found.bgm_time(t) - truth.bgm_time(t)) * 1000


EDITS = {
    # A section cut out: the song jumps 22 s forward.
    "jump forward": dict(pieces=((5.0, 20.0), (47.3, 15.0))),
    # A chorus again: the song jumps 15 s back, with a little drift.
    "jump back": dict(pieces=((10.0, 22.0), (16.7, 14.0)), drift_ppm=120.0, seed=1),
    "three pieces": dict(pieces=((5.0, 12.0), (41.1, 10.0), (21.7, 14.0)), seed=2),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_finds_each_piece_and_its_seams(name: str) -> None:
    edit = record_edit(**EDITS[name])  # type: ignore[arg-type]
    found = align_signals(edit.dance, reference())
    pieces = found.pieces
    assert len(pieces) == len(edit.mappings)
    for piece, truth in zip(pieces, edit.mappings, strict=True):
        middle = (piece.start + piece.end) / 2
        assert error_ms(piece.mapping, truth, middle) < 0.5, name
        assert piece.mapping.scale == pieces[0].mapping.scale  # one clock for every piece
    assert abs(pieces[0].mapping.drift_ppm - edit.mappings[0].drift_ppm) < 5.0
    for piece, seam in zip(pieces[1:], edit.seams, strict=True):
        # Hard cuts: within a few ms (the hardest here, 10 ms, is where the later piece starts
        # quietly under the earlier one's reverb).
        assert abs(piece.start - seam) < 0.012, (name, piece.start, seam)
    # The music spans every piece: from the first one's start to the last one's end, each
    # edge within what the room's reverberation and a window's reach blur (0.2 s).
    assert abs(found.music.start - edit.music[0]) < 0.2
    assert abs(found.music.end - edit.music[1]) < 0.2
    # The main piece is the one with the most evidence, and only the pieces' lines are left
    # out of the runner-ups.
    assert found.mapping in {p.mapping for p in pieces}
    for candidate in found.candidates:
        assert all(error_ms(candidate.mapping, p.mapping, 0.0) > 20 for p in pieces)
    # The plot's windows agree with their own piece's line.
    inside = found.windows.inlier
    lags = found.windows.lags[inside] + found.windows.times[inside]
    predicted = bgm_times(pieces, found.windows.times[inside])
    assert np.max(np.abs(lags - predicted)) < 0.002


def test_one_piece_is_never_split() -> None:
    # Forty seconds of the song as it is, in a hard room, with a song whose sections echo
    # each other: the runner-up lines stay candidates.
    edit = record_edit(((5.0, 40.0),), rt60=1.2, snr_db=5.0, seed=3)
    found = align_signals(edit.dance, reference())
    assert len(found.pieces) == 1
    assert found.pieces[0].mapping == found.mapping
    assert error_ms(found.mapping, edit.mappings[0], 20.0) < 0.5
    assert found.pieces[0].start == found.music.start
    assert found.pieces[0].end == found.music.end


def test_repeated_chorus_in_one_piece_is_a_candidate_not_a_piece() -> None:
    # The song plays its 20–32 s section twice; the class plays 26–50 s of it straight
    # through, so a second line matches the repeated section on the SAME dance interval.
    music = song(TRACK, (20.0, 32.0))
    edit = record_edit(((26.0, 24.0),), music=music, seed=4)
    found = align_signals(edit.dance, reference(music))
    assert len(found.pieces) == 1
    assert error_ms(found.mapping, edit.mappings[0], 15.0) < 0.5
    shifts = [c.mapping.offset - found.mapping.offset for c in found.candidates]
    assert any(abs(abs(s) - 12.0) < 0.01 for s in shifts), shifts


@pytest.mark.parametrize("crossfade", [0.0, 0.3])
def test_seam_between_two_known_lines(crossfade: float) -> None:
    edit = record_edit(((8.0, 12.0), (52.9, 12.0)), crossfade=crossfade, rt60=0.0, snr_db=20.0)
    signals = Signals(edit.dance, reference())
    seam = edit.seams[0]
    # From a rough bracket (the last and first agreeing windows) to the seam itself; a
    # crossfade's seam is its centre.
    found = find_seam(signals, *edit.mappings, seam - 1.2, seam + 0.9)
    assert abs(found - seam) < (0.001 if crossfade == 0 else 0.02), found - seam


def test_piece_helpers() -> None:
    pieces = (
        Piece(1.0, 10.0, Mapping(5.0)),
        Piece(10.0, 20.0, Mapping(30.0)),
        Piece(20.0, 30.0, Mapping(-4.0)),
    )
    assert piece_at(pieces, 0.0) is pieces[0]
    assert piece_at(pieces, 10.0) is pieces[1]
    assert piece_at(pieces, 35.0) is pieces[2]
    times = np.array([2.0, 9.99, 10.0, 25.0])
    assert bgm_times(pieces, times).tolist() == pytest.approx([7.0, 14.99, 40.0, 21.0])
    nudged = pieces[1].nudged(20.0)
    assert nudged.mapping.offset == pytest.approx(29.98)
    assert (nudged.start, nudged.end) == (10.0, 20.0)


LOOP_EDITS = {
    "two pieces, hard cut": (((16.0, 16.0), (72.0, 14.0)), 0.0),
    "two pieces, crossfade": (((16.0, 16.0), (72.0, 14.0)), 0.2),
    "three pieces": (((18.0, 14.0), (74.0, 12.0), (40.0, 12.0)), 0.0),
}


@pytest.mark.parametrize("name", sorted(LOOP_EDITS))
def test_a_piece_hidden_by_a_drum_loop_is_found(name: str) -> None:
    # A song built from loops: its sections play the same drum samples bar after bar, so the
    # fine windows hold one piece's line over the others too (whole bars away); the band
    # energies follow each piece's chords and melody.
    pieces, crossfade = LOOP_EDITS[name]
    pop = scipy.signal.resample_poly(studio_song("studio:pop:full").mono(), 160, 441)
    music = pop.astype(np.float32)
    edit = record_edit(pieces, music=music, crossfade=crossfade, rt60=0.4, snr_db=20.0,
                       start=2.0, tail=2.0)  # fmt: skip
    found = align_signals(edit.dance, reference(music))
    assert len(found.pieces) == len(pieces)
    for piece, truth in zip(found.pieces, edit.mappings, strict=True):
        assert error_ms(piece.mapping, truth, (piece.start + piece.end) / 2) < 0.5
    # Where both lines play the same drum hits the switch is heard late: a seam lands up to
    # a tenth of a beat early.
    for piece, seam in zip(found.pieces[1:], edit.seams, strict=True):
        assert -0.06 < piece.start - seam < 0.005, (name, piece.start, seam)
    assert found.significance > 30.0
