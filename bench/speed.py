"""Speed benchmark: a 3-minute 1080p30 pair end to end, against the floor, in the same run.

The floor is what any tool must do at least: an ``ffmpeg -c copy`` remux of the dance video
(every video and audio packet into an MP4) plus a full decode of both files' audio to PCM,
done here with PyAV because the product has no ffmpeg binary. It and ``beatsync sync`` run as
child processes, alternately, several rounds after one warm-up of each; wall time is measured
around each child and peak memory is the child's maximum RSS (``os.wait4``, from a small
launcher: ``launch.py``). The last output is checked against the truth so that a fast but wrong
run cannot pass. Results go to stdout and to the speed section of ``bench/RESULTS.md``; the
exit status is 1 when a bar is missed.

    python bench/speed.py [--rounds 3]

The pair is built (once, cached in ``bench/.media``) by a separate child process, because the
build itself peaks around 1 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beatsync.testkit import BuiltCase

# Module-level imports stay standard-library only: the --floor child must load nothing but PyAV,
# or the floor would carry the engine's import time and memory.

BENCH = Path(__file__).resolve().parent
MEDIA = BENCH / ".media" / "speed"
OUT = BENCH / "out" / "speed"
RESULTS = BENCH / "RESULTS.md"
SECTION = "speed"

WALL_S = 3.0
RSS_MB = 400.0
FLOOR_RATIO = 3.0
MAX_SYNC_MS = 5.0
DRIFT_PPM = 5.0
CUT_S = 0.35
EDGE_MARGIN_S = 0.6


# --- the floor, run in its own process -------------------------------------------------------


def floor(dance: Path, bgm: Path, out: Path) -> dict[str, float]:
    """Remux ``dance`` into ``out`` by stream copy, then decode both files' audio to PCM.

    Returns each step's wall time (s) and the decoded sample counts.
    """
    import av

    times: dict[str, float] = {}
    began = time.perf_counter()
    with av.open(str(dance)) as src, av.open(str(out), "w", format="mp4") as dst:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        target = {s.index: dst.add_stream_from_template(s) for s in streams}
        for packet in src.demux(streams):
            # The demuxer's flush packets carry no data and no timestamp.
            if packet.dts is None:
                continue
            packet.stream = target[packet.stream.index]
            dst.mux(packet)
    times["remux_s"] = time.perf_counter() - began
    for name, path in (("dance", dance), ("bgm", bgm)):
        began = time.perf_counter()
        samples = 0
        with av.open(str(path)) as src:
            stream = src.streams.audio[0]
            for frame in src.decode(stream):
                samples += frame.to_ndarray().shape[-1]
        times[f"decode_{name}_s"] = time.perf_counter() - began
        times[f"decode_{name}_samples"] = float(samples)
    return times


# --- measuring children ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One child process: what ran, how long it took, its peak memory and what it printed."""

    kind: str
    wall_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_child(kind: str, argv: Sequence[str]) -> Run:
    """Run ``argv`` and measure its wall time and maximum resident set size.

    The child is started by ``launch.py``, a fresh small interpreter, so that its peak memory
    does not start from this process's own (see there).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as usage,
    ):
        # Data an earlier run left for the kernel to write back is written now, untimed, so
        # that no run is timed doing another's writeback.
        os.sync()
        launcher = [sys.executable, "-I", "-S", str(BENCH / "launch.py"), usage.name]
        returncode = subprocess.run([*launcher, *argv], stdout=out, stderr=err).returncode
        if returncode != 0:
            raise SystemExit(f"the launcher failed with exit code {returncode}")
        measured = json.loads(Path(usage.name).read_text())
        out.seek(0)
        err.seek(0)
        return Run(
            kind,
            measured["wall_s"],
            measured["max_rss_kb"] / 1024.0,  # KiB on Linux
            measured["returncode"],
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def floor_argv(dance: Path, bgm: Path, out: Path) -> list[str]:
    """This script's floor on ``dance`` and ``bgm``, remuxing into ``out``, as a child."""
    return [sys.executable, str(Path(__file__)), "--floor", str(dance), str(bgm), str(out)]


# What `beatsync sync` imports before its first stage starts, timed alone.
IMPORTS_ARGV = [
    sys.executable,
    "-c",
    "import beatsync.cli, beatsync.engine.pipeline, beatsync.engine.output.report",
]


def sync_argv(dance: Path, bgm: Path, out: Path) -> list[str]:
    """``beatsync sync`` of ``dance`` and ``bgm`` into ``out``, its report beside it."""
    script = Path(sys.executable).with_name("beatsync")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "beatsync"]
    return [*command, "sync", str(dance), str(bgm), "-o", str(out),
            "--report", str(out.with_suffix(".json")), "-q"]  # fmt: skip


def checked(run: Run) -> Run:
    if run.returncode != 0:
        raise SystemExit(f"{run.kind} failed with exit code {run.returncode}:\n{run.stderr}")
    return run


# --- checking the output ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    errors_ms: tuple[float, ...]
    drift_error_ppm: float
    cut_error_s: tuple[float, float]
    video_copied: bool
    reason: str

    @property
    def passed(self) -> bool:
        return (
            all(abs(e) <= MAX_SYNC_MS for e in self.errors_ms)  # NaN fails too
            and abs(self.drift_error_ppm) <= DRIFT_PPM
            and all(abs(e) <= CUT_S for e in self.cut_error_s)
            and self.video_copied
        )


def check_output(case: BuiltCase, report: dict[str, Any], output_path: Path | None = None) -> Check:
    """Measure the CLI's output file (``bench/out/speed/out.mp4`` unless given) against the
    truth at the cut's start, middle and end."""
    from beatsync.testkit import sync_errors, video_packets_copied

    truth = case.truth
    assert truth.cut is not None
    cut, output = report["cut"], report["output"]
    # Output time τ shows dance time video_start − first_frame_time + τ.
    shift = output["first_frame_time_s"] - output["video_start_s"]
    start, end = cut["start_s"] + EDGE_MARGIN_S, cut["end_s"] - EDGE_MARGIN_S
    times = [t + shift for t in (start, (start + end) / 2, end)]
    path = output_path or OUT / "out.mp4"
    errors = sync_errors(path, case, times=times)
    copied = video_packets_copied(case.dance, path)
    return Check(
        errors_ms=tuple(errors),
        drift_error_ppm=(report["mapping"]["scale"] / truth.scale - 1.0) * 1e6,
        cut_error_s=(cut["start_s"] - truth.cut[0], cut["end_s"] - truth.cut[1]),
        video_copied=bool(copied),
        reason=copied.reason,
    )


# --- the report ------------------------------------------------------------------------------


def _stats(values: Sequence[float]) -> tuple[float, float]:
    return statistics.median(values), min(values)


def render_section(
    case: BuiltCase,
    floors: Sequence[Run],
    clis: Sequence[Run],
    imports: Sequence[Run],
    stages: dict[str, list[float]],
    floor_parts: dict[str, list[float]],
    check: Check,
    command: str,
    load: tuple[float, float],
) -> tuple[str, bool]:
    from accuracy import bar_rows, commit, machine

    f_med, f_min = _stats([r.wall_s for r in floors])
    c_med, c_min = _stats([r.wall_s for r in clis])
    i_med, i_min = _stats([r.wall_s for r in imports])
    f_rss, c_rss = max(r.max_rss_mb for r in floors), max(r.max_rss_mb for r in clis)
    ratio = c_med / f_med
    bars = [
        ("wall time (median)", f"{c_med:.2f} s", f"≤ {WALL_S:g} s", c_med <= WALL_S),
        ("peak RSS (max)", f"{c_rss:.0f} MB", f"≤ {RSS_MB:g} MB", c_rss <= RSS_MB),
        ("ratio to floor (medians)", f"{ratio:.2f}×", f"≤ {FLOOR_RATIO:g}×", ratio <= FLOOR_RATIO),
        ("output correct", "yes" if check.passed else "no",
         f"sync ≤ {MAX_SYNC_MS:g} ms at 3 points, drift ≤ {DRIFT_PPM:g} ppm, copied", check.passed),
    ]  # fmt: skip
    passed = all(ok for *_, ok in bars)
    truth = case.truth
    size = case.dance.stat().st_size / 1e6
    engine_total = statistics.median([sum(v[i] for v in stages.values()) for i in range(len(clis))])
    rest = c_med - engine_total - i_med
    lines = [
        "## Speed",
        "",
        f"`{command}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}  ",
        f"Machine: {machine()}; 1-minute load average {load[0]:.2f} before the run and "
        f"{load[1]:.2f} after it (other work on the machine slows both the floor and the engine).",
        "",
        f"Pair: `{case.dance.name}` ({truth.duration:.0f} s, {truth.width}×{truth.height} "
        f"{truth.fps} fps H.264 + 48 kHz AAC, {size:.0f} MB) and `{case.bgm.name}` "
        f"({truth.bgm_duration:.0f} s AAC). Each of {len(clis)} rounds runs, as child processes, "
        "the floor, then `beatsync sync DANCE BGM -o OUT --report R -q`, then an interpreter that "
        "only imports what the CLI imports, after one unmeasured warm-up of the first two; "
        "each starts after an untimed `sync`, so no run is timed writing back another's output. "
        "Wall time includes interpreter start and imports, peak RSS is the child's maximum "
        "resident set.",
        "",
        "| bar | measured | target | result |",
        "|---|---|---|---|",
        *bar_rows(bars),
        "",
        f"Overall: **{'PASS' if passed else 'FAIL'}**.",
        "",
        "| run | wall median s | wall min s | peak RSS MB | runs s |",
        "|---|---|---|---|---|",
        f"| floor (remux + audio decode) | {f_med:.2f} | {f_min:.2f} | {f_rss:.0f} | "
        + ", ".join(f"{r.wall_s:.2f}" for r in floors) + " |",
        f"| beatsync sync | {c_med:.2f} | {c_min:.2f} | {c_rss:.0f} | "
        + ", ".join(f"{r.wall_s:.2f}" for r in clis) + " |",
        "",
        "Floor parts (median s): "
        + ", ".join(
            f"{k.removesuffix('_s')} {statistics.median(v):.2f}"
            for k, v in floor_parts.items() if k.endswith("_s")
        ) + ".",
        "",
        "Engine stages of `beatsync sync` (from its report; median over rounds):",
        "",
        "| stage | median s | min s | share of wall |",
        "|---|---|---|---|",
        *(
            f"| {stage} | {statistics.median(v):.3f} | {min(v):.3f} | "
            f"{statistics.median(v) / c_med:.0%} |"
            for stage, v in stages.items()
        ),
        f"| interpreter start + imports (timed alone) | {i_med:.3f} | {i_min:.3f} | "
        f"{i_med / c_med:.0%} |",
        f"| rest (argument checks, report, exit; by difference) | {rest:.3f} | | "
        f"{rest / c_med:.0%} |",
        "",
        "Output check: sync error at cut start + 0.6 s, middle, end − 0.6 s: "
        + ", ".join(f"{e:+.2f} ms" for e in check.errors_ms)
        + f"; drift error {check.drift_error_ppm:+.2f} ppm; cut edge errors "
        f"{check.cut_error_s[0]:+.3f} s / {check.cut_error_s[1]:+.3f} s; video stream-copied: "
        f"{'yes' if check.video_copied else 'no (' + check.reason + ')'}.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n", passed


# --- orchestration ---------------------------------------------------------------------------


def build_pair() -> None:
    """Build the speed pair in this process (the --build child)."""
    from beatsync.testkit import speed_pair

    case = speed_pair(MEDIA)
    print(f"{case.dance} ({case.dance.stat().st_size / 1e6:.0f} MB)")


def measure(rounds: int) -> int:
    from accuracy import write_section
    from beatsync.testkit import speed_pair

    began = time.perf_counter()
    checked(run_child("build", [sys.executable, str(Path(__file__)), "--build"]))
    print(f"speed pair ready in {MEDIA} ({time.perf_counter() - began:.0f} s)")
    case = speed_pair(MEDIA)  # cached by the build child: only reads the manifest
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]

    floor_run = floor_argv(case.dance, case.bgm, OUT / "floor.mp4")
    sync_run = sync_argv(case.dance, case.bgm, OUT / "out.mp4")
    checked(run_child("floor", floor_run))
    checked(run_child("beatsync sync", sync_run))
    floors: list[Run] = []
    clis: list[Run] = []
    imports: list[Run] = []
    stages: dict[str, list[float]] = {}
    floor_parts: dict[str, list[float]] = {}
    for i in range(rounds):
        f = checked(run_child("floor", floor_run))
        c = checked(run_child("beatsync sync", sync_run))
        imports.append(checked(run_child("imports", IMPORTS_ARGV)))
        floors.append(f)
        clis.append(c)
        for key, value in json.loads(f.stdout).items():
            floor_parts.setdefault(key, []).append(value)
        report = json.loads((OUT / "out.json").read_text())
        for timing in report["timings"]["stages"]:
            stages.setdefault(timing["stage"], []).append(timing["seconds"])
        print(
            f"round {i + 1}: floor {f.wall_s:.2f} s {f.max_rss_mb:.0f} MB, "
            f"sync {c.wall_s:.2f} s {c.max_rss_mb:.0f} MB"
        )

    load_after = os.getloadavg()[0]
    check = check_output(case, report)
    command = "python bench/speed.py" + "".join(f" {a}" for a in sys.argv[1:])
    section, passed = render_section(
        case, floors, clis, imports, stages, floor_parts, check, command, (load_before, load_after)
    )
    print()
    print(section)
    write_section(RESULTS, SECTION, section)
    print(f"wrote the speed section of {RESULTS}")
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--build", action="store_true", help="only build the pair (child mode)")
    parser.add_argument(
        "--floor",
        nargs=3,
        type=Path,
        metavar=("DANCE", "BGM", "OUT"),
        help="run the floor once and print its step times as JSON (child mode)",
    )
    args = parser.parse_args(argv)
    if args.floor:
        print(json.dumps(floor(*args.floor)))
        return 0
    if args.build:
        build_pair()
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return measure(args.rounds)


if __name__ == "__main__":
    raise SystemExit(main())
