"""Outside benchmark: class recordings made independently of the standard cases.

Each take of :data:`TAKES` is recorded by :mod:`beatsync.testkit.reality` (pyroomacoustics rooms,
a band-limited overdriven loudspeaker, a phone's band-limit, compressor and clipping, a teacher
counting and a class clapping on the beat) from music the standard cases do not use (songs
arranged from the Debian package ``sonic-pi-samples`` with exact copies of their choruses and
quiet intros, and unused tracks of ``immich-memories-music``), in combinations the standard
cases do not make: an edit played with the pitch kept, the music stopped and restarted, the
recording starting after the music and ending before it, another song of the same tempo and
key, an instrumental, a remix. The engine runs in-process on each and its output is measured
as ``bench/accuracy.py`` measures it (sync at five points and in every piece, seams, cut edges,
refusals), and the engine's mapping is checked against the truth in every piece from its
report (the output checker cannot tell a loop-built section from another on the same beat); the
table goes to stdout only.

    nice python bench/outside.py [--workers 2] [--case NAME ...] [--list]

Media is built on the fly, seeded, into ``bench/.media/outside`` and reused while its take is
unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path

from accuracy import MEDIAN_MS, P95_MS, CaseResult, run_cases
from beatsync.testkit import BuiltCase
from beatsync.testkit.reality import Take, TakeRoom, build_take

BENCH = Path(__file__).resolve().parent
MEDIA = BENCH / ".media" / "outside"
OUT = BENCH / "out" / "outside"

# A packed class in a bare studio: the crowd as loud as the music and louder, a teacher counting
# as loud as the music, claps, the phone's compressor and clipping.
LOUD = TakeRoom(rt60=1.5, shadow_db=6.0, snr_db=-5.0, teacher_db=0.0)
# A long reverberation with the phone against the far wall, the dancers in front of it.
CAVE = TakeRoom(rt60=2.0, shadow_db=9.0, snr_db=0.0, phone=(9.7, 6.7, 1.0), teacher_db=-3.0)
# The phone by the mirror wall: its reflection arrives within a millisecond of the direct sound,
# which the dancers cut by 10 dB.
MIRROR = TakeRoom(
    rt60=1.0, shadow_db=10.0, snr_db=3.0, phone=(0.2, 2.0, 1.0), speaker=(6.0, 6.5, 1.6)
)
# The phone mid-room 4 m from the loudspeaker (direct sound 13 dB below the reverberation, as
# the standard cases' hard rooms), with the whole crowd and phone chain of a loud class.
MIDROOM = TakeRoom(rt60=1.0, shadow_db=0.0, snr_db=0.0, phone=(4.6, 3.0, 1.1), teacher_db=0.0)
# An ordinary class: some reverberation and noise.
CLASS = TakeRoom(rt60=1.0, shadow_db=3.0, snr_db=6.0, teacher_db=-3.0, clip_db=3.0)

POP = "studio:pop:full"
# A quiet room, no crowd, a clean loudspeaker: the generator's own check (must sync within bars).
QUIET = TakeRoom(
    rt60=0.4,
    shadow_db=0.0,
    snr_db=30.0,
    teacher_db=None,
    claps=False,
    speaker_drive=0.5,
    agc=False,
    clip_db=None,
)
TAKES: tuple[Take, ...] = (
    Take("control-pop-quiet-room", 1, POP, ((16.0, 30.0, 0.0),), room=QUIET),
    Take("control-edit-quiet-room", 2, POP, ((16.0, 16.0, 0.0), (72.0, 14.0, 0.0)),
         crossfade=0.2, room=QUIET),
    # The quiet 16 s intro (18 dB down) in a room at −5 dB SNR.
    Take("pop-quiet-intro-loud", 11, POP, ((0.0, 46.0, 0.0),), room=LOUD),
    Take("pop-quiet-intro-cave", 12, POP, ((0.0, 40.0, 0.0),), room=CAVE),
    # The same music in a room where the phone stands mid-room, with the whole crowd chain.
    Take("midroom-pop-quiet-intro", 51, POP, ((0.0, 40.0, 0.0),), room=MIDROOM),
    Take("midroom-pop-stop-restart", 52, POP, ((16.0, 16.0, 10.0), (0.0, 16.0, 0.0)),
         drift_ppm=50.0, room=MIDROOM),
    Take("midroom-pop-edit-tempo090", 53, POP, ((6.0, 18.0, 0.0), (56.0, 14.0, 0.0),
         (20.0, 14.0, 0.0)), speed=0.9, pitch_kept=True, crossfade=0.3, room=MIDROOM),
    Take("midroom-sparse", 54, "studio:sparse:full", ((4.0, 36.0, 0.0),), bpm=100.0,
         room=MIDROOM),
    Take("midroom-tonal", 55, "studio:tonal:full", ((10.0, 36.0, 0.0),), bpm=72.0,
         room=MIDROOM),
    Take("midroom-immich-calm", 56, "immich/calm/calm_electronic_s411", ((2.0, 24.0, 0.0),),
         drift_ppm=-50.0, room=MIDROOM),
    Take("midroom-mismatch-same-tempo-key", 57, POP, ((16.0, 30.0, 0.0),),
         ref_song="studio:pop:other", accept="no", room=MIDROOM),
    # The recording starts in the second chorus (an exact copy of the first and the third) and
    # ends in the second verse, before the music stops; +50 ppm drift.
    Take("pop-midsong-chorus", 13, POP, ((57.0, 26.0, 0.0),), music_start=-3.0, tail=0.0,
         drift_ppm=50.0, room=CLASS),
    # Only a chorus, nothing around it: any copy is right.
    Take("pop-chorus-only", 14, POP, ((57.5, 13.0, 0.0),), music_start=-1.0, tail=0.0,
         room=CLASS),
    # The class stops the music for 10 s and restarts it from where it stopped.
    Take("pop-stop-restart", 15, POP, ((16.0, 20.0, 10.0), (0.0, 22.0, 0.0)), room=CLASS),
    Take("pop-stop-restart-loud", 16, POP, ((30.0, 16.0, 10.0), (0.0, 16.0, 0.0)),
         drift_ppm=-50.0, room=LOUD),
    # The combination: an edit in three pieces (a jump forward, a jump back, 0.3 s crossfades)
    # played at 0.9× with the pitch kept, starting in the quiet intro, in a loud room.
    Take("pop-edit-tempo090-loud", 17, POP, ((6.0, 18.0, 0.0), (56.0, 14.0, 0.0),
         (20.0, 14.0, 0.0)), speed=0.9, pitch_kept=True, crossfade=0.3, drift_ppm=50.0,
         room=replace(LOUD, snr_db=0.0)),
    Take("pop-edit-tempo090", 18, POP, ((16.0, 16.0, 0.0), (72.0, 14.0, 0.0)), speed=0.9,
         pitch_kept=True, crossfade=0.2, room=CLASS),
    Take("pop-edit4-resampled125", 19, POP, ((16.0, 10.0, 0.0), (50.0, 9.0, 0.0),
         (90.0, 10.0, 0.0), (20.0, 10.0, 0.0)), speed=1.25, crossfade=0.1, drift_ppm=-50.0,
         room=CLASS),
    # Very sparse percussion (tabla and snaps, bars of rest), and very tonal music (pads and
    # piano, no drums), in ordinary and hard rooms.
    Take("sparse-class", 21, "studio:sparse:full", ((4.0, 40.0, 0.0),), bpm=100.0, room=CLASS),
    Take("sparse-loud", 22, "studio:sparse:full", ((20.0, 40.0, 0.0),), bpm=100.0, room=LOUD),
    Take("tonal-cave", 23, "studio:tonal:full", ((10.0, 40.0, 0.0),), bpm=72.0, room=CAVE),
    Take("tonal-tempo090-mirror", 24, "studio:tonal:full", ((0.0, 45.0, 0.0),), bpm=72.0,
         speed=0.9, pitch_kept=True, drift_ppm=-50.0, room=MIRROR),
    # Tracks the standard cases never use.
    Take("immich-calm-mirror", 25, "immich/calm/calm_electronic_s411", ((2.0, 24.0, 0.0),),
         drift_ppm=-50.0, room=MIRROR),
    Take("immich-tender-resampled080", 26, "immich/tender/tender_electronic_2",
         ((1.0, 22.0, 0.0),), speed=0.8, drift_ppm=50.0, room=CLASS),
    Take("immich-nostalgic-edit-back", 27, "immich/nostalgic/nostalgic_acoustic_s522",
         ((2.0, 12.0, 0.0), (6.0, 10.0, 0.0), (18.0, 9.0, 0.0)), crossfade=0.1, room=CLASS),
    # The same song's instrumental as the reference, and the other way round: to be synced.
    Take("instrumental-ref", 31, POP, ((16.0, 40.0, 0.0),), ref_song="studio:pop:instrumental",
         room=CLASS),
    Take("instrumental-played", 32, "studio:pop:instrumental", ((16.0, 40.0, 0.0),),
         ref_song=POP, room=LOUD),
    # A remix (other drums, no bass, the harmony on a pad, the same melody): reported.
    Take("remix-vs-original", 33, "studio:pop:remix", ((16.0, 40.0, 0.0),), ref_song=POP,
         accept="either", room=CLASS),
    # Another song of the same tempo and key, from the same samples: to be refused.
    Take("mismatch-pop-same-tempo-key", 41, POP, ((16.0, 40.0, 0.0),),
         ref_song="studio:pop:other", accept="no", room=CLASS),
    Take("mismatch-pop-same-tempo-key-loud", 42, POP, ((0.0, 50.0, 0.0),),
         ref_song="studio:pop:other", accept="no", room=LOUD),
    Take("mismatch-sparse-same-tempo", 43, "studio:sparse:full", ((4.0, 40.0, 0.0),),
         ref_song="studio:sparse:other", accept="no", bpm=100.0, room=CLASS),
    Take("mismatch-tonal-same-tempo-key", 44, "studio:tonal:full", ((10.0, 40.0, 0.0),),
         ref_song="studio:tonal:other", accept="no", bpm=72.0, room=CAVE),
)  # fmt: skip


def map_errors(case: BuiltCase) -> list[float]:
    """The engine's mapping against the truth (ms of dance time, positive = the engine's sound
    late) at the middle of every true piece, read from the run's report. The output checker
    cannot tell a section from its copy, nor a loop-built section from another on the same
    beat; this can."""
    report = OUT / f"{case.spec.name}.report.json"
    if case.truth.mismatch or not report.is_file():
        return []
    parts = json.loads(report.read_text())["pieces"]
    out = []
    for start, end, _ in case.truth.pieces:
        t = (start + end) / 2
        part = min(parts, key=lambda p: 0.0 if p["start_s"] <= t < p["end_s"] else
                   min(abs(t - p["start_s"]), abs(t - p["end_s"])))  # fmt: skip
        found = part["offset_s"] + part["scale"] * t
        out.append((case.truth.bgm_time(t) - found) / case.truth.scale * 1000.0)
    return out


def _row(r: CaseResult, take: Take, mapped: list[float]) -> str:
    errs = " ".join("  nan" if math.isnan(e) else f"{e:+5.2f}" for e in r.errors_ms)
    pieces = " | ".join(
        ",".join("nan" if math.isnan(e) else f"{e:+.1f}" for e in p) for p in r.piece_errors_ms
    )
    seams = ",".join(
        f"{e:+.1f}/{'?' if math.isnan(o) else format(o, '+.1f')}"
        for e, o in zip(r.engine_seam_errors_ms or r.seam_errors_ms, r.seam_errors_ms, strict=True)
    )
    flags = r.flags() if take.accept != "either" else []
    if take.accept == "either":
        flags = [f"remix {r.outcome}"] + (r.flags() if r.outcome == "accepted" else [])
    worst = max((abs(e) for e in mapped), default=0.0)
    if r.outcome == "accepted" and worst > P95_MS:
        flags.append(f"mapping {worst:.1f} ms off in a piece")
    maps = ",".join(f"{e:+.1f}" for e in mapped)
    verdict = "ok" if not flags and r.correct else "; ".join(flags) or r.outcome
    return (
        f"{r.name:<34} {r.outcome:<8} {r.confidence:5.2f}  [{errs}] ms"
        f"  cut {r.cut_start_error_s:+6.2f}/{r.cut_end_error_s:+6.2f} s"
        f"  map [{maps}] ms  pieces {r.pieces_found}/{r.pieces_true} [{pieces}]"
        f" seams engine/output [{seams}]  {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--case", action="append", default=[], help="run only these takes")
    parser.add_argument("--list", action="store_true", help="list the takes and exit")
    parser.add_argument("--rebuild", action="store_true", help="record every take again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    takes = [t for t in TAKES if not args.case or t.name in args.case]
    if args.list or not takes:
        print("\n".join(t.name for t in TAKES))
        return 0 if takes else 2
    built = [build_take(t, MEDIA, reuse=not args.rebuild) for t in takes]
    results = run_cases(built, OUT, args.workers)
    print(f"\nbars: median ≤ {MEDIAN_MS:g} ms, worst ≤ {P95_MS:g} ms; cut edges in seconds")
    bad = 0
    for take, case, r in zip(takes, built, results, strict=True):
        line = _row(r, take, map_errors(case))
        bad += not line.endswith("ok")
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
