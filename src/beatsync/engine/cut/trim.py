"""Choose the span of the dance video to keep."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..alignment.span import CERTAIN, EdgeEvidence, MusicSpan
from ..errors import AlignmentError, OptionsError
from ..mapping import Mapping
from ..media.probe import MediaInfo
from ..piece import Piece
from .picture import FrameSource, good_picture_span

__all__ = ["REASONS", "Cut", "EdgeEvidence", "find_cut"]

REASONS = ("music", "music-uncertain", "reference", "picture", "video", "user")
"""Why a cut edge is where it is: the music starts or stops (the room does not hear the
reference where it is loud beyond the edge); the music's edge as far as the room can tell,
with music possibly beyond it (``music-uncertain``); the reference ends; black or frozen
picture; the file's own edge; given by a person."""


@dataclass(frozen=True, slots=True)
class Cut:
    """The kept span in dance-file seconds, why each edge is where it is (one of
    :data:`REASONS`) and how sure it is: an edge set by the music carries its evidence, any
    other edge is a fact (certainty 1), though the music's doubtful part it keeps still shows
    as ``unheard``.
    """

    start: float
    end: float
    start_reason: str
    end_reason: str
    start_evidence: EdgeEvidence = field(default_factory=EdgeEvidence)
    end_evidence: EdgeEvidence = field(default_factory=EdgeEvidence)

    @property
    def duration(self) -> float:
        return self.end - self.start


def find_cut(
    dance: MediaInfo,
    bgm: MediaInfo,
    mapping: Mapping,
    music: MusicSpan,
    *,
    start: float | None = None,
    end: float | None = None,
    trim: bool = True,
    picture: bool = True,
    frames: FrameSource | None = None,
    pieces: tuple[Piece, ...] | None = None,
) -> Cut:
    """The span of the dance video to keep, in dance seconds.

    With ``trim``: where the music plays (``music``: it goes on through passages too quiet for the
    room to tell), within what the reference covers under ``mapping``, minus black or frozen
    picture at either end; a music edge less sure than :data:`CERTAIN` is ``music-uncertain``.
    ``start`` and ``end`` override the computed edges; ``trim=False`` keeps the whole video
    unless they are given. ``picture=False`` skips the check for black or frozen picture (the
    cheap part alone, to start work early); ``frames`` gives the pictures it checks (default:
    decoded from the dance file).
    ``pieces``: an edit's pieces in dance-time order; ``music`` then spans them all, and the
    reference's edges are read through the first piece's mapping at the start and the last
    piece's at the end.

    Raises
    ------
    OptionsError
        When the edges given lie outside the video or leave nothing.
    AlignmentError
        When, without edges given, the music, the reference and the picture leave nothing.
    """
    video = dance.video
    v_start = video.start_time if video else dance.start_time
    v_end = v_start + (video.duration if video and video.duration else dance.duration)
    for name, value in (("start", start), ("end", end)):
        if value is not None and not v_start - 1e-6 <= value <= v_end + 1e-6:
            raise OptionsError(
                f"--{name} {value:.3f} s lies outside the video ({v_start:.3f}–{v_end:.3f} s)"
            )
    if trim:
        edges_start = [(v_start, "video"), (music.start, _music_reason(music.start_evidence))]
        edges_end = [(v_end, "video"), (music.end, _music_reason(music.end_evidence))]
        if bgm.audio is not None:
            ref_lo = bgm.audio.start_time
            ref_hi = ref_lo + (bgm.audio.duration or bgm.duration)
            first = pieces[0].mapping if pieces else mapping
            last = pieces[-1].mapping if pieces else mapping
            edges_start.append((first.dance_time(ref_lo), "reference"))
            edges_end.append((last.dance_time(ref_hi), "reference"))
        # Ties go to the facts (the file, the reference) over the music's own edge.
        lo, lo_why = max(edges_start, key=lambda e: (e[0], not e[1].startswith("music")))
        hi, hi_why = min(edges_end, key=lambda e: (e[0], e[1].startswith("music")))
        if hi > lo and picture:
            good_lo, good_hi = good_picture_span(dance, lo, hi, source=frames)
            if good_lo > lo:
                lo, lo_why = good_lo, "picture"
            if good_hi < hi:
                hi, hi_why = good_hi, "picture"
    else:
        lo, lo_why, hi, hi_why = v_start, "video", v_end, "video"
    if start is not None:
        lo, lo_why = start, "user"
    if end is not None:
        hi, hi_why = end, "user"
    if hi - lo <= 0.0:
        if start is not None or end is not None:
            raise OptionsError(f"the cut is empty ({lo:.3f}–{hi:.3f} s)")
        raise AlignmentError(
            "the music is not heard where the reference covers the video "
            f"({lo:.3f}–{hi:.3f} s is empty)"
        )
    if not trim:
        return Cut(lo, hi, lo_why, hi_why)
    return Cut(
        lo,
        hi,
        lo_why,
        hi_why,
        _evidence(lo_why, music.start_evidence, lo - music.start),
        _evidence(hi_why, music.end_evidence, music.end - hi),
    )


def _music_reason(evidence: EdgeEvidence) -> str:
    return "music" if evidence.certainty >= CERTAIN else "music-uncertain"


def _evidence(reason: str, music: EdgeEvidence, inside: float) -> EdgeEvidence:
    """An edge's evidence: the music's when the music set it; a person's edge is a fact;
    another edge is a fact too, with what is left of the music's unheard part once the edge
    lies ``inside`` (s) the music's edge."""
    if reason.startswith("music"):
        return music
    if reason == "user":
        return EdgeEvidence()
    left = max(music.unheard - max(inside, 0.0), 0.0)
    return EdgeEvidence(certainty=1.0, unheard=round(left, 3))
