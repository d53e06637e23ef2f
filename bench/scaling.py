"""Cost against duration: 1080p class videos of 1, 3, 5 and 10 minutes, accepted and refused.

For each duration the pair is a phone-like 1080p30 H.264 video at 12 Mbit/s with 48 kHz AAC
from a living room, and a reference 15 s longer than the video, both cut from a long medley of
real tracks that never repeats itself (:func:`beatsync.testkit.music.medley`). The refusal runs
the same video against a reference of the same length cut from other music, which must be
refused with exit code 4. Every run is a child process (``bench/speed.py``'s ``run_child``:
wall time around the child, its own peak RSS), alternating floor, acceptance and refusal for
each round after an unmeasured warm-up; the floor is the stream-copy remux plus audio decode
of the same files. The accepted output is checked against the truth so that a fast but wrong
run cannot pass. Results go to stdout and to the scaling section of ``bench/RESULTS.md``; the
exit status is 1 when a bar is missed.

    python bench/scaling.py [--minutes 1 3 5 10] [--rounds 2]

The pairs are built once (cached in ``bench/.media/scaling``) by separate child processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from beatsync.testkit import BuiltCase, CaseSpec, Room, build_case
from beatsync.testkit.music import LONG_MEDLEY as SONG
from beatsync.testkit.music import OTHER_LONG_MEDLEY as OTHER_SONG
from speed import Check, Run, check_output, checked, floor_argv, run_child, sync_argv

BENCH = Path(__file__).resolve().parent
MEDIA = BENCH / ".media" / "scaling"
OUT = BENCH / "out" / "scaling"
RESULTS = BENCH / "RESULTS.md"
SECTION = "scaling"

SECONDS_PER_MINUTE = 1.0  # wall-time bar: a second per minute of video
RSS_MB = 400.0
FLOOR_RATIO = 3.0
# Linear: a minute of video at the longest duration costs at most this much more than at 3
# minutes, where fixed costs (interpreter, imports) no longer dominate.
LINEAR_SLACK = 1.25

_ROOM = Room(rt60=0.6, drr_db=4.0, snr_db=15.0, footsteps=True)


def pair_spec(minutes: float, *, refused: bool) -> CaseSpec:
    """The true pair of ``minutes`` of video, or (``refused``) a pair whose reference is the
    same length cut from other music; only its reference is used, so its video is tiny."""
    seconds = minutes * 60.0
    small = {"width": 64, "height": 36} if refused else {"width": 1920, "height": 1080}
    return CaseSpec(
        name=f"scaling-{minutes:g}min" + ("-other" if refused else ""),
        seed=11,
        track=SONG,
        mismatch_track=OTHER_SONG if refused else None,
        ref_start=0.0,
        ref_end=seconds + 15.0,
        play_from=5.0,
        music_start=2.0,
        play_duration=seconds - 5.0,
        tail=3.0,
        room=_ROOM,
        fps=30,
        gop=30,
        bit_rate=12_000_000,
        **small,  # type: ignore[arg-type]
    )


def build(minutes: float) -> tuple[BuiltCase, BuiltCase]:
    return (
        build_case(pair_spec(minutes, refused=False), MEDIA),
        build_case(pair_spec(minutes, refused=True), MEDIA),
    )


def refused(run: Run) -> Run:
    if run.returncode != 4:
        raise SystemExit(
            f"the mismatched pair was not refused (exit {run.returncode}):\n{run.stderr}"
        )
    return run


@dataclass(frozen=True, slots=True)
class Row:
    minutes: float
    video_mb: float
    floor: tuple[Run, ...]
    accept: tuple[Run, ...]
    refuse: tuple[Run, ...]
    check: Check

    @property
    def floor_s(self) -> float:
        return statistics.median(r.wall_s for r in self.floor)

    @property
    def accept_s(self) -> float:
        return statistics.median(r.wall_s for r in self.accept)

    @property
    def refuse_s(self) -> float:
        return statistics.median(r.wall_s for r in self.refuse)

    @property
    def accept_mb(self) -> float:
        return max(r.max_rss_mb for r in self.accept)

    @property
    def refuse_mb(self) -> float:
        return max(r.max_rss_mb for r in self.refuse)


def measure(minutes: float, rounds: int) -> Row:
    began = time.perf_counter()
    checked(run_child("build", [sys.executable, str(Path(__file__)), "--build", f"{minutes:g}"]))
    true_pair, other = build(minutes)  # cached by the build child: reads the manifests only
    print(f"{minutes:g}-minute pair ready ({time.perf_counter() - began:.0f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{minutes:g}min.mp4"
    accept_argv = sync_argv(true_pair.dance, true_pair.bgm, out)
    refuse_argv = sync_argv(true_pair.dance, other.bgm, OUT / f"{minutes:g}min-refused.mp4")
    floor = floor_argv(true_pair.dance, true_pair.bgm, OUT / "floor.mp4")
    checked(run_child("floor", floor))
    checked(run_child("sync", accept_argv))
    refused(run_child("refusal", refuse_argv))
    floors, accepts, refusals = [], [], []
    for i in range(rounds):
        floors.append(checked(run_child("floor", floor)))
        accepts.append(checked(run_child("sync", accept_argv)))
        refusals.append(refused(run_child("refusal", refuse_argv)))
        print(
            f"  round {i + 1}: floor {floors[-1].wall_s:.2f} s, "
            f"sync {accepts[-1].wall_s:.2f} s {accepts[-1].max_rss_mb:.0f} MB, "
            f"refusal {refusals[-1].wall_s:.2f} s {refusals[-1].max_rss_mb:.0f} MB"
        )
    report = json.loads(out.with_suffix(".json").read_text())
    return Row(
        minutes=minutes,
        video_mb=true_pair.dance.stat().st_size / 1e6,
        floor=tuple(floors),
        accept=tuple(accepts),
        refuse=tuple(refusals),
        check=check_output(true_pair, report, out),
    )


def bars(rows: Sequence[Row]) -> list[tuple[str, str, str, bool]]:
    # The time bars are set for videos of 3 minutes and more; on a 1-minute video the
    # interpreter's start and the imports alone are a third of the budget.
    timed = [r for r in rows if r.minutes >= 3] or list(rows)
    worst_per_min = max(timed, key=lambda r: r.accept_s / r.minutes)
    per_min = worst_per_min.accept_s / worst_per_min.minutes
    worst_ratio = max(timed, key=lambda r: r.accept_s / r.floor_s)
    worst_mb = max(max(r.accept_mb, r.refuse_mb) for r in rows)
    worst_refusal = max(rows, key=lambda r: r.refuse_s / r.accept_s)
    out = [
        ("wall time per minute of video, 3 min and longer (worst)",
         f"{per_min:.2f} s at {worst_per_min.minutes:g} min",
         f"≤ {SECONDS_PER_MINUTE:g} s", per_min <= SECONDS_PER_MINUTE),
        ("ratio to the floor, 3 min and longer (worst)",
         f"{worst_ratio.accept_s / worst_ratio.floor_s:.2f}× at {worst_ratio.minutes:g} min",
         f"≤ {FLOOR_RATIO:g}×", worst_ratio.accept_s <= FLOOR_RATIO * worst_ratio.floor_s),
        ("peak RSS, acceptances and refusals", f"{worst_mb:.0f} MB", f"≤ {RSS_MB:g} MB",
         worst_mb <= RSS_MB),
        ("refusal against acceptance (worst)",
         f"{worst_refusal.refuse_s / worst_refusal.accept_s:.2f}× at {worst_refusal.minutes:g} min",
         "≤ 1×", worst_refusal.refuse_s <= worst_refusal.accept_s),
        ("outputs correct", "yes" if all(r.check.passed for r in rows) else "no",
         "sync, drift, cut, copy as in the speed benchmark", all(r.check.passed for r in rows)),
    ]  # fmt: skip
    base = [r for r in rows if r.minutes >= 3]
    if len(base) >= 2:
        first, last = base[0], base[-1]
        growth = (last.accept_s / last.minutes) / (first.accept_s / first.minutes)
        out.append((
            f"cost per minute, {last.minutes:g} min against {first.minutes:g} min",
            f"{growth:.2f}×", f"≤ {LINEAR_SLACK:g}× (linear)", growth <= LINEAR_SLACK,
        ))  # fmt: skip
    return out


def render_section(
    rows: Sequence[Row], command: str, load: tuple[float, float]
) -> tuple[str, bool]:
    from accuracy import bar_rows, commit, machine

    checks = bars(rows)
    passed = all(ok for *_, ok in checks)
    lines = [
        "## Scaling",
        "",
        f"`{command}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}  ",
        f"Machine: {machine()}; 1-minute load average {load[0]:.2f} before the run and "
        f"{load[1]:.2f} after it.",
        "",
        "1080p30 H.264 class videos at 12 Mbit/s with 48 kHz AAC, each with a reference 15 s "
        "longer cut from a medley of real tracks that never repeats; the refusal pairs the "
        "same video with a reference of the same length from other music. Medians over "
        f"{len(rows[0].accept)} rounds of child processes (floor, `beatsync sync`, refusal) "
        "after one warm-up; peak RSS is the largest of the rounds.",
        "",
        "| bar | measured | target | result |",
        "|---|---|---|---|",
        *bar_rows(checks),
        "",
        f"Overall: **{'PASS' if passed else 'FAIL'}**.",
        "",
        "| video | size MB | floor s | sync s | s per min | × floor | sync MB | refusal s "
        "| refusal MB | sync error ms (start, middle, end) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.minutes:g} min | {r.video_mb:.0f} | {r.floor_s:.2f} | {r.accept_s:.2f} | "
            f"{r.accept_s / r.minutes:.2f} | {r.accept_s / r.floor_s:.2f} | {r.accept_mb:.0f} | "
            f"{r.refuse_s:.2f} | {r.refuse_mb:.0f} | "
            + ", ".join(f"{e:+.2f}" for e in r.check.errors_ms)
            + " |"
            for r in rows
        ),
    ]
    return "\n".join(lines) + "\n", passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 5.0, 10.0])
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds (default 2)")
    parser.add_argument("--build", type=float, metavar="MINUTES", help="only build (child mode)")
    args = parser.parse_args(argv)
    if args.build is not None:
        build(args.build)
        return 0
    if args.rounds < 1 or any(m <= 0.2 or m > 10.5 for m in args.minutes):
        parser.error("--rounds must be at least 1 and --minutes between 0.2 and 10.5")
    from accuracy import write_section

    load_before = os.getloadavg()[0]
    rows = [measure(m, args.rounds) for m in sorted(args.minutes)]
    load_after = os.getloadavg()[0]
    command = "python bench/scaling.py" + "".join(f" {a}" for a in sys.argv[1:])
    section, passed = render_section(rows, command, (load_before, load_after))
    print()
    print(section)
    write_section(RESULTS, SECTION, section)
    print(f"wrote the scaling section of {RESULTS}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
