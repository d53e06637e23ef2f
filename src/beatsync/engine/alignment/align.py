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
the music and :class:`MusicMismatchError` is raised: there is no fallback to offset 0. An edit's
answer is judged whole, all its pieces together (:func:`~.acceptance.answer_significance`); and
where the fine windows hold lines whole bars apart alike (a song built from drum loops), the
pieces' lines must also be where the band energies' chords and melody match
(:mod:`.harmony`), or another song built from the same samples is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from ..errors import MusicMismatchError
from ..mapping import Mapping
from ..media.decode import Audio, decode_audio
from ..piece import Piece
from .acceptance import (
    Trials,
    accepted,
    answer_significance,
    confidence,
    ranked,
    refusal,
    significance,
)
from .answer import Alignment, Candidate, envelopes
from .assess import assess_mapping
from .direct import direct_sound
from .edit import assemble
from .features import pitched_band_features, signal_band_features
from .fine import Fit, WindowTrack, refine
from .harmony import ALIKE, Harmony, standout
from .params import AlignParams
from .pieces import Stretch, find_stretches
from .presence import music_span
from .search import Line, Speed, coarse_lines
from .signals import Signals
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

_SAME_PITCH = 0.003  # speeds this close to 1 draw the plot's envelope from unscaled bands
_MIN_COMPARED = 3  # band windows needed to judge a line held by the beat alone


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
    # The breadth of the search so far, which the answer must stand out of.
    trials = Trials(dance.duration, bgm.duration)
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

    def read_at(pitches: set[float], *, shared: bool = False) -> None:
        # ``shared``: the caller waits on nothing the pool runs, so the pool's threads may
        # take halves of the signal.
        with pitched_lock:
            wanted = sorted(pitches - {1.0} - pitched.keys())
            bands = pitched_band_features(
                dance.samples, dance.rate, wanted, pool=pool if shared else None
            )
            pitched.update(zip(wanted, bands, strict=True))

    def dance_bands(pitch: float) -> NDArray[np.float32]:
        if pitch == 1.0:
            return unit_bands
        read_at({pitch})
        return pitched[pitch]

    def search(speeds: tuple[Speed, ...]) -> list[Fit]:
        read_at({s.pitch for s in speeds}, shared=True)
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
        # Candidates side by side keep both cores busy: their FFTs then run on one thread each,
        # until the last one is left alone.
        signals.fft_workers = 1 if len(worth) > 1 else -1
        unfinished = [len(worth)]
        count_lock = threading.Lock()

        def lock_one(line: Line) -> Fit | None:
            try:
                return lock(line)
            finally:
                with count_lock:
                    unfinished[0] -= 1
                    if unfinished[0] <= 1:
                        signals.fft_workers = -1

        def lock(line: Line) -> Fit | None:
            fit = refine(signals, line, window=p.window, hop=p.hop, max_windows=p.max_windows)
            if wide and not accepted(fit, p, trials):
                # A reverberant room can leave the band energies' line beyond the fine windows'
                # reach: the waveform's own, from up to half a second away.
                shifted = wide_lock(signals, line)
                if shifted is not None:
                    again = refine(
                        signals, shifted, window=p.window, hop=p.hop, max_windows=p.max_windows
                    )
                    if (
                        again is not None
                        and significance(again, trials) >= p.min_significance
                        and (fit is None or again.evidence > fit.evidence)
                    ):
                        fit = again
            # A second look's lines that chance explains are dropped before they can shadow
            # the first look's: every answer is held to the same test in the end.
            if fit is None or (second_look and significance(fit, trials) < p.min_significance):
                return None
            # The windows follow the loudest arrival; the answer is the first one.
            moved = direct_sound(
                signals, fit, window=p.window, hop=p.hop, max_windows=p.max_windows
            )
            loudest[id(moved)] = fit.mapping
            return moved

        try:
            fits = list(pool.map(lock_one, worth))
        finally:
            signals.fft_workers = -1
        return [f for f in fits if f is not None]

    fits = search((Speed(1.0),))
    if not accepted(_best(fits), p, trials):
        others = _other_speeds(dance, bgm, unit_bands, bgm_bands, p, pool)
        trials = Trials(dance.duration, bgm.duration, 1 + len(others))
        fits += search(others)
        pitched.clear()  # the guesses' pitches; the answer's own is read again if needed
    if not accepted(_best(fits), p, trials):
        # The band energies can miss a loud reverberant room altogether; the waveform may not.
        # Its lines are at speed 1: the other speeds' resamplings are not needed for them
        # (nor, rarely, made again for an answer at such a speed), so memory stays free.
        with signals.lock:
            signals.stretched.clear()
        lines = waveform_lines(dance, bgm, max_lines=p.candidates + 1, pool=pool)
        fits += lock_all(lines, hint_alone=False, wide=True, second_look=True)
    fits = _distinct(sorted(fits, key=lambda f: -f.score))
    best = _best(fits)
    alone = accepted(best, p, trials)
    # A line that chance could explain on its own may be one piece of an edit whose other
    # pieces hold the rest of the recording: the answer is judged whole.
    if best is None or not (alone or _near_miss(best, p)):
        raise MusicMismatchError(refusal(best, dance, bgm, p, trials))
    harmony = Harmony.of(unit_bands, bgm_bands, dance.start, bgm.start)
    stretches = find_stretches(
        signals,
        best,
        [f for f in fits if f is not best],
        dance_bands=dance_bands,
        bgm_bands=bgm_bands,
        window=p.window,
        hop=p.hop,
        pool=pool,
        harmony=harmony,
    )
    beat = _beat_alone(best, fits, stretches, harmony)
    if beat is not None:
        raise MusicMismatchError(
            "the recordings do not share the music (their beats match but not their harmony: "
            f"{beat[1]} of {beat[0]} windows match best at the lines)"
        )
    # Clock drift leaves the pitch as it is, as far as a plot can tell; so does a tempo change
    # that keeps it.
    same_pitch = abs(best.mapping.scale - 1.0) < _SAME_PITCH or best.mapping.pitch_kept
    if len({id(s.fit) for s in stretches}) > 1:
        bands = unit_bands if same_pitch else dance_bands(best.mapping.scale)
        edit = _edit(signals, fits, stretches, bands, bgm_bands, p.window, p.hop, pool, trials)
        whole = edit.significance
        if not alone and whole < p.min_significance:
            raise MusicMismatchError(refusal(best, dance, bgm, p, trials))
        return dataclasses.replace(edit, significance=round(whole, 2))
    if not alone:
        raise MusicMismatchError(refusal(best, dance, bgm, p, trials))
    sure, candidates = ranked(fits)
    times, score, music = music_span(signals, loudest.get(id(best), best.mapping), best, pool=pool)
    log.debug(
        "aligned: offset %.4f s, drift %.1f ppm, %d/%d windows, confidence %.3f, significance %.1f",
        best.mapping.offset,
        best.mapping.drift_ppm,
        best.hits,
        best.windows,
        sure,
        significance(best, trials),
    )
    return Alignment(
        mapping=best.mapping,
        confidence=round(sure, 4),
        candidates=candidates,
        windows=best.track,
        music=music,
        activity=(times, score),
        envelopes=envelopes(
            unit_bands if same_pitch else dance_bands(best.mapping.scale),
            bgm_bands,
            dance.start,
            bgm.start,
            (Piece(dance.start, dance.end, best.mapping),),
        ),
        pieces=(Piece(music.start, music.end, best.mapping),),
        significance=round(significance(best, trials), 2),
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
    trials: Trials,
) -> Alignment:
    """The alignment of an edit: several pieces, the best line's the main one; the lines that
    became pieces are no longer candidates; the significance is the whole answer's."""
    best = fits[0]
    edit = assemble(signals, stretches, window=window, hop=hop, pool=pool)
    used = {id(f) for f in edit.fits}
    sure, candidates = ranked([best, *(f for f in fits[1:] if id(f) not in used)])
    main = max(
        (p for p, f in zip(edit.pieces, edit.fits, strict=True) if f is best),
        key=lambda p: p.duration,
    )
    log.debug("aligned an edit of %d pieces, seams at %s", len(edit.pieces),
              ", ".join(f"{p.start:.3f}" for p in edit.pieces[1:]))  # fmt: skip
    return Alignment(
        mapping=main.mapping,
        confidence=round(sure, 4),
        candidates=candidates,
        windows=edit.windows,
        music=edit.music,
        activity=edit.activity,
        envelopes=envelopes(
            dance_bands, bgm_bands, signals.dance.start, signals.bgm.start, edit.pieces
        ),
        pieces=edit.pieces,
        significance=answer_significance(edit.pieces, edit.fits, trials),
    )


def _beat_alone(
    best: Fit, fits: list[Fit], stretches: list[Stretch], harmony: Harmony
) -> tuple[int, int] | None:
    """``(windows, standing out)`` (:func:`~.harmony.standout`, over every piece's stretches)
    when the answer is held by the beat alone: other lines hold about as many fine windows as
    ``best`` (the same drums a whole number of bars away), and the band energies match best at
    the pieces' lines in under half of the windows where they agree; None otherwise."""
    if not any(f is not best and f.hits >= ALIKE * best.hits for f in fits):
        return None
    parts = [(s.fit, (s.lo, s.hi)) for s in stretches] or [(best, (-np.inf, np.inf))]
    counts = [standout(harmony, fit, span) for fit, span in parts]
    windows, out = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return (windows, out) if windows >= _MIN_COMPARED and 2 * out < windows else None


def _near_miss(fit: Fit, p: AlignParams) -> bool:
    """Whether ``fit`` fails acceptance on its significance alone: enough windows, evidence
    enough, but too short a stretch of a long recording to stand out of chance by itself."""
    return fit.hits >= p.min_windows and confidence(fit) >= p.min_confidence


def _other_speeds(
    dance: Audio,
    bgm: Audio,
    dance_bands: NDArray[np.float32],
    bgm_bands: NDArray[np.float32],
    p: AlignParams,
    pool: ThreadPoolExecutor,
) -> tuple[Speed, ...]:
    """The speeds other than 1 worth a coarse search: the caller's resampled ones, or those
    the recordings' rhythm and pitch suggest (a handful, so a refusal stays cheap)."""
    if p.speeds is not None:
        return tuple(Speed(s) for s in p.speeds if s != 1.0)
    guesses = speed_guesses(
        dance_bands, bgm_bands, dance.samples, bgm.samples, dance.rate, limit=p.max_guesses,
        pool=pool,
    )  # fmt: skip
    log.debug("speed guesses: %s", guesses)
    return tuple(Speed(g.ratio, g.pitch_kept) for g in guesses)


def _best(fits: list[Fit]) -> Fit | None:
    return max(fits, key=lambda f: f.score, default=None)


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
