"""Choose the span of the dance video to keep."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AlignmentError, OptionsError
from .mapping import Mapping
from .picture import FrameSource, good_picture_span
from .probe import MediaInfo

__all__ = ["Cut", "find_cut"]


@dataclass(frozen=True, slots=True)
class Cut:
    """The kept span in dance-file seconds and why each edge is where it is.

    Reasons: ``music`` (the music starts or stops), ``reference`` (the reference ends there),
    ``picture`` (black or frozen picture), ``video`` (the file's own edge), ``user`` (given).
    """

    start: float
    end: float
    start_reason: str
    end_reason: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def find_cut(
    dance: MediaInfo,
    bgm: MediaInfo,
    mapping: Mapping,
    music: tuple[float, float],
    *,
    start: float | None = None,
    end: float | None = None,
    trim: bool = True,
    picture: bool = True,
    frames: FrameSource | None = None,
) -> Cut:
    """The span of the dance video to keep, in dance seconds.

    With ``trim``: where the music is heard (``music``), within what the reference covers under
    ``mapping``, minus black or frozen picture at either end. ``start`` and ``end`` override the
    computed edges; ``trim=False`` keeps the whole video unless they are given. ``picture=False``
    skips the check for black or frozen picture (the cheap part alone, to start work early);
    ``frames`` gives the pictures it checks (default: decoded from the dance file).

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
        edges_start = [(v_start, "video"), (music[0], "music")]
        edges_end = [(v_end, "video"), (music[1], "music")]
        if bgm.audio is not None:
            ref_lo = bgm.audio.start_time
            ref_hi = ref_lo + (bgm.audio.duration or bgm.duration)
            edges_start.append((mapping.dance_time(ref_lo), "reference"))
            edges_end.append((mapping.dance_time(ref_hi), "reference"))
        lo, lo_why = max(edges_start)
        hi, hi_why = min(edges_end)
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
    return Cut(lo, hi, lo_why, hi_why)
