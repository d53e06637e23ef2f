"""A wide first lock: a coarse line moved onto the waveform from up to half a second away.

In a loud reverberant room the band energies (:mod:`.search`) are smeared by the reverberation
and flattened by the phone's gain control, so the coarse line can sit tens or hundreds of
milliseconds after the music, beyond the fine windows' reach. GCC-PHAT over long frames still
sees the waveform's alignment that far away: a few long windows spread over the recording each
measure their lag within ``_REACH`` seconds of the line, and the line that most of them agree
on (to 2 ms) is the one the fine stage starts from.
"""

from __future__ import annotations

from ..mapping import Mapping
from .fine import measure
from .linefit import fit_line
from .search import Line
from .signals import Signals
from .windows import window_kind

__all__ = ["wide_lock"]

# Frames of a second keep half a second's lag inside each frame pair's overlap; windows of
# eight seconds, half overlapping, sum enough of them to stand out of a loud room.
_FRAME = 16384
_WINDOW_S = 8.0
_HOP_S = 4.0
_REACH = 0.5
_WINDOWS = 8
# A coarse slope this close to 1 is clock drift, which the band energies pin no better than
# that; long frames need the slope to a few hundred ppm, so such lines are locked at slope 1.
_DRIFT_ONLY = 0.003
# Windows that must agree on the moved line.
_AGREE = 3


def wide_lock(signals: Signals, line: Line) -> Line | None:
    """``line`` moved onto the waveform's alignment within ``_REACH`` seconds, or None when too
    few long windows agree on one (or the line is a pitch-kept one, whose grains do not add up
    in phase over long frames)."""
    if not window_kind(line.pitch_kept).coherent:
        return None
    guess = Mapping(line.offset, line.scale)
    if abs(line.scale - 1.0) < _DRIFT_ONLY:
        mid = signals.dance.start + signals.dance.duration / 2
        guess = Mapping(line.offset + (line.scale - 1.0) * mid, 1.0)
    t, beta, _strength, prom = measure(
        signals, guess, window=_WINDOW_S, hop=_HOP_S, max_windows=_WINDOWS, search=_REACH,
        frame=_FRAME,
    )  # fmt: skip
    fitted = fit_line(t, beta, prom, guess, gate=_REACH)
    if fitted is None or int(fitted[1].sum()) < _AGREE:
        return None
    moved = fitted[0]
    return Line(moved.offset, moved.scale, line.votes, line.pitch_kept)
