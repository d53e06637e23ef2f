"""Built cases: the files are what the spec says, and the truth holds in the media itself."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from scipy import signal as sps

from beatsync.testkit import (
    BuiltCase,
    build_case,
    case_named,
    decode_mono,
    load_song,
    load_track,
    read_frame_indices,
    small_cases,
    standard_cases,
)
from beatsync.testkit.music import cubic_at

Built = Callable[[str], BuiltCase]


def _song_time(
    case: BuiltCase,
    t: float,
    window: float = 1.0,
    search: float = 0.05,
    guess: float | None = None,
) -> float:
    """The song time heard in the dance file at dance time ``t``, measured against the master
    song directly (not through the reference file), by correlation with sub-sample peak,
    within ``search`` seconds of ``guess`` (default: where the first piece puts it)."""
    dance, rate, start = decode_mono(case.dance)
    song = load_song(case.spec)
    b = case.spec.scale
    if guess is None:
        guess = case.spec.play_from + b * (t - case.spec.music_start)
    i0 = round((t - window / 2 - start) * rate)
    seg = dance[i0 : i0 + int(window * rate)]
    s = int(search * rate)
    v = (i0 + np.arange(-s, seg.size + s)) / rate + start - t
    y = cubic_at(song.mono().astype(np.float64), (guess + b * v) * song.rate)
    score = sps.correlate(y, seg, mode="valid", method="fft")
    j = int(np.argmax(score))
    ym, y0, yp = score[j - 1], score[j], score[j + 1]
    frac = 0.5 * (ym - yp) / (ym - 2 * y0 + yp)
    return guess + b * (j - s + frac) / rate


def _truth_song_time(case: BuiltCase, t: float) -> float:
    """Song time implied by the truth: bgm(β) = S(β − bgm_start + r0)."""
    truth = case.truth
    r0 = round(case.spec.ref_start * truth.bgm_rate) / truth.bgm_rate
    return truth.bgm_time(t) - truth.bgm_start + r0


def test_catalogs_are_large_varied_and_uniquely_named() -> None:
    std = standard_cases()
    assert len(std) >= 30
    names = [c.name for c in (*std, *small_cases())]
    assert len(names) == len(set(names))
    assert sum(c.mismatch_track is not None for c in std) >= 4
    assert {c.codec for c in std} == {"h264", "hevc"}
    assert {c.container for c in std} == {"mp4", "mov", "mkv"}
    assert {c.reference for c in std} == {"video", "m4a", "opus", "mp3"}
    assert max(c.room.rt60 for c in std) >= 2.0
    assert min(c.room.snr_db or 99 for c in std) <= -5
    assert max(abs(c.drift_ppm) for c in std) >= 300
    assert min(c.speed for c in std) <= 0.9
    assert max(c.speed for c in std) >= 1.1
    for spec in small_cases():
        length = spec.music_start + spec.play_duration + spec.tail
        assert 12 <= length <= 25
        assert (spec.width, spec.height) == (320, 240)


@pytest.mark.parametrize("name", ["small-clean", "small-drift-speed"])
def test_dance_audio_follows_the_truth_within_1ms(built: Built, name: str) -> None:
    case = built(name)
    m0, m1 = case.truth.music_start, case.truth.music_end
    for t in np.linspace(m0 + 1.0, m1 - 1.0, 5):
        error = (_song_time(case, float(t)) - _truth_song_time(case, float(t))) / case.truth.scale
        assert abs(error) < 1e-3, (t, error)


@pytest.mark.parametrize("name", ["small-clean", "small-hevc-portrait"])
def test_reference_holds_the_cut_song_from_time_zero(built: Built, name: str) -> None:
    case = built(name)
    ref, rate, start = decode_mono(case.bgm)
    song = load_track(case.spec.track).mono().astype(np.float64)
    assert rate == load_track(case.spec.track).rate
    assert start == case.truth.bgm_start == 0.0
    r0 = round(case.spec.ref_start * rate)
    n = 5 * rate
    seg = ref[rate : rate + n]
    score = sps.correlate(song[r0 + rate - 50 : r0 + rate + n + 50], seg, mode="valid")
    assert int(np.argmax(score)) - 50 == 0
    assert case.truth.bgm_duration == pytest.approx(case.spec.ref_end - case.spec.ref_start)


def test_mismatched_reference_is_another_song(built: Built) -> None:
    case = built("small-mismatch")
    truth = case.truth
    assert truth.mismatch
    assert truth.cut is None
    assert math.isnan(truth.offset)
    with pytest.raises(ValueError, match="no mapping"):
        _ = truth.mapping
    ref, rate, _ = decode_mono(case.bgm)
    other = load_track(case.spec.mismatch_track or "").mono().astype(np.float64)
    dance = load_track(case.spec.track).mono().astype(np.float64)
    seg = ref[rate : 4 * rate]
    seg = seg / np.linalg.norm(seg)
    r0 = round(case.spec.ref_start * rate)

    def best(song: np.ndarray) -> float:
        corr = sps.correlate(song, seg, mode="valid", method="fft")
        csum = np.concatenate([[0.0], np.cumsum(song**2)])
        energy = np.sqrt(csum[seg.size :] - csum[: -seg.size])
        return float(np.max(np.abs(corr) / np.maximum(energy, 1e-9)))

    assert best(other[r0 + rate - 100 : r0 + 4 * rate + 100]) > 0.95
    assert best(dance) < 0.5


def test_files_probe_as_specified(built: Built) -> None:
    for name in ["small-clean", "small-hevc-portrait", "small-frozen-tail", "small-drift-speed"]:
        case = built(name)
        spec, truth = case.spec, case.truth
        with av.open(str(case.dance)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert v.codec_context.name == spec.codec
            assert (v.codec_context.width, v.codec_context.height) == (spec.width, spec.height)
            assert a.codec_context.name == "aac"
            assert a.rate == spec.audio_rate
            assert a.channels == 2
            first = next(c.decode(v))
            assert round(first.rotation) % 360 == spec.rotation
            assert c.format.name.split(",")[0] in {"mov", "matroska"}
        if spec.codec == "hevc" and spec.container in ("mp4", "mov"):
            assert b"hvc1" in case.dance.read_bytes()[-200_000:]
        frames = read_frame_indices(case.dance)
        assert len(frames) == truth.frames == round(truth.duration * spec.fps)
        assert [n for _, n in frames] == list(range(truth.frames))
        assert all(abs(p - n / spec.fps) < 1e-6 for p, n in frames if n is not None)
        audio, rate, start = decode_mono(case.dance)
        assert start == 0.0
        assert abs(audio.size / rate - truth.duration) < 0.05
    with av.open(str(built("small-hevc-portrait").bgm)) as c:
        assert not c.streams.video
        assert c.streams.audio[0].codec_context.name == "aac"


def test_black_and_frozen_tails_read_as_such_with_the_code(built: Built) -> None:
    black = built("small-black-tail")
    truth = black.truth
    assert truth.picture_start == 1.0
    assert truth.picture_end == pytest.approx(truth.duration - 2.0)
    assert truth.cut == (truth.music_start, truth.picture_end)
    with av.open(str(black.dance)) as c:
        for frame in c.decode(video=0):
            dark = float(np.mean(frame.to_ndarray(format="gray") <= 38))
            inside = truth.picture_start <= float(frame.time or 0) < truth.picture_end
            assert (dark < 0.9) if inside else (dark >= 0.98)
    frozen = built("small-frozen-tail")
    end = frozen.truth.picture_end
    previous = None
    moving = []
    with av.open(str(frozen.dance)) as c:
        for frame in c.decode(video=0):
            luma = frame.to_ndarray(format="gray").astype(int)
            if previous is not None:
                # Beyond ±10 levels of coding noise, a frozen picture changes only in the code.
                changed = float(np.mean(np.abs(luma - previous) > 10))
                if float(frame.time or 0) >= end:
                    assert changed < 0.02
                else:
                    moving.append(changed)
            previous = luma
    assert np.median(moving) > 0.1


def test_partial_overlap_truth_is_the_intersection(built: Built) -> None:
    case = built("small-partial")
    spec, truth = case.spec, case.truth
    assert truth.offset == pytest.approx(spec.play_from - spec.ref_start - spec.music_start)
    assert truth.reference_span == pytest.approx((6.0, 11.0), abs=1e-4)
    assert truth.cut == pytest.approx((6.0, 11.0), abs=1e-4)
    assert truth.mapping.bgm_time(6.0) == pytest.approx(0.0, abs=1e-4)


def test_rebuild_reuses_identical_files_and_validates(built: Built, tmp_path: Path) -> None:
    case = built("small-clean")
    spec = case_named("small-clean")
    first = build_case(spec, case.dance.parent)
    assert first.truth == case.truth
    assert first.dance.stat().st_mtime == case.dance.stat().st_mtime
    with pytest.raises(ValueError, match="outside song"):
        build_case(replace(spec, name="bad", play_from=50.0), tmp_path)


def test_edit_plays_each_piece_where_its_truth_says(built: Built) -> None:
    case = built("small-edit")
    truth = case.truth
    assert len(truth.pieces) == 2
    assert truth.seams == (truth.pieces[0][1],) == (truth.pieces[1][0],)
    assert truth.pieces[0][0] == truth.music_start
    assert truth.pieces[1][1] == truth.music_end
    (p0, d0), (p1, _) = case.spec.pieces
    assert truth.seams[0] == pytest.approx(case.spec.music_start + d0)
    for (lo, hi, _), p in zip(truth.pieces, (p0, p1), strict=True):
        for t in np.linspace(lo + 1.0, hi - 1.0, 3):
            # Where the piece's song time is heard, to within 1 ms of the truth, searched
            # ±50 ms around a guess 20 ms off.
            guess = p + truth.scale * (t - lo) + 0.02
            error = _song_time(case, float(t), guess=guess) - _truth_song_time(case, float(t))
            assert abs(error / truth.scale) < 1e-3, (t, error)
    assert truth.bgm_time(truth.seams[0] - 0.01) == pytest.approx(
        truth.pieces[0][2] + truth.scale * (truth.seams[0] - 0.01)
    )
    assert truth.bgm_time(truth.seams[0] + 0.01) == pytest.approx(
        truth.pieces[1][2] + truth.scale * (truth.seams[0] + 0.01)
    )
