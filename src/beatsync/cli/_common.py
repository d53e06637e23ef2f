"""What every subcommand shares: exit codes, the parser class and argument types."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

__all__ = [
    "EXIT_ALIGNMENT",
    "EXIT_INPUT",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "SubParsers",
    "UsageError",
    "finite_number",
    "positive_int",
    "whole_number",
]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_ALIGNMENT = 4
EXIT_INTERNAL = 5


class UsageError(Exception):
    """Bad command-line arguments, found by argparse."""


class Parser(argparse.ArgumentParser):
    # argparse would print its own error format and exit; route it through main() instead.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[Parser]
else:
    SubParsers = argparse._SubParsersAction


def finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def whole_number(least: int, unit: str = "") -> Callable[[str], int]:
    """An argument type: a whole number of at least ``least`` (``unit`` names it in errors)."""
    floor = f"{least} {unit}".strip()

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"at least {floor} (got {value})")
        return value

    return parse


positive_int = whole_number(1)
