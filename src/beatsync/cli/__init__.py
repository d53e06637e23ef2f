"""The ``beatsync`` command: parse, call the engine or the service, print.

Each subcommand is one module with an ``add_<name>`` function in :data:`COMMANDS` that adds its
parser and sets its handler; handlers import what they need when they run, so
``beatsync --help`` starts fast. This is the only place where domain errors become exit codes:

    0  success
    2  usage: bad arguments or contradictory options (VALIDATION_ERROR)
    3  unusable input: missing, unreadable, no audio or video track, too long
    4  no confident alignment (MUSIC_MISMATCH)
    5  internal error (PROCESSING_FAILED), including anything unexpected

Errors are printed as ``beatsync: error [CODE]: message`` on stderr; with ``BEATSYNC_DEBUG=1`` the
stack trace is printed too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from beatsync import __version__

from ._common import (
    EXIT_ALIGNMENT,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    SubParsers,
    UsageError,
)
from .cleanup import add_cleanup
from .migrate import add_migrate
from .serve import add_serve
from .sync import ProgressBar, add_sync, summary_line
from .worker import add_worker

__all__ = [
    "COMMANDS",
    "EXIT_ALIGNMENT",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "ProgressBar",
    "build_parser",
    "exit_code",
    "main",
    "run",
    "summary_line",
]

logger = logging.getLogger(__name__)

_EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT
_EXIT_FLUSH_FAILED = 120  # what Python exits with when it cannot flush stdout at exit

Handler = Callable[[argparse.Namespace], int]

COMMANDS: tuple[Callable[[SubParsers], None], ...] = (
    add_sync,
    add_serve,
    add_worker,
    add_cleanup,
    add_migrate,
)
"""Every subcommand's parser-adding function, in ``--help`` order."""


def run() -> NoReturn:
    """The console script (and ``python -m beatsync``): run the command, exit with its code.

    Jobs spread their work over the cores themselves, so OpenBLAS, loaded with NumPy, is kept
    from starting a thread per core: its threads spin for a while when they start and after
    each small product, on the cores the job needs. On a 3-minute pair that costs 0.12 s of
    the alignment and 0.4 CPU-seconds of the run.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main(exit_when_done=True))


def main(argv: Sequence[str] | None = None, *, exit_when_done: bool = False) -> int:
    """Run the ``beatsync`` command and return its exit code.

    With ``exit_when_done``, a one-shot command (``sync``) ends the process as soon as it is
    done, its files closed and its output flushed: tearing the interpreter down (SciPy alone
    brings in some 700 modules) would add about 50 ms to every run.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _print_error("VALIDATION_ERROR", str(exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version print and exit 0
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if not getattr(args, "configures_logging", False):
        _configure_logging(quiet=bool(getattr(args, "quiet", False)))
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print("beatsync: interrupted", file=sys.stderr)
        code = _EXIT_INTERRUPTED
    except Exception as exc:
        code = _fail(exc)
    if exit_when_done and getattr(args, "one_shot", False):
        _end_process(code)
    return code


def _end_process(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            # Output lost (a closed pipe, a full disk): fail as the interpreter would have.
            code = code or _EXIT_FLUSH_FAILED
    logging.shutdown()
    os._exit(code)


def build_parser() -> argparse.ArgumentParser:
    """The ``beatsync`` parser with every subcommand in :data:`COMMANDS`."""
    parser = Parser(
        prog="beatsync",
        description="Put the clean reference track under a dance class video, in sync.",
    )
    parser.add_argument("--version", action="version", version=f"beatsync {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: 2 options, 3 input, 4 alignment, 5 anything else."""
    from beatsync.engine.errors import AlignmentError, InputError, OptionsError

    if isinstance(exc, OptionsError):
        return EXIT_USAGE
    if isinstance(exc, InputError):
        return EXIT_INPUT
    if isinstance(exc, AlignmentError):
        return EXIT_ALIGNMENT
    return EXIT_INTERNAL


def _fail(exc: Exception) -> int:
    from beatsync.engine.errors import BeatSyncError

    if isinstance(exc, BeatSyncError):
        code, message = exc.code, str(exc)
    else:
        code, message = "PROCESSING_FAILED", f"unexpected {type(exc).__name__}: {exc}"
    if _debug():
        traceback.print_exception(exc, file=sys.stderr)
    _print_error(code, message)
    return exit_code(exc)


def _print_error(code: str, message: str) -> None:
    # One line, whatever FFmpeg or the OS put into the message.
    print(f"beatsync: error [{code}]: {' '.join(message.split())}", file=sys.stderr)


def _debug() -> bool:
    return os.environ.get("BEATSYNC_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def _configure_logging(*, quiet: bool) -> None:
    level = logging.DEBUG if _debug() else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="beatsync: %(levelname)s: %(name)s: %(message)s")
