"""``beatsync sync``: align, trim and render one class video from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._common import EXIT_OK, SubParsers, finite_number, whole_number

if TYPE_CHECKING:
    from beatsync.engine.alignment.span import EdgeEvidence
    from beatsync.engine.result import SyncResult

__all__ = ["ProgressBar", "add_sync", "summary_line"]


def add_sync(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "sync",
        help="replace a dance video's live sound with the reference track, in sync",
        description="Find where DANCE sits in BGM's music, put BGM's clean audio under DANCE's "
        "picture, in sync, and trim the video to where the music plays.",
    )
    p.add_argument("dance", type=Path, metavar="DANCE", help="the class video (picture and sound)")
    p.add_argument("bgm", type=Path, metavar="BGM", help="the reference (video or audio only)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="MP4 to write")
    p.add_argument("--report", metavar="FILE", help="write the JSON report ('-' for stdout)")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write the alignment plot (PNG)")
    p.add_argument("--poster", type=Path, metavar="FILE", help="write a poster frame (JPEG)")
    p.add_argument(
        "--offset",
        type=finite_number,
        metavar="S",
        help="reference time (s) at the dance video's start, if known; the search stays near it",
    )
    p.add_argument("--start", type=finite_number, metavar="S", help="cut start, dance seconds")
    p.add_argument("--end", type=finite_number, metavar="S", help="cut end, dance seconds")
    p.add_argument(
        "--no-trim",
        action="store_true",
        help="keep the whole video (or up to its edges from --start / --end)",
    )
    p.add_argument("--reencode", action="store_true", help="re-encode the picture as H.264")
    p.add_argument(
        "--max-height",
        type=whole_number(16, "pixels"),
        metavar="N",
        help="re-encode down to at most N pixels high (implies --reencode)",
    )
    p.add_argument(
        "--nudge-ms",
        type=finite_number,
        default=0.0,
        metavar="MS",
        help="play the music MS later (negative: earlier) than the found sync",
    )
    p.add_argument(
        "--mix-live",
        type=finite_number,
        metavar="DB",
        help="mix the live room sound under the music at DB (e.g. -18)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(handler=_run_sync, one_shot=True)


def _run_sync(args: argparse.Namespace) -> int:
    _check_sync_options(args)
    to_stdout = args.report == "-"
    report = None if args.report is None or to_stdout else Path(args.report)
    targets = [p for p in (args.output, report, args.plot, args.poster) if p is not None]
    _check_sync_paths(args.dance, args.bgm, targets)

    from beatsync.engine import pipeline
    from beatsync.engine.memory import tune_allocator
    from beatsync.engine.output.render import RenderParams

    tune_allocator()

    options = pipeline.SyncOptions(
        offset=args.offset,
        nudge_ms=args.nudge_ms,
        start=args.start,
        end=args.end,
        trim=not args.no_trim,
        render=RenderParams(
            reencode=args.reencode or args.max_height is not None,
            max_height=args.max_height,
            live_mix_db=args.mix_live,
        ),
    )
    bar = ProgressBar(sys.stderr) if not args.quiet and _is_terminal(sys.stderr) else None
    started = time.monotonic()
    with _all_or_nothing(targets):
        try:
            result = pipeline.sync(
                args.dance,
                args.bgm,
                args.output,
                options=options,
                on_progress=bar,
                report=report,
                plot=args.plot,
                poster=args.poster,
            )
        finally:
            if bar is not None:
                bar.close()
        if to_stdout:
            from beatsync.engine.output.report import report_dict

            sys.stdout.write(json.dumps(report_dict(result), indent=2) + "\n")
            sys.stdout.flush()
    if not args.quiet:
        summary = summary_line(result, time.monotonic() - started)
        print(summary, file=sys.stderr if to_stdout else sys.stdout)
    return EXIT_OK


def _check_sync_options(args: argparse.Namespace) -> None:
    from beatsync.engine.errors import OptionsError

    if args.start is not None and args.start < 0:
        raise OptionsError(f"--start must not be negative (got {args.start:g})")
    if args.end is not None and args.end <= 0:
        raise OptionsError(f"--end must be positive (got {args.end:g})")
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise OptionsError(f"--start ({args.start:g} s) must be before --end ({args.end:g} s)")
    if args.mix_live is not None and args.mix_live > 0:
        raise OptionsError(f"--mix-live must be 0 dB or below (got {args.mix_live:g})")


def _check_sync_paths(dance: Path, bgm: Path, targets: list[Path]) -> None:
    from beatsync.engine.errors import MediaNotFoundError, OptionsError

    for source in (dance, bgm):
        if not source.is_file():
            raise MediaNotFoundError("no such file", path=str(source))
    seen: list[Path] = [dance.resolve(), bgm.resolve()]
    for target in targets:
        if not target.parent.is_dir():
            raise OptionsError("the folder to write into does not exist", path=str(target))
        if target.is_dir():
            raise OptionsError("a folder is in the way of a file to write", path=str(target))
        resolved = target.resolve()
        if resolved in seen[:2]:
            raise OptionsError("refusing to overwrite an input", path=str(target))
        if resolved in seen:
            raise OptionsError("two outputs would be written to one file", path=str(target))
        seen.append(resolved)


@contextlib.contextmanager
def _all_or_nothing(paths: Sequence[Path]) -> Iterator[None]:
    """On failure, remove whichever of ``paths`` the failed run created."""
    existed = {p for p in paths if p.exists()}
    try:
        yield
    except BaseException:
        for path in paths:
            if path not in existed:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        raise


def summary_line(result: SyncResult, elapsed: float) -> str:
    """One line for a person: output, time taken, offset, drift, confidence and cut; for an
    edit, each piece's dance interval and offset instead of the one offset."""
    mapping, cut = result.mapping, result.cut
    pieces = result.parts
    if len(pieces) > 1:
        spans = "; ".join(
            f"{p.start:.2f}-{p.end:.2f} s at {p.mapping.offset:+.3f} s" for p in pieces
        )
        facts = [f"{len(pieces)} pieces ({spans})"]
    else:
        facts = [f"offset {mapping.offset:+.3f} s"]
    facts.append(f"drift {mapping.drift_ppm:+.1f} ppm")
    if abs(mapping.drift_ppm) >= 1000.0:
        kind = "pitch kept" if mapping.pitch_kept else "resampled"
        facts.append(f"speed x{mapping.scale:.4f} ({kind})")
    facts += [
        f"confidence {result.alignment.confidence:.2f}",
        f"cut {cut.start:.2f}-{cut.end:.2f} s ({_edge(cut.start_reason, cut.start_evidence)}"
        f"/{_edge(cut.end_reason, cut.end_evidence)})",
    ]
    return f"wrote {result.output.path} in {elapsed:.1f} s: " + ", ".join(facts)


def _edge(reason: str, evidence: EdgeEvidence) -> str:
    """A cut edge's reason, with how sure it is when not quite, and the music kept there that
    was too quiet for the room to hear (a quiet intro or outro)."""
    words = reason
    if evidence.certainty < 0.995:
        words += f" {evidence.certainty:.0%} sure"
    if evidence.unheard >= 0.5:
        words += f", {evidence.unheard:.1f} s too quiet to hear kept"
    return words


class ProgressBar:
    """A stage name and a percentage bar on one terminal line, redrawn in place.

    Call it as the engine's progress callback ``(stage, fraction, message)``; :meth:`close` wipes
    the line so that what is printed next starts clean.
    """

    def __init__(self, stream: TextIO, *, width: int = 28, columns: int | None = None) -> None:
        self._stream = stream
        self._width = width
        self._columns = columns
        self._shown = ""
        self._glyphs = ("█", "░") if _can_encode(stream, "█░") else ("#", "-")

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
        filled = round(fraction * self._width)
        bar = self._glyphs[0] * filled + self._glyphs[1] * (self._width - filled)
        line = f"{stage:<6} {bar} {math.floor(fraction * 100):3d}%"
        if message:
            line += f"  {' '.join(message.split())}"
        columns = self._columns or shutil.get_terminal_size().columns
        line = line[: max(columns - 1, 0)]  # the last column would wrap on some terminals
        if line == self._shown:
            return
        padding = " " * max(len(self._shown) - len(line), 0)
        self._stream.write("\r" + line + padding)
        self._stream.flush()
        self._shown = line

    def close(self) -> None:
        if self._shown:
            self._stream.write("\r" + " " * len(self._shown) + "\r")
            self._stream.flush()
            self._shown = ""


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
