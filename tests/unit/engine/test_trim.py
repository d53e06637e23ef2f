"""find_cut(): music span, reference coverage, black or frozen picture, and overrides."""

from __future__ import annotations

import pytest

from beatsync.engine import EdgeEvidence, MusicSpan, OptionsError, find_cut, probe


def _cut(case, music=None, **kwargs):  # type: ignore[no-untyped-def]
    truth = case.truth
    dance = probe(case.dance, require_video=True)
    bgm = probe(case.bgm)
    music = music or MusicSpan(truth.music_start, truth.music_end)
    return find_cut(dance, bgm, truth.mapping, music, **kwargs)


@pytest.mark.parametrize("name", ["small-black-tail", "small-frozen-tail"])
def test_bad_picture_at_the_end_is_cut(small_case, name: str) -> None:  # type: ignore[no-untyped-def]
    case = small_case(name)
    cut = _cut(case)
    frame = 1.0 / case.truth.fps
    assert case.truth.cut is not None
    assert cut.end == pytest.approx(case.truth.cut[1], abs=1.5 * frame)
    assert cut.end_reason == "picture"
    assert cut.start == pytest.approx(case.truth.cut[0], abs=1e-6)
    assert cut.start_reason == "music"


def test_reference_coverage_bounds_the_cut(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-partial")
    cut = _cut(case)
    assert case.truth.cut is not None
    assert cut.start == pytest.approx(case.truth.cut[0], abs=1e-3)
    assert cut.end == pytest.approx(case.truth.cut[1], abs=1e-3)
    assert (cut.start_reason, cut.end_reason) == ("reference", "reference")


def test_overrides(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    cut = _cut(case, start=1.0, end=5.5)
    assert (cut.start, cut.end, cut.start_reason, cut.end_reason) == (1.0, 5.5, "user", "user")
    whole = _cut(case, trim=False)
    assert whole.start == pytest.approx(0.0, abs=1e-3)
    assert whole.end == pytest.approx(case.truth.duration, abs=0.05)
    assert whole.start_reason == whole.end_reason == "video"


@pytest.mark.parametrize(("start", "end"), [(-2.0, None), (None, 99.0), (6.0, 5.0)])
def test_impossible_edges_are_refused(small_case, start, end) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OptionsError) as caught:
        _cut(small_case("small-clean"), start=start, end=end)
    assert caught.value.code == "VALIDATION_ERROR"


def test_a_doubtful_music_edge_says_so(small_case) -> None:  # type: ignore[no-untyped-def]
    case = small_case("small-clean")
    truth = case.truth
    sure, unsure = EdgeEvidence(0.99, 0.0), EdgeEvidence(0.6, 2.5)
    cut = _cut(case, MusicSpan(truth.music_start, truth.music_end, unsure, sure))
    assert (cut.start, cut.end) == (truth.music_start, truth.music_end)
    assert (cut.start_reason, cut.end_reason) == ("music-uncertain", "music")
    assert (cut.start_evidence, cut.end_evidence) == (unsure, sure)


def test_a_fact_inside_the_music_keeps_what_is_left_unheard(small_case) -> None:  # type: ignore[no-untyped-def]
    # The music reaches the reference's edges with its last 3 s unheard; the reference stops
    # 1 s before the music's edge, so 2 s of the doubtful part are still in the cut.
    case = small_case("small-partial")
    truth = case.truth
    lo, hi = truth.reference_span
    music = MusicSpan(lo - 0.5, hi + 1.0, EdgeEvidence(0.95, 0.2), EdgeEvidence(0.95, 3.0))
    cut = _cut(case, music)
    assert (cut.start_reason, cut.end_reason) == ("reference", "reference")
    assert cut.start_evidence == EdgeEvidence(1.0, 0.0)
    assert cut.end_evidence.certainty == 1.0
    assert cut.end_evidence.unheard == pytest.approx(2.0, abs=1e-3)
