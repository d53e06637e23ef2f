"""Dance/reference pairs made from real music, with the exact truth the engine should find.

Definitions (all times in seconds). The master song S has song time σ. The reference file holds
S from ``σ = r0`` to ``r1``: ``bgm(β) = S(β − bgm_start + r0)``, where ``bgm_start`` is the
presentation time of the reference's first sample (0, except for MP3 whose decoder reports its
encoder delay as a start time). The class plays S from song time ``p0`` at dance time ``m0``
(music_start) at speed ``k`` with phone clock drift ``d`` (ppm): ``σ = p0 + b·(t − m0)`` with
``b = k·(1 + d·1e-6)``, until dance time ``m1`` (music_end). Hence the truth is
``bgm_time = a + b·dance_time`` with ``a = p0 − r0 + bgm_start − b·m0``. Video frame ``n`` of the
dance file presents at ``n / fps``; its audio starts at 0.

Dance time is the time of the direct sound at the phone: the room (:mod:`.room`, :mod:`.hall`)
puts the direct path at delay 0 and every reflection after it, so the truth is the direct sound,
never a reflection, whatever its level. The loudspeaker-to-phone propagation delay is not part of
the truth (the image-source halls remove it; it is the same for every moment of a recording).

Edits. A class may dance to an edit of the song: pieces ``k = 0, 1, …`` of ``D_k`` dance seconds
each, piece k playing S from song time ``p_k``. Piece k holds dance times ``[s_k, s_k+1)`` with
``s_0 = m0`` and ``s_k+1 = s_k + D_k`` (so ``m1 = m0 + ΣD_k``), where ``σ = p_k + b·(t − s_k)``
and ``bgm_time = a_k + b·dance_time`` with ``a_k = p_k − r0 + bgm_start − b·s_k``: one scale b
for all pieces (one clock, one speed). The seams are ``s_1, s_2, …``: the dance times at which
the sound switches from one piece to the next. With a hard cut (``crossfade`` 0) it switches
there; with a crossfade of ``L`` seconds both pieces play during ``[s_k − L/2, s_k + L/2]``,
each continuing its own line, the earlier fading out and the later fading in with raised-cosine
gains summing to one: the seam is the crossfade's centre. The truth's ``offset`` is the main
piece's (the longest; the first of equal ones), and ``pieces`` lists every piece as
``(start, end, offset)`` with ``start``/``end`` its dance interval (the first starting at m0,
the last ending at m1). A case without an edit has one piece.

Two kinds of speed ``k``. Resampled (``pitch_kept`` false, the case names ``speed-…`` and
``resampled-…``): the song is read ``k`` times as fast, its pitch moving with it, like a tape or
a "slowed"/"sped up" edit. Pitch kept (``tempo-…``): a practice player first time-stretches the
song by overlapping grains (:mod:`.grains`) so that its time ``s`` carries song time ``σ = k·s``
with the pitch unchanged (every 40 ms grain centred on that line), and the phone then records
that at the clock drift ``1 + d·1e-6`` (a pitch change of a few hundred ppm). The same line
``σ = p0 + b·(t − m0)`` is the truth for both kinds: exact for the first, exact at every grain's
centre for the second. An edit played with the pitch kept is spliced from one stretched copy of
the song, each piece read from it where its song time lies, crossfaded as above.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .encode import Scene, TailPlan, VideoParams, write_video_file
from .grains import overlap_add
from .music import Song, load_track, play, quieten, repeat_section
from .reference import REFERENCE_KINDS, write_reference
from .room import Room, record_in_room
from .studio import STUDIO_PREFIX, studio_song

if TYPE_CHECKING:
    from beatsync.engine.alignment.align import Mapping

__all__ = ["KIT_VERSION", "BuiltCase", "CaseSpec", "Truth", "build_case", "load_song"]

logger = logging.getLogger(__name__)

# Bumped whenever generated media would change, so cached cases are rebuilt.
KIT_VERSION = 5
# Song seconds over which a quiet intro rises back, or a quiet outro falls, to the song's level.
_GLIDE = 1.0


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """Everything that decides a generated case; the same spec and seed give the same files.

    Song and timing: ``track`` (a :mod:`.music` name or a :mod:`.studio` song), ``repeat`` (a
    section of the track played twice, making a song that repeats itself), ``ref_start``/``ref_end``
    (r0/r1, the reference cut; None = song end), ``play_from`` (p0), ``music_start`` (m0),
    ``play_duration`` (dance seconds of music), ``tail`` (dance seconds after the music stops; 0 =
    the file ends while the music plays), ``speed`` (k), ``pitch_kept`` (the speed is a tempo change
    that keeps the pitch, not a resampling), ``drift_ppm`` (d). ``mismatch_track``: the reference is
    cut from this other track instead, and must be refused.
    Picture: size, ``fps``, ``codec`` ``h264``/``hevc``, ``container`` ``mp4``/``mov``/``mkv``,
    ``rotation`` (display-matrix degrees counter-clockwise, as :func:`probe` reports; a phone's
    portrait clip is 270), ``gop`` frames, ``b_frames``, ``black_head`` seconds of black at the
    start, ``black_tail`` or ``frozen_tail`` seconds at the end, ``bit_rate`` (None = constant
    quality). Sound: ``audio_rate`` 48000/44100 and the ``room``. ``reference``: ``video`` (MP4,
    H.264 + AAC), ``m4a`` (AAC), ``opus`` (Ogg Opus) or ``mp3``.
    Edits: ``pieces`` as ``(p_k, D_k)`` pairs (song time where each piece starts, its dance
    seconds) replace ``play_from`` and ``play_duration``; ``crossfade`` is L (seconds, 0 = hard
    cuts).
    """

    name: str
    seed: int
    track: str
    repeat: tuple[float, float] | None = None
    ref_start: float = 0.0
    ref_end: float | None = None
    play_from: float = 0.0
    music_start: float = 3.0
    play_duration: float = 15.0
    tail: float = 2.0
    speed: float = 1.0
    pitch_kept: bool = False
    drift_ppm: float = 0.0
    mismatch_track: str | None = None
    intro_db: float = 0.0
    intro_seconds: float = 0.0
    outro_db: float = 0.0
    outro_seconds: float = 0.0
    room: Room = field(default_factory=Room)
    width: int = 320
    height: int = 240
    fps: int = 30
    codec: str = "h264"
    container: str = "mp4"
    rotation: int = 0
    gop: int = 30
    b_frames: bool = False
    black_head: float = 0.0
    black_tail: float = 0.0
    frozen_tail: float = 0.0
    bit_rate: int | None = None
    audio_rate: int = 48000
    reference: str = "video"
    pieces: tuple[tuple[float, float], ...] = ()
    crossfade: float = 0.0

    @property
    def edit(self) -> tuple[tuple[float, float], ...]:
        """The pieces as ``(p_k, D_k)``: one, from ``play_from``, for a case without an edit."""
        return self.pieces or ((self.play_from, self.play_duration),)

    @property
    def scale(self) -> float:
        """b = k·(1 + d): reference seconds per dance second."""
        return self.speed * (1.0 + self.drift_ppm * 1e-6)


@dataclass(frozen=True, slots=True)
class Truth:
    """What a correct engine finds for a built case. Times are seconds on each file's timeline.

    ``offset``/``scale`` (a, b) and ``reference_span`` are NaN and ``cut`` is None for a
    mismatched pair.
    ``reference_span`` is the dance-time span the reference covers (may reach outside the file);
    ``picture_start``/``picture_end`` bound the good picture (black or frozen outside);
    ``cut`` = music span ∩ reference span ∩ good picture ∩ file.
    ``pieces`` are ``(start, end, offset)`` per piece, ``seams`` the dance times between them and
    ``crossfade`` the edit's crossfade length (see the module's definitions).
    """

    offset: float
    scale: float
    speed: float
    drift_ppm: float
    music_start: float
    music_end: float
    reference_span: tuple[float, float]
    picture_start: float
    picture_end: float
    cut: tuple[float, float] | None
    duration: float
    fps: int
    frames: int
    width: int
    height: int
    rotation: int
    codec: str
    container: str
    audio_rate: int
    bgm_start: float
    bgm_duration: float
    bgm_rate: int
    mismatch: bool
    pieces: tuple[tuple[float, float, float], ...] = ()
    seams: tuple[float, ...] = ()
    crossfade: float = 0.0
    pitch_kept: bool = False

    @property
    def mapping(self) -> Mapping:
        """The truth as the engine's :class:`Mapping`; a mismatched pair has none."""
        # Imported lazily: making and measuring media needs nothing else from the engine.
        from beatsync.engine.alignment.align import Mapping

        if self.mismatch:
            raise ValueError("a mismatched pair has no mapping")
        return Mapping(offset=self.offset, scale=self.scale, pitch_kept=self.pitch_kept)

    def bgm_time(self, dance_time: float) -> float:
        """Reference time heard at ``dance_time``: under the piece that holds it (the first
        before the first seam, the last after the last)."""
        return self.offset_at(dance_time) + self.scale * dance_time

    def offset_at(self, dance_time: float) -> float:
        """The offset of the piece that holds ``dance_time``."""
        for (_, end, offset), _seam in zip(self.pieces, self.seams, strict=False):
            if dance_time < end:
                return offset
        return self.pieces[-1][2] if self.pieces else self.offset

    def frame_time(self, index: int) -> float:
        """Dance time at which frame ``index`` is presented."""
        return index / self.fps


@dataclass(frozen=True, slots=True)
class BuiltCase:
    """A generated pair on disk and its truth."""

    dance: Path
    bgm: Path
    truth: Truth
    spec: CaseSpec


def load_song(spec: CaseSpec) -> Song:
    """The master song of a case: the track, with its repeated section and its quiet intro or
    outro if the spec has them."""
    song = _load(spec.track)
    if spec.repeat is not None:
        song = repeat_section(song, *spec.repeat)
    p0, b = spec.play_from, spec.scale
    if spec.intro_seconds > 0 and spec.intro_db > 0:
        intro_end = p0 + b * spec.intro_seconds
        song = quieten(song, p0, intro_end, db=spec.intro_db, after=_GLIDE)
    if spec.outro_seconds > 0 and spec.outro_db > 0:
        outro = (p0 + b * (spec.play_duration - spec.outro_seconds), p0 + b * spec.play_duration)
        song = quieten(song, *outro, db=spec.outro_db, before=_GLIDE)
    return song


def _load(name: str) -> Song:
    """A :mod:`.music` track or a :mod:`.studio` song (``studio:…``)."""
    return studio_song(name) if name.startswith(STUDIO_PREFIX) else load_track(name)


def _validate(spec: CaseSpec, song: Song, ref_song: Song) -> None:
    problems = []
    half = spec.scale * spec.crossfade / 2
    for p, d in spec.edit:
        if p - half < 0 or p + spec.scale * d + half > song.duration:
            problems.append(f"play {p}+{d}×{spec.scale} outside song")
    if spec.pieces and (min(d for _, d in spec.pieces) <= spec.crossfade or spec.crossfade < 0):
        problems.append("a piece shorter than the crossfade")
    ref_end = ref_song.duration if spec.ref_end is None else spec.ref_end
    if not 0 <= spec.ref_start < ref_end <= ref_song.duration + 1e-6:
        problems.append(f"reference cut [{spec.ref_start}, {ref_end}] outside song")
    if spec.black_tail and spec.frozen_tail:
        problems.append("black_tail and frozen_tail are exclusive")
    if spec.codec not in ("h264", "hevc") or spec.container not in ("mp4", "mov", "mkv"):
        problems.append(f"unsupported {spec.codec} in {spec.container}")
    if spec.reference not in REFERENCE_KINDS:
        problems.append(f"unknown reference kind {spec.reference!r}")
    if min(spec.music_start, spec.play_duration, spec.tail) < 0:
        problems.append("negative timing")
    quiet = (spec.intro_db, spec.intro_seconds, spec.outro_db, spec.outro_seconds)
    if min(quiet) < 0 or spec.intro_seconds + spec.outro_seconds > spec.play_duration:
        problems.append("quiet intro and outro must be positive and fit in what is played")
    if problems:
        raise ValueError(f"case {spec.name}: " + "; ".join(problems))


def build_case(spec: CaseSpec, directory: Path | str, *, reuse: bool = True) -> BuiltCase:
    """Generate the dance file and reference of ``spec`` in ``directory``.

    Files are ``<name>.dance.<container>``, ``<name>.bgm.<ext>`` and ``<name>.truth.json``. With
    ``reuse``, files left by an identical spec (and kit version) are kept and not rebuilt.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dance = directory / f"{spec.name}.dance.{spec.container}"
    bgm = directory / f"{spec.name}.bgm.{REFERENCE_KINDS[spec.reference][0]}"
    manifest = directory / f"{spec.name}.truth.json"
    spec_json = json.loads(json.dumps(dataclasses.asdict(spec)))
    if reuse and manifest.is_file() and dance.is_file() and bgm.is_file():
        saved = json.loads(manifest.read_text())
        if saved.get("kit") == KIT_VERSION and saved.get("spec") == spec_json:
            return BuiltCase(dance, bgm, _truth_from_json(saved["truth"]), spec)

    rng = np.random.default_rng(spec.seed)
    song = load_song(spec)
    ref_song = _load(spec.mismatch_track) if spec.mismatch_track else song
    _validate(spec, song, ref_song)

    played = sum(d for _, d in spec.edit)
    frames = round((spec.music_start + played + spec.tail) * spec.fps)
    duration = frames / spec.fps
    m0 = float(spec.music_start)
    m1 = float(min(m0 + played, duration))
    n_audio = round(duration * spec.audio_rate)
    speaker, seams = _speaker(spec, song, n_audio, m1)
    span = (math.ceil(m0 * spec.audio_rate), math.ceil(m1 * spec.audio_rate))
    recorded = record_in_room(speaker, spec.audio_rate, rng, spec.room, music_span=span)

    good_start = round(spec.black_head * spec.fps)
    tail_frames = round((spec.black_tail + spec.frozen_tail) * spec.fps)
    plan = TailPlan(
        good_start=good_start,
        good_end=frames - tail_frames if tail_frames else None,
        tail="black" if spec.black_tail else ("frozen" if spec.frozen_tail else None),
    )
    video = VideoParams(
        width=spec.width, height=spec.height, fps=Fraction(spec.fps), codec=spec.codec,
        gop=spec.gop, b_frames=spec.b_frames, rotation=spec.rotation, bit_rate=spec.bit_rate,
    )  # fmt: skip
    write_video_file(
        dance, video=video, frames=frames, scene=Scene(spec.width, spec.height, rng), plan=plan,
        audio=np.stack([recorded, recorded], axis=1), audio_rate=spec.audio_rate,
    )  # fmt: skip

    r_first = round(spec.ref_start * ref_song.rate)
    r_last = (
        ref_song.samples.shape[0] if spec.ref_end is None else round(spec.ref_end * ref_song.rate)
    )
    r0 = r_first / ref_song.rate
    bgm_rate, bgm_start = write_reference(
        bgm, ref_song, r_first, r_last, spec.reference, version=KIT_VERSION
    )

    b = spec.scale
    starts = [m0, *seams]
    offsets = [p - r0 + bgm_start - b * t for (p, _), t in zip(spec.edit, starts, strict=True)]
    ends = [*seams, m1]
    main = max(range(len(offsets)), key=lambda k: (ends[k] - starts[k], -k))
    covered = (
        (r0 - r0 + bgm_start - offsets[0]) / b,
        (r_last / ref_song.rate - r0 + bgm_start - offsets[-1]) / b,
    )
    pic = (good_start / spec.fps, (frames - tail_frames) / spec.fps)
    mismatch = spec.mismatch_track is not None
    lo = max(m0, covered[0], pic[0], 0.0)
    hi = min(m1, covered[1], pic[1], duration)
    truth = Truth(
        offset=math.nan if mismatch else offsets[main],
        scale=math.nan if mismatch else b,
        speed=spec.speed,
        drift_ppm=spec.drift_ppm,
        music_start=m0,
        music_end=m1,
        reference_span=(math.nan, math.nan) if mismatch else covered,
        picture_start=pic[0],
        picture_end=pic[1],
        cut=None if mismatch or hi <= lo else (lo, hi),
        duration=duration,
        fps=spec.fps,
        frames=frames,
        width=spec.width,
        height=spec.height,
        rotation=spec.rotation % 360,
        codec=spec.codec,
        container=spec.container,
        audio_rate=spec.audio_rate,
        bgm_start=bgm_start,
        bgm_duration=(r_last - r_first) / ref_song.rate,
        bgm_rate=bgm_rate,
        mismatch=mismatch,
        pieces=tuple(zip(starts, ends, offsets, strict=True)),
        seams=tuple(seams),
        crossfade=spec.crossfade if spec.pieces else 0.0,
        pitch_kept=spec.pitch_kept and not mismatch,
    )
    manifest.write_text(
        json.dumps({"kit": KIT_VERSION, "spec": spec_json, "truth": dataclasses.asdict(truth)})
    )
    logger.info("built case %s (%d frames, %.1f s)", spec.name, frames, duration)
    return BuiltCase(dance, bgm, truth, spec)


def _speaker(
    spec: CaseSpec, song: Song, length: int, end: float
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], list[float]]:
    """What the loudspeaker plays (``length`` samples at the phone's rate) and the seams: the
    song from p0 at speed k with the drift on top, resampled (pitch follows) or time-stretched
    by overlapping grains (pitch kept), in the pieces of an edit when the case has one."""
    rate, b, fade = spec.audio_rate, spec.scale, spec.crossfade
    source, song_start, speed = _source(spec, song.mono(), song.rate, end)
    out = np.zeros(length, dtype=np.float32)
    seams: list[float] = []
    at = float(spec.music_start)
    pieces = spec.edit
    for k, (p, d) in enumerate(pieces):
        first, last = k == 0, k == len(pieces) - 1
        lo = at if first else at - fade / 2
        hi = min(end, at + d) if last else at + d + fade / 2
        part = play(
            source, song.rate, rate=rate, length=length,
            start=lo, end=hi, song_start=song_start(p - b * (at - lo)), speed=speed,
        )  # fmt: skip
        if fade > 0:
            t = np.arange(length) / rate
            gain = np.ones(length)
            if not first:
                gain *= np.sin(0.5 * np.pi * np.clip((t - lo) / fade, 0.0, 1.0)) ** 2
            if not last:
                gain *= np.sin(0.5 * np.pi * np.clip((hi - t) / fade, 0.0, 1.0)) ** 2
            part *= gain.astype(np.float32)
        out += part
        at += d
        if not last:
            seams.append(at)
    return out, seams


def _source(
    spec: CaseSpec, mono: np.ndarray[Any, np.dtype[np.float32]], song_rate: int, end: float
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], Callable[[float], float], float]:
    """What the pieces are read from, where in it song time σ lies, and the speed it is read
    at: the song itself at b, resampled; or, pitch kept, the song time-stretched by grains on the
    time line (its time s carries song time lo + k·s) and read at the clock drift."""
    if not spec.pitch_kept:
        return mono, lambda song_time: song_time, spec.scale
    # Only the parts played, with a second either side (and half a crossfade).
    b, half = spec.scale, spec.crossfade / 2 if spec.pieces else 0.0
    last = [d for _, d in spec.edit]
    last[-1] = end - spec.music_start - sum(last[:-1])
    lo = max(0, int((min(p for p, _ in spec.edit) - b * half - 1.0) * song_rate))
    far = max(p + b * (d + half) for (p, _), d in zip(spec.edit, last, strict=True))
    hi = min(len(mono), int((far + 1.0) * song_rate))
    stretched = overlap_add(mono[lo:hi], spec.speed, song_rate, seed=spec.seed)
    first = lo / song_rate
    return (
        stretched,
        lambda song_time: (song_time - first) / spec.speed,
        1.0 + spec.drift_ppm * 1e-6,
    )


def _truth_from_json(data: dict[str, Any]) -> Truth:
    data = dict(data)
    data["pieces"] = tuple(tuple(p) for p in data.get("pieces", ()))
    data["seams"] = tuple(data.get("seams", ()))
    data["reference_span"] = tuple(data["reference_span"])
    if data["cut"] is not None:
        data["cut"] = tuple(data["cut"])
    return Truth(**data)
