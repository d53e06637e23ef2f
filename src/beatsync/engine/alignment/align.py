"""Align a live recording to its reference: ``bgm_time = offset + scale × dance_time``.

The recipe: log band energies at 100 Hz find candidate lines (:mod:`.search`), at speed 1 first,
then, if nothing is found there, at the few speeds and kinds (resampled, or pitch kept) that the
recordings' rhythm and pitch suggest (:mod:`.tempo`), and last on whitened waveforms
(:mod:`.waveform`), which a loud reverberant room does not flatten as it does band energies; a
line at speed 1 that does not lock is moved onto the waveform from up to half a second away
(:mod:`.wide`) and locked again; frame-averaged
GCC-PHAT in 2-second windows measures the residual lag of each window to a fraction of a sample
(:mod:`.gcc`, :mod:`.fine`); a robust fit over the windows gives offset and scale
(:mod:`.linefit`); the count and strength
of agreeing windows give the confidence. When no line is supported the recordings do not share
the music and :class:`MusicMismatchError` is raised: there is no fallback to offset 0.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..errors import MusicMismatchError
from ..mapping import Mapping
from ..media.decode import Audio, decode_audio
from ..piece import Piece, bgm_times
from .direct import direct_sound
from .edit import assemble, finish
from .features import (
    FEATURE_RATE,
    band_features,
    onset_envelope,
    pitched_band_features,
    power_spectrogram,
    signal_band_features,
)
from .fine import Fit, Signals, WindowTrack, measure_mapping, refine
from .pieces import Stretch, find_stretches
from .presence import music_span
from .search import Line, Speed, coarse_lines
from .span import MusicSpan
from .tempo import speed_guesses
from .waveform import waveform_lines
from .wide import wide_lock

__all__ = [
    "AlignParams",
    "Alignment",
    "Candidate",
    "Mapping",
    "Piece",
    "WindowTrack",
    "align_files",
    "align_signals",
    "assess_mapping",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One answer: a mapping, how sure we are of it, and the share of windows that agree."""

    mapping: Mapping
    confidence: float
    support: float


@dataclass(frozen=True, slots=True)
class Alignment:
    """The answer of :func:`align_signals`.

    ``music`` is the dance-time span where the reference's music plays in the live recording
    (with its edges' evidence); ``activity`` is a (times, score) curve of how well each moment
    matches, score in [0, 1]; ``envelopes`` is (times, dance envelope, reference envelope mapped
    onto dance time), three arrays of one length, envelopes normalised to [0, 1], for the plot.

    ``pieces`` are the stretches of an edit in dance-time order, each with its own mapping (one
    piece, over ``music``, for a recording of the song as it is); ``mapping``
    is the main piece's, the one with the most evidence, and ``windows`` are each piece's
    windows on its own interval.
    """

    mapping: Mapping
    confidence: float
    candidates: tuple[Candidate, ...]
    windows: WindowTrack
    music: MusicSpan
    activity: tuple[NDArray[np.float64], NDArray[np.float64]] = field(repr=False)
    envelopes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] = field(
        repr=False
    )
    pieces: tuple[Piece, ...] = ()

    @property
    def parts(self) -> tuple[Piece, ...]:
        """``pieces``, or the one piece ``mapping`` makes over ``music`` when none are set."""
        return self.pieces or (Piece(self.music.start, self.music.end, self.mapping),)


_SAME_PITCH = 0.003  # speeds this close to 1 draw the plot's envelope from unscaled bands
# Share of the windows a line found by a second look must hold (:func:`_plausible`).
_SECOND_LOOK_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class AlignParams:
    """Knobs of the alignment; the defaults are the tested ones.

    ``speeds``: resampled speed ratios tried when the recording is not at the reference's speed
    (1.0 is always tried first); ``None`` (the default) tries the few speeds of either kind that
    the recordings' rhythm and pitch suggest, ``max_guesses`` of them at most. ``window`` and
    ``hop``: length and spacing of the measuring windows, seconds; ``max_windows`` caps their
    number (spreading them further apart). ``offset_hint``: a reference time (s) at dance time
    0 given by a person; only lines within ``hint_radius`` seconds of it are considered.
    ``min_windows``: agreeing windows needed to accept an answer. ``min_confidence``: refuse
    when the answer's own evidence is below this (the confidence
    reported also divides it with equally good runner-ups, and may be lower). ``candidates``:
    how many coarse lines are locked and compared.
    """

    speeds: tuple[float, ...] | None = None
    max_guesses: int = 4
    window: float = 2.0
    hop: float = 1.0
    max_windows: int = 600
    offset_hint: float | None = None
    hint_radius: float = 1.0
    min_windows: int = 5
    min_confidence: float = 0.5
    candidates: int = 3


def align_files(
    dance: str | os.PathLike[str],
    bgm: str | os.PathLike[str],
    *,
    params: AlignParams | None = None,
) -> Alignment:
    """Decode both files' audio at 16 kHz mono and align them with :func:`align_signals`."""
    return align_signals(decode_audio(dance), decode_audio(bgm), params=params)


def align_signals(dance: Audio, bgm: Audio, *, params: AlignParams | None = None) -> Alignment:
    """Find ``bgm_time = offset + scale × dance_time``.

    Parameters
    ----------
    dance, bgm
        Mono audio at the same rate (16 kHz is plenty), each with its start time on its file's
        timeline.
    params
        Search settings.

    Returns
    -------
    Alignment
        The mapping, a confidence in [0, 1], runner-up candidates, the per-window lags, the span
        of the dance recording where the music is heard, and curves for the plot.

    Raises
    ------
    MusicMismatchError
        When no mapping is supported by enough of the recording.
    """
    p = params or AlignParams()
    if dance.rate != bgm.rate:
        raise ValueError("both signals must have the same sample rate")
    # Two threads share each step (the FFTs and NumPy's loops let go of the interpreter lock):
    # both recordings' features, the coarse search's batches, the candidates, the frames of
    # the music span. No task waits on another, so one pool serves them all.
    with ThreadPoolExecutor(2, thread_name_prefix="beatsync-align") as pool:
        return _align(dance, bgm, p, pool)


def _align(dance: Audio, bgm: Audio, p: AlignParams, pool: ThreadPoolExecutor) -> Alignment:
    signals = Signals(dance, bgm)
    # Each answer's line before it was moved onto the direct sound, by the answer's id: the
    # loudest arrival, which short frames follow best when they tell where the music is heard.
    loudest: dict[int, Mapping] = {}
    bgm_job = pool.submit(signal_band_features, bgm.samples, bgm.rate, workers=1)
    unit_bands = signal_band_features(dance.samples, dance.rate, workers=1)
    bgm_bands = bgm_job.result()

    # The bands read at other pitches, when a change of speed needs them: the pitches asked
    # for together are read in one pass over the signal.
    pitched: dict[float, NDArray[np.float32]] = {}
    pitched_lock = threading.Lock()

    def read_at(pitches: set[float]) -> None:
        with pitched_lock:
            wanted = sorted(pitches - {1.0} - pitched.keys())
            bands = pitched_band_features(dance.samples, dance.rate, wanted)
            pitched.update(zip(wanted, bands, strict=True))

    def dance_bands(pitch: float) -> NDArray[np.float32]:
        if pitch == 1.0:
            return unit_bands
        read_at({pitch})
        return pitched[pitch]

    def search(speeds: tuple[Speed, ...]) -> list[Fit]:
        read_at({s.pitch for s in speeds})
        lines = coarse_lines(
            dance_bands,
            bgm_bands,
            speeds=speeds,
            dance_start=dance.start,
            bgm_start=bgm.start,
            max_lines=p.candidates + 1,
            pool=pool,
        )
        at_one = speeds == (Speed(1.0),)
        return lock_all(lines, hint_alone=at_one, wide=at_one)

    def lock_all(
        lines: list[Line], *, hint_alone: bool, wide: bool, second_look: bool = False
    ) -> list[Fit]:
        if p.offset_hint is not None:
            hint = p.offset_hint
            lines = [ln for ln in lines if abs(ln.offset - hint) <= p.hint_radius]
            if not lines and hint_alone:
                lines = [Line(hint, 1.0, 0.0)]
        # Runner-up lines with a fraction of the best one's votes are not worth locking.
        top = lines[0].votes if lines else 0.0
        worth = [ln for ln in lines[: p.candidates] if ln.votes >= 0.3 * top]
        # Candidates side by side keep both cores busy: their FFTs then run on one thread each.
        signals.fft_workers = 1 if len(worth) > 1 else -1

        def lock(line: Line) -> Fit | None:
            fit = refine(signals, line, window=p.window, hop=p.hop, max_windows=p.max_windows)
            if wide and not _accepted(fit, p):
                # A reverberant room can leave the band energies' line beyond the fine windows'
                # reach: the waveform's own, from up to half a second away.
                shifted = wide_lock(signals, line)
                if shifted is not None:
                    again = refine(
                        signals, shifted, window=p.window, hop=p.hop, max_windows=p.max_windows
                    )
                    if (
                        again is not None
                        and _plausible(again)
                        and (fit is None or again.evidence > fit.evidence)
                    ):
                        fit = again
            if fit is None or (second_look and not _plausible(fit)):
                return None
            # The windows follow the loudest arrival; the answer is the first one.
            moved = direct_sound(
                signals, fit, window=p.window, hop=p.hop, max_windows=p.max_windows
            )
            loudest[id(moved)] = fit.mapping
            return moved

        try:
            fits = list(pool.map(lock, worth))
        finally:
            signals.fft_workers = -1
        return [f for f in fits if f is not None]

    fits = search((Speed(1.0),))
    if not _accepted(_best(fits), p):
        fits += search(_other_speeds(dance, bgm, unit_bands, bgm_bands, p))
        pitched.clear()  # the guesses' pitches; the answer's own is read again if needed
    if not _accepted(_best(fits), p):
        # The band energies can miss a loud reverberant room altogether; the waveform may not.
        lines = waveform_lines(dance, bgm, max_lines=p.candidates + 1, pool=pool)
        fits += lock_all(lines, hint_alone=False, wide=True, second_look=True)
    fits = _distinct(sorted(fits, key=lambda f: -f.score))
    best = _best(fits)
    if best is None or not _accepted(best, p):
        raise MusicMismatchError(_refusal(best, dance, bgm, p))
    # A time-stretched recording is measured frame by frame, not by the windows that find an
    # edit's pieces: it is taken as one piece.
    stretches = (
        []
        if best.mapping.pitch_kept
        else find_stretches(
            signals,
            best,
            [f for f in fits if f is not best],
            dance_bands=dance_bands,
            bgm_bands=bgm_bands,
            window=p.window,
            hop=p.hop,
            pool=pool,
        )
    )
    if len({id(s.fit) for s in stretches}) > 1:
        same_pitch = abs(best.mapping.scale - 1.0) < _SAME_PITCH
        bands = unit_bands if same_pitch else dance_bands(best.mapping.scale)
        return _edit(signals, fits, stretches, bands, bgm_bands, p.window, p.hop, pool)
    shares = _shares([f.score for f in fits])
    confidence = _confidence(best) * shares[0]
    candidates = tuple(
        Candidate(f.mapping, round(_confidence(f) * share, 4), f.hits / max(f.windows, 1))
        for f, share in zip(fits[1:], shares[1:], strict=True)
    )
    times, score, music = music_span(signals, loudest.get(id(best), best.mapping), best, pool=pool)
    log.debug(
        "aligned: offset %.4f s, drift %.1f ppm, %d/%d windows, confidence %.3f",
        best.mapping.offset,
        best.mapping.drift_ppm,
        best.hits,
        best.windows,
        confidence,
    )
    return Alignment(
        mapping=best.mapping,
        confidence=round(confidence, 4),
        candidates=candidates,
        windows=best.track,
        music=music,
        activity=(times, score),
        envelopes=_envelopes(
            # Clock drift leaves the pitch as it is, as far as a plot can tell.
            unit_bands
            if abs(best.mapping.scale - 1.0) < _SAME_PITCH or best.mapping.pitch_kept
            else dance_bands(best.mapping.scale),
            bgm_bands,
            dance.start,
            bgm.start,
            (Piece(dance.start, dance.end, best.mapping),),
        ),
        pieces=(Piece(music.start, music.end, best.mapping),),
    )


def _edit(
    signals: Signals,
    fits: list[Fit],
    stretches: list[Stretch],
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    window: float,
    hop: float,
    pool: ThreadPoolExecutor,
) -> Alignment:
    """The alignment of an edit: several pieces, the best line's the main one; the lines that
    became pieces are no longer candidates."""
    best = fits[0]
    edit = assemble(signals, stretches, window=window, hop=hop, pool=pool)
    used = {id(f) for f in edit.fits}
    ranked = [best, *(f for f in fits[1:] if id(f) not in used)]
    shares = _shares([f.score for f in ranked])
    main = max(
        (p for p, f in zip(edit.pieces, edit.fits, strict=True) if f is best),
        key=lambda p: p.duration,
    )
    log.debug("aligned an edit of %d pieces, seams at %s", len(edit.pieces),
              ", ".join(f"{p.start:.3f}" for p in edit.pieces[1:]))  # fmt: skip
    return Alignment(
        mapping=main.mapping,
        confidence=round(_confidence(best) * shares[0], 4),
        candidates=tuple(
            Candidate(f.mapping, round(_confidence(f) * share, 4), f.hits / max(f.windows, 1))
            for f, share in zip(ranked[1:], shares[1:], strict=True)
        ),
        windows=edit.windows,
        music=edit.music,
        activity=edit.activity,
        envelopes=_envelopes(
            dance_bands, bgm_bands, signals.dance.start, signals.bgm.start, edit.pieces
        ),
        pieces=edit.pieces,
    )


def assess_mapping(
    dance: Audio,
    bgm: Audio,
    mapping: Mapping,
    *,
    params: AlignParams | None = None,
    pieces: tuple[Piece, ...] | None = None,
) -> Alignment:
    """Describe a mapping chosen by a person (another candidate, an earlier answer) without
    searching: how many windows agree with it, its confidence, and where the music is heard.

    ``pieces``: an edit's pieces (an earlier answer), kept with their seams; ``mapping`` is then
    the main one (its confidence is reported). Never refuses: the choice is the caller's.
    Other parameters as for :func:`align_signals`.
    """
    p = params or AlignParams()
    if dance.rate != bgm.rate:
        raise ValueError("both signals must have the same sample rate")
    signals = Signals(dance, bgm)
    if pieces is not None and len(pieces) > 1:
        return _assess_pieces(signals, mapping, pieces, p)
    fit = measure_mapping(signals, mapping, window=p.window, hop=p.hop, max_windows=p.max_windows)
    times, score, music = music_span(signals, mapping, fit)
    return Alignment(
        mapping=mapping,
        confidence=round(_confidence(fit), 4),
        candidates=(),
        windows=fit.track,
        music=music,
        activity=(times, score),
        envelopes=_envelopes(
            band_features(
                power_spectrogram(dance.samples, dance.rate),
                dance.rate,
                pitch=1.0 if mapping.pitch_kept else mapping.scale,
            ),
            signal_band_features(bgm.samples, bgm.rate),
            dance.start,
            bgm.start,
            (Piece(dance.start, dance.end, mapping),),
        ),
        pieces=(Piece(music.start, music.end, mapping),),
    )


def _assess_pieces(
    signals: Signals, mapping: Mapping, pieces: tuple[Piece, ...], p: AlignParams
) -> Alignment:
    fits = [
        measure_mapping(signals, piece.mapping, window=p.window, hop=p.hop,
                        max_windows=p.max_windows)
        for piece in pieces
    ]  # fmt: skip
    edit = finish(signals, pieces, fits, (pieces[0].start, pieces[-1].end))
    main = next((f for f, piece in zip(fits, pieces, strict=True) if piece.mapping == mapping),
                fits[0])  # fmt: skip
    dance, bgm = signals.dance, signals.bgm
    return Alignment(
        mapping=mapping,
        confidence=round(_confidence(main), 4),
        candidates=(),
        windows=edit.windows,
        music=edit.music,
        activity=edit.activity,
        envelopes=_envelopes(
            band_features(
                power_spectrogram(dance.samples, dance.rate), dance.rate, pitch=mapping.scale
            ),
            signal_band_features(bgm.samples, bgm.rate),
            dance.start,
            bgm.start,
            edit.pieces,
        ),
        pieces=edit.pieces,
    )


def _other_speeds(
    dance: Audio,
    bgm: Audio,
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    p: AlignParams,
) -> tuple[Speed, ...]:
    """The speeds other than 1 worth a coarse search: the caller's resampled ones, or those
    the recordings' rhythm and pitch suggest (a handful, so a refusal stays cheap)."""
    if p.speeds is not None:
        return tuple(Speed(s) for s in p.speeds if s != 1.0)
    guesses = speed_guesses(
        dance_bands, bgm_bands, dance.samples, bgm.samples, dance.rate, limit=p.max_guesses
    )
    log.debug("speed guesses: %s", guesses)
    return tuple(Speed(g.ratio, g.pitch_kept) for g in guesses)


def _best(fits: list[Fit]) -> Fit | None:
    return max(fits, key=lambda f: f.score, default=None)


def _accepted(fit: Fit | None, p: AlignParams) -> bool:
    return fit is not None and fit.hits >= p.min_windows and _confidence(fit) >= p.min_confidence


def _plausible(fit: Fit) -> bool:
    """Whether a line found by a second look (the wide lock, the waveform search) is held by a
    share of the windows that chance does not give. Those searches try many lags or lines, so
    in a long recording of another song a few windows agree with one of them by chance (8 of
    448 in a 10-minute pair); a true line in a hard room holds most of them (two thirds and
    more in the hardest rooms of the test kit)."""
    return fit.hits >= _SECOND_LOOK_SHARE * fit.windows


def _confidence(fit: Fit) -> float:
    """Evidence (agreeing windows weighted by peak prominence) to [0, 1]: about 4 clear windows
    give 0.63, 8 give 0.9. One window's worth is discounted for what chance can bring."""
    return float(1.0 - np.exp(-max(fit.evidence - 1.0, 0.0) / 3.0))


def _shares(scores: list[float]) -> list[float]:
    """Each answer's share of the support (by squared score): 1 for an answer alone, ½ each for
    two that match equally well (a section the song repeats exactly)."""
    squares = np.square(np.asarray(scores, dtype=np.float64))
    total = float(squares.sum())
    return [float(v / total) if total > 0 else 0.0 for v in squares]


def _refusal(best: Fit | None, dance: Audio, bgm: Audio, p: AlignParams) -> str:
    shortest = min(dance.duration, bgm.duration)
    if shortest < 2 * p.window + p.hop * (p.min_windows - 1):
        return f"the recordings are too short to compare ({shortest:.1f} s)"
    if best is None or best.hits == 0:
        return "the recordings do not share the music (no stretch of one matches the other)"
    return (
        "the recordings do not share the music "
        f"({best.hits} of {best.windows} windows agree with the best candidate, too few "
        "or too faint to be sure)"
    )


def _distinct(fits: list[Fit]) -> list[Fit]:
    kept: list[Fit] = []
    for fit in fits:
        if all(not _close(fit, k) for k in kept):
            kept.append(fit)
    return kept


def _close(a: Fit, b: Fit) -> bool:
    t = a.track.times
    mid = float(np.median(t)) if len(t) else 0.0
    return abs(a.mapping.bgm_time(mid) - b.mapping.bgm_time(mid)) < 0.02


def _envelopes(
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    dance_start: float,
    bgm_start: float,
    pieces: tuple[Piece, ...],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    dance_env = onset_envelope(dance_bands)
    bgm_env = onset_envelope(bgm_bands)
    times = dance_start + np.arange(len(dance_env)) / FEATURE_RATE
    where = (bgm_times(pieces, times) - bgm_start) * FEATURE_RATE
    mapped = np.interp(where, np.arange(len(bgm_env)), bgm_env, left=0.0, right=0.0)
    return times, dance_env, mapped
