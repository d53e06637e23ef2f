"""Describe a mapping chosen by a person (another candidate, an earlier answer) without
searching: how many windows agree with it, its confidence, and where the music is heard."""

from __future__ import annotations

from ..mapping import Mapping
from ..media.decode import Audio
from ..piece import Piece
from .acceptance import Trials, answer_significance, confidence, significance
from .answer import Alignment, envelopes
from .edit import finish
from .features import band_features, power_spectrogram, signal_band_features
from .fine import measure_mapping
from .params import AlignParams
from .presence import music_span
from .signals import Signals

__all__ = ["assess_mapping"]


def assess_mapping(
    dance: Audio,
    bgm: Audio,
    mapping: Mapping,
    *,
    params: AlignParams | None = None,
    pieces: tuple[Piece, ...] | None = None,
) -> Alignment:
    """Describe a mapping chosen by a person (another candidate, an earlier answer) without
    searching: how many windows agree with it, its confidence, its significance (as if searched
    at its speed) and where the music is heard.

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
        confidence=round(confidence(fit), 4),
        candidates=(),
        windows=fit.track,
        music=music,
        activity=(times, score),
        envelopes=envelopes(
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
        significance=round(significance(fit, Trials(dance.duration, bgm.duration)), 2),
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
        confidence=round(confidence(main), 4),
        candidates=(),
        windows=edit.windows,
        music=edit.music,
        activity=edit.activity,
        envelopes=envelopes(
            band_features(
                power_spectrogram(dance.samples, dance.rate), dance.rate, pitch=mapping.scale
            ),
            signal_band_features(bgm.samples, bgm.rate),
            dance.start,
            bgm.start,
            edit.pieces,
        ),
        pieces=edit.pieces,
        significance=round(
            answer_significance(edit.pieces, fits, Trials(dance.duration, bgm.duration)), 2
        ),
    )
