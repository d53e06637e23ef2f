"""Speed and kind guesses: a resampled version and a pitch-kept tempo change are told apart."""

from __future__ import annotations

import pytest

from beatsync.engine.alignment.features import signal_band_features
from beatsync.engine.alignment.tempo import pitch_ratios, speed_guesses, tempo_ratios
from beatsync.engine.media.decode import decode_audio


def _guesses(case):  # type: ignore[no-untyped-def]
    dance, bgm = decode_audio(case.dance), decode_audio(case.bgm)
    dance_bands = signal_band_features(dance.samples, dance.rate)
    bgm_bands = signal_band_features(bgm.samples, bgm.rate)
    return (
        speed_guesses(dance_bands, bgm_bands, dance.samples, bgm.samples, dance.rate),
        tempo_ratios(dance_bands, bgm_bands),
        pitch_ratios(dance.samples, bgm.samples, dance.rate),
    )


@pytest.mark.parametrize(
    ("name", "pitch_kept"), [("small-resampled-080", False), ("small-tempo-075", True)]
)
def test_the_first_guess_is_the_true_speed_and_kind(
    small_case, name: str, pitch_kept: bool
) -> None:  # type: ignore[no-untyped-def]
    case = small_case(name)
    guesses, tempos, pitches = _guesses(case)
    best = guesses[0]
    assert best.pitch_kept is pitch_kept
    # Each guess is searched over ±1.2 %: it must land well inside that.
    assert best.ratio == pytest.approx(case.truth.scale, rel=0.003)
    assert tempos[0][0] == pytest.approx(case.truth.scale, rel=0.003)
    expected_pitch = 1.0 if pitch_kept else case.truth.scale
    assert pitches[0][0] == pytest.approx(expected_pitch, rel=0.003)


def test_few_guesses_keep_a_refusal_cheap(small_case) -> None:  # type: ignore[no-untyped-def]
    guesses, *_ = _guesses(small_case("small-mismatch"))
    assert len(guesses) <= 4
    assert all(0.47 <= g.ratio <= 1.56 for g in guesses)
