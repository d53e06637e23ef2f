"""Accuracy benchmark: every standard case through the engine, measured on the output file.

For each of :func:`beatsync.testkit.standard_cases` (built once, cached in ``bench/.media``) the
engine runs in-process and its output MP4 is measured against the case's truth: the
audio-to-picture error at five points inside the cut, the drift (scale) error, the cut edges and
the confidence. Mismatched pairs must be refused. The §7 bars hold for every kind of case, so
cases are grouped by kind (the first word of their name: ``reverb-``, ``hardroom-``,
``edit-``…) and each kind is held to them on its own as well as all cases together. The tables
go to stdout and to the accuracy section of ``bench/RESULTS.md``; the exit status is 1 when a
bar is missed, so the run can gate a change.

    python bench/accuracy.py [--workers 2] [--case NAME ...]

Runs limited with ``--case`` print their table but leave ``RESULTS.md`` alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from beatsync.engine import AlignmentError, AlignParams, BeatSyncError, Piece, sync
from beatsync.testkit import (
    BuiltCase,
    CaseSpec,
    Truth,
    build_cases,
    piece_sync,
    seam_errors,
    standard_cases,
    sync_errors,
)

log = logging.getLogger("bench.accuracy")

BENCH = Path(__file__).resolve().parent
MEDIA = BENCH / ".media" / "accuracy"
OUT = BENCH / "out" / "accuracy"
RESULTS = BENCH / "RESULTS.md"
SECTION = "accuracy"

# Sync is measured one correlation window (the checker's is 1 s) inside each cut edge, and at
# the quarter points between them.
EDGE_MARGIN_S = 0.6
POINTS = ("start", "25%", "50%", "75%", "end")

MEDIAN_MS = 1.0
P95_MS = 5.0
DRIFT_PPM = 5.0
# The routine is kept when the cut starts no later than this after the true start (the music's,
# or a picture or reference edge) and ends no earlier than this before the true end.
KEEP_S = 0.3
# Not one of the bars; the end-to-end tests hold cut edges to this, so the table flags it.
CUT_S = 0.35


def kind_of(name: str) -> str:
    """The kind of a case: the first word of its name (``hardroom-gym-rt15`` → ``hardroom``)."""
    return name.split("-", 1)[0]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's run. ``outcome``: accepted, refused, or error; errors_ms follow POINTS."""

    name: str
    mismatch: bool
    outcome: str
    errors_ms: tuple[float, ...] = ()
    drift_error_ppm: float = math.nan
    cut_start_error_s: float = math.nan
    cut_end_error_s: float = math.nan
    confidence: float = math.nan
    # The answer's significance (refused: the best candidate's, from the refusal's words).
    significance: float = math.nan
    wall_s: float = math.nan
    note: str = ""
    # Edits: pieces found and true, sync (ms) at points in each true piece, seam errors (ms)
    # as the engine reports its seams and as the output file's sound switches (NaN where the
    # output cannot tell the two pieces apart around the seam).
    pieces_found: int = 0
    pieces_true: int = 0
    piece_errors_ms: tuple[tuple[float, ...], ...] = ()
    seam_errors_ms: tuple[float, ...] = ()
    engine_seam_errors_ms: tuple[float, ...] = ()

    @property
    def correct(self) -> bool:
        return self.outcome == ("refused" if self.mismatch else "accepted")

    @property
    def kind(self) -> str:
        return kind_of(self.name)

    @property
    def cut_short(self) -> bool:
        """An accepted true pair whose cut starts too late or ends too early (or is unknown)."""
        if self.mismatch or self.outcome != "accepted":
            return False
        return not (self.cut_start_error_s <= KEEP_S and self.cut_end_error_s >= -KEEP_S)

    def flags(self) -> list[str]:
        """What this case did wrong, in words ('' when nothing)."""
        if self.outcome == "error":
            return [f"engine error: {self.note}"]
        if self.mismatch:
            return [] if self.correct else ["false acceptance"]
        if self.outcome == "refused":
            return [f"false refusal: {self.note}"]
        out = []
        worst = max((abs(e) for e in self.errors_ms), default=math.inf)
        if any(math.isnan(e) for e in self.errors_ms):
            out.append("sync not measurable")
        elif worst > P95_MS:
            out.append(f"sync {worst:.1f} ms > {P95_MS:g}")
        elif worst > MEDIAN_MS:
            out.append(f"sync {worst:.1f} ms > {MEDIAN_MS:g}")
        if not abs(self.drift_error_ppm) <= DRIFT_PPM:
            out.append(f"drift {self.drift_error_ppm:+.1f} ppm")
        if self.cut_short:
            out.append("routine cut short")
        for edge, err in (("start", self.cut_start_error_s), ("end", self.cut_end_error_s)):
            if not abs(err) <= CUT_S:
                out.append(f"cut {edge} {err:+.2f} s")
        if self.pieces_found != self.pieces_true:
            out.append(f"{self.pieces_found} pieces found of {self.pieces_true}")
        worst = max((abs(e) for p in self.piece_errors_ms for e in p), default=0.0)
        if not worst <= P95_MS:
            out.append(f"piece sync {worst:.1f} ms")
        return out


def measure_case(case: BuiltCase, out_dir: Path) -> CaseResult:
    """Run the engine on ``case`` and measure its output against the truth."""
    truth, name = case.truth, case.spec.name
    out = out_dir / f"{name}.mp4"
    out.unlink(missing_ok=True)
    began = time.perf_counter()
    try:
        result = sync(case.dance, case.bgm, out, report=out_dir / f"{name}.report.json")
    except AlignmentError as exc:
        wall = time.perf_counter() - began
        leaked = " (but wrote the output)" if out.exists() else ""
        said = re.search(r"significance (-?[0-9.]+|-?inf)", str(exc))
        return CaseResult(name, truth.mismatch, "refused", wall_s=wall, note=str(exc) + leaked,
                          significance=float(said.group(1)) if said else math.nan)  # fmt: skip
    except BeatSyncError as exc:
        wall = time.perf_counter() - began
        return CaseResult(name, truth.mismatch, "error", wall_s=wall, note=f"{exc.code}: {exc}")
    wall = time.perf_counter() - began
    confidence = result.alignment.confidence
    significance = result.alignment.significance
    if truth.mismatch:
        return CaseResult(name, True, "accepted", confidence=confidence,
                          significance=significance, wall_s=wall)  # fmt: skip

    cut = result.cut
    # Output time τ shows dance time video_start − first_frame_time + τ (see RenderedOutput).
    shift = result.output.first_frame_time - result.output.video_start
    inner = (cut.start + EDGE_MARGIN_S, cut.end - EDGE_MARGIN_S)
    span = inner[1] - inner[0]
    dance_times = [_off_seams(inner[0] + f * span, truth) for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    errors = sync_errors(out, case, times=[t + shift for t in dance_times])
    assert truth.cut is not None
    edit = len(truth.pieces) > 1
    per_piece = piece_sync(out, case, shift=shift, cut=(cut.start, cut.end)) if edit else []
    return CaseResult(
        name,
        False,
        "accepted",
        errors_ms=tuple(errors),
        drift_error_ppm=(result.mapping.scale / truth.scale - 1.0) * 1e6,
        cut_start_error_s=cut.start - truth.cut[0],
        cut_end_error_s=cut.end - truth.cut[1],
        confidence=confidence,
        significance=significance,
        wall_s=wall,
        pieces_found=len(result.parts),
        pieces_true=len(truth.pieces),
        piece_errors_ms=tuple(tuple(e) for e in per_piece),
        seam_errors_ms=tuple(seam_errors(out, case)) if edit else (),
        engine_seam_errors_ms=_engine_seams(result.parts, truth) if edit else (),
    )


def _engine_seams(parts: Sequence[Piece], truth: Truth) -> tuple[float, ...]:
    """The engine's seams (its pieces' starts) against the truth's (ms, positive = late); NaN
    for a true seam without a found one (fewer pieces found)."""
    found = [p.start for p in parts[1:]]
    return tuple(
        (min(found, key=lambda s: abs(s - seam)) - seam) * 1000.0 if found else math.nan
        for seam in truth.seams
    )


def _off_seams(dance_time: float, truth: Truth) -> float:
    """``dance_time`` moved just clear of an edit's seam (the checker's window hears one piece)."""
    clear = 0.6 + truth.crossfade / 2
    for seam in truth.seams:
        if abs(dance_time - seam) < clear:
            return seam - clear if dance_time < seam else seam + clear
    return dance_time


def _run_one(case: BuiltCase, out_dir: str) -> CaseResult:
    try:
        return measure_case(case, Path(out_dir))
    except Exception as exc:  # a crash in one case must not hide the others' numbers
        log.exception("case %s crashed", case.spec.name)
        return CaseResult(
            case.spec.name, case.truth.mismatch, "error", note=f"{type(exc).__name__}: {exc}"
        )


def run_cases(cases: Sequence[BuiltCase], out_dir: Path, workers: int) -> list[CaseResult]:
    """Every case in ``workers`` processes; results in the order of ``cases``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, CaseResult] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_one, case, str(out_dir)) for case in cases]
        for future in as_completed(futures):
            r = future.result()
            done[r.name] = r
            verdict = "ok" if r.correct and not r.flags() else "; ".join(r.flags())
            print(f"[{len(done):2d}/{len(cases)}] {r.name:<24} {r.wall_s:6.2f} s  "
                  f"significance {r.significance:7.1f}  {verdict}")  # fmt: skip
    return [done[case.spec.name] for case in cases]


@dataclass(frozen=True, slots=True)
class Summary:
    """The bars over a set of cases (all of them, or one kind)."""

    cases: int
    points: int
    unmeasurable: int
    median_ms: float
    p95_ms: float
    max_drift_ppm: float
    max_cut_start_s: float
    max_cut_end_s: float
    cut_short: int
    refused: int
    mismatches: int
    false_refusals: int
    false_acceptances: int
    engine_errors: int

    @property
    def measured(self) -> bool:
        """Whether any true pair was accepted (a kind of mismatches only has no sync)."""
        return self.points > 0

    def bars(self) -> list[tuple[str, str, str, bool]]:
        """(bar, measured, target, passed) for each of the accuracy bars that applies."""
        out = []
        if self.measured:
            out += [
                ("median abs. sync error", _ms(self.median_ms), f"≤ {MEDIAN_MS:g} ms",
                 self.median_ms <= MEDIAN_MS),
                ("p95 abs. sync error", _ms(self.p95_ms), f"≤ {P95_MS:g} ms",
                 self.p95_ms <= P95_MS),
                ("max abs. drift error", f"{self.max_drift_ppm:.2f} ppm", f"≤ {DRIFT_PPM:g} ppm",
                 self.max_drift_ppm <= DRIFT_PPM),
                ("routines cut short", str(self.cut_short), "0", self.cut_short == 0),
            ]  # fmt: skip
        out += [
            ("mismatches refused", f"{self.refused}/{self.mismatches}", "all",
             self.refused == self.mismatches),
            ("false refusals", str(self.false_refusals), "0", self.false_refusals == 0),
            ("false acceptances", str(self.false_acceptances), "0", self.false_acceptances == 0),
            ("engine errors", str(self.engine_errors), "0", self.engine_errors == 0),
        ]  # fmt: skip
        return out

    @property
    def passed(self) -> bool:
        return all(ok for *_, ok in self.bars())


def summarize(results: Sequence[CaseResult]) -> Summary:
    """Pool every point of every accepted true case; an unmeasurable point counts as ∞."""
    accepted = [r for r in results if not r.mismatch and r.outcome == "accepted"]
    errors = np.array([abs(e) for r in accepted for e in r.errors_ms], dtype=np.float64)
    errors[np.isnan(errors)] = np.inf
    drifts = [abs(r.drift_error_ppm) for r in accepted]
    mismatched = [r for r in results if r.mismatch]
    return Summary(
        cases=len(results),
        points=int(errors.size),
        unmeasurable=int(np.count_nonzero(np.isinf(errors))),
        # Nearest rank, not interpolation: a pooled ∞ must not turn into NaN.
        median_ms=_rank(errors, 50),
        p95_ms=_rank(errors, 95),
        max_drift_ppm=max(drifts, default=math.inf),
        max_cut_start_s=_worst([r.cut_start_error_s for r in accepted]),
        max_cut_end_s=_worst([r.cut_end_error_s for r in accepted]),
        cut_short=sum(r.cut_short for r in results),
        refused=sum(r.outcome == "refused" for r in mismatched),
        mismatches=len(mismatched),
        false_refusals=sum(not r.mismatch and r.outcome == "refused" for r in results),
        false_acceptances=sum(r.mismatch and r.outcome == "accepted" for r in results),
        engine_errors=sum(r.outcome == "error" for r in results),
    )


def by_kind(results: Sequence[CaseResult]) -> dict[str, Summary]:
    """One summary per kind of case, in the order the kinds first appear."""
    kinds: dict[str, list[CaseResult]] = {}
    for r in results:
        kinds.setdefault(r.kind, []).append(r)
    return {kind: summarize(group) for kind, group in kinds.items()}


def _worst(values: Sequence[float]) -> float:
    """The value of largest magnitude, sign kept (NaN counts as worst; none gives NaN)."""
    if any(math.isnan(v) for v in values):
        return math.inf
    return max(values, key=abs, default=math.nan)


def _rank(values: np.ndarray, q: float) -> float:
    if values.size == 0:
        return math.inf
    return float(np.percentile(values, q, method="inverted_cdf"))


def _ms(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f} ms"


def _num(value: float, fmt: str) -> str:
    return "—" if math.isnan(value) else format(value, fmt)


def _seams(r: CaseResult) -> str:
    """Each seam's error as the engine reports it / as the output's sound switches ('?' where
    the output cannot place it)."""
    engine = r.engine_seam_errors_ms or (math.nan,) * len(r.seam_errors_ms)
    return (
        " ".join(
            f"{_num(e, '+.1f')}/{'?' if math.isnan(o) else format(o, '+.1f')}"
            for e, o in zip(engine, r.seam_errors_ms, strict=True)
        )
        or "—"
    )


def kind_table(kinds: dict[str, Summary]) -> list[str]:
    head = [
        "kind", "cases", "median ms", "p95 ms", "max drift ppm", "worst cut start s",
        "worst cut end s", "cut short", "mismatches refused", "false refusals", "result",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, s in kinds.items():
        missed = [name for name, _, _, ok in s.bars() if not ok]
        cells = [
            kind,
            str(s.cases),
            _num(s.median_ms, ".2f") if s.measured else "—",
            _num(s.p95_ms, ".2f") if s.measured else "—",
            _num(s.max_drift_ppm, ".2f") if s.measured else "—",
            _num(s.max_cut_start_s, "+.3f"),
            _num(s.max_cut_end_s, "+.3f"),
            str(s.cut_short),
            f"{s.refused}/{s.mismatches}" if s.mismatches else "—",
            str(s.false_refusals),
            "PASS" if not missed else "FAIL: " + ", ".join(missed),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def case_table(results: Sequence[CaseResult]) -> list[str]:
    head = ["case", *(f"{p} ms" for p in POINTS), "drift err ppm", "cut start s", "cut end s",
            "pieces: found/true, sync ms med/p95", "seam ms engine/output", "conf", "signif.",
            "wall s", "outcome"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        errs = list(r.errors_ms) or [math.nan] * len(POINTS)
        flags = r.flags()
        outcome = r.outcome + (" — " + "; ".join(flags) if flags else "")
        cells = [
            r.name + (" (mismatch)" if r.mismatch else ""),
            *(_num(e, "+.2f") for e in errs),
            _num(r.drift_error_ppm, "+.2f"),
            _num(r.cut_start_error_s, "+.3f"),
            _num(r.cut_end_error_s, "+.3f"),
            _pieces(r),
            _seams(r),
            _num(r.confidence, ".2f"),
            _num(r.significance, ".1f"),
            _num(r.wall_s, ".2f"),
            outcome.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _pieces(r: CaseResult) -> str:
    """Pieces found of the truth's, and per true piece the median/p95 abs. sync error."""
    if r.pieces_true <= 1 and r.pieces_found <= 1:
        return "1/1" if r.pieces_true else "—"
    cells = []
    for errors in r.piece_errors_ms:
        values = np.abs(np.asarray(errors, dtype=np.float64))
        values[np.isnan(values)] = np.inf
        cells.append(f"{_rank(values, 50):.2f}/{_rank(values, 95):.2f}" if values.size else "—")
    return f"{r.pieces_found}/{r.pieces_true}: " + ", ".join(cells)


def bar_rows(bars: Sequence[tuple[str, str, str, bool]]) -> list[str]:
    """A results table's rows, one a bar: name, measured, target and PASS or FAIL."""
    return [f"| {n} | {m} | {t} | {'PASS' if ok else 'FAIL'} |" for n, m, t, ok in bars]


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip() + ", "
                break
    except OSError:
        pass
    ffmpeg = getattr(av, "ffmpeg_version_info", "?")
    return (
        f"{model}{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, PyAV {av.__version__} (FFmpeg {ffmpeg})"
    )


def commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def render_section(results: Sequence[CaseResult], summary: Summary, command: str) -> str:
    true_cases = sum(not r.mismatch for r in results)
    kinds = by_kind(results)
    failed = [kind for kind, s in kinds.items() if not s.passed]
    lines = [
        "## Accuracy",
        "",
        f"`{command}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}  ",
        f"Machine: {machine()}",
        "",
        f"{len(results)} standard cases ({true_cases} true pairs, {summary.mismatches} "
        "mismatched songs), run in-process by `beatsync.engine.sync`, 2 cases at a time (wall "
        "times share the CPU). Sync error is measured on the output file at the found cut's "
        f"start + {EDGE_MARGIN_S} s, 25 %, 50 %, 75 % and end − {EDGE_MARGIN_S} s (ms, positive "
        "= audio late; an unmeasurable point counts as ∞). Drift error is the found scale's "
        "error relative to the true one (ppm). Cut errors are found − true edges (s); the "
        f"routine is cut short when the cut starts more than {KEEP_S} s after the true start "
        f"or ends more than {KEEP_S} s before the true end (the truth's edges are the music's, "
        "or the picture's or the reference's where those come first). For an "
        "edit (a song played in pieces), the five points keep 0.6 s clear of the seams, and "
        "two columns more: pieces found/true with the median/p95 abs. sync error (ms) at five "
        "points inside each true piece, and each seam's error (ms, positive = late) as the "
        "engine reports it (its piece's start − the truth) / as measured on the output (where "
        "its sound switches − the truth; ? where the output cannot place the switch within "
        "20 ms: both pieces sound alike there, or a stretched output's spectra tell them "
        "apart too loosely).",
        "",
        "| bar | measured | target | result |",
        "|---|---|---|---|",
        *bar_rows(summary.bars()),
        "",
        f"Overall: **{'PASS' if summary.passed and not failed else 'FAIL'}**. "
        f"{summary.points} sync points, {summary.unmeasurable} unmeasurable; worst cut-edge "
        f"errors {_num(summary.max_cut_start_s, '+.3f')} s (start), "
        f"{_num(summary.max_cut_end_s, '+.3f')} s (end); kinds missing a bar: "
        f"{', '.join(failed) or 'none'}.",
        "",
        *significance_lines(results),
        "",
        "### By kind",
        "",
        "Each kind (the first word of the case names) against the same bars on its own.",
        "",
        *kind_table(kinds),
        "",
        "### Cases",
        "",
        *case_table(results),
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the ``name`` section of ``path`` (between its markers), keeping the others."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def significance_lines(results: Sequence[CaseResult]) -> list[str]:
    """The acceptance test's margins: the least significant true pair and the most significant
    mismatch against the threshold."""
    threshold = AlignParams().min_significance
    true = [r for r in results if not r.mismatch and not math.isnan(r.significance)]
    false = [r for r in results if r.mismatch and not math.isnan(r.significance)]
    if not true and not false:
        return []
    out = [f"Significance (`−log10` of the lines chance would hold as well in the search run; "
           f"accepted from {threshold:g}):"]  # fmt: skip
    if true:
        low = min(true, key=lambda r: r.significance)
        out.append(f"least of a true pair {low.significance:.1f} ({low.name}, margin "
                   f"{low.significance - threshold:+.1f});")  # fmt: skip
    if false:
        high = max(false, key=lambda r: r.significance)
        out.append(f"most of a mismatch {high.significance:.1f} ({high.name}, margin "
                   f"{threshold - high.significance:+.1f}).")  # fmt: skip
    return [" ".join(out)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this case (repeatable); RESULTS.md is not written",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    specs: list[CaseSpec] = list(standard_cases())
    if args.case:
        unknown = set(args.case) - {s.name for s in specs}
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        specs = [s for s in specs if s.name in args.case]
    began = time.perf_counter()
    cases = build_cases(specs, MEDIA, workers=args.workers)
    print(f"{len(cases)} cases ready in {MEDIA} ({time.perf_counter() - began:.0f} s)")

    results = run_cases(cases, OUT, args.workers)
    summary = summarize(results)
    command = "python bench/accuracy.py" + "".join(f" {a}" for a in sys.argv[1:])
    section = render_section(results, summary, command)
    print()
    print(section)
    if not args.case:
        write_section(RESULTS, SECTION, section)
        print(f"wrote the accuracy section of {RESULTS}")
    passed = summary.passed and all(s.passed for s in by_kind(results).values())
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
