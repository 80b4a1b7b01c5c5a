"""The tools' command-line parser and their one-line messages: a bad command line is one line on
stderr and exit code 2, since argparse's usage block would bury the reason."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import NoReturn

_ESCAPED = {code: ascii(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
"""The C0 and C1 controls and Unicode's line and paragraph separators: what ends a line or drives a terminal."""
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
"""A number as people write it: float() would also take '1_0' and other scripts' digits."""
_INTEGER = re.compile(r"[+-]?[0-9]+")
"""An integer in ASCII digits: int() would also take '1_0' and other scripts' digits."""


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a newline as \\n): a file, topic or host name that
    holds a newline would split a one-line message in two, and a terminal would obey an escape sequence."""
    return text.translate(_ESCAPED)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, one_line(f"{self.prog}: error: {message} (see --help)") + "\n")


def finite(text: str) -> float:
    """A finite number in ASCII digits: nan would never come due and inf never end a wait."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    if not _DECIMAL.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected a number in ASCII digits, got '{text}'")
    return value


def number_in(low: float, high: float, low_allowed: bool) -> Callable[[str], float]:
    """An argparse type for a finite number from low (if allowed) to high."""

    def parse(text: str) -> float:
        value = finite(text)
        if not (low <= value if low_allowed else low < value) or value > high:
            opening = "[" if low_allowed else "("
            raise argparse.ArgumentTypeError(f"must be in {opening}{low:g}, {high:g}], got '{text}'")
        return value

    return parse


def integer_unless(problem: Callable[[int], str | None]) -> Callable[[str], int]:
    """An argparse type for an integer in ASCII digits, unless `problem` finds something wrong with it (it
    returns the reason or None)."""

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'")
        value = int(text)
        reason = problem(value)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    return parse


def integer_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type for an integer from low to high, both allowed (no upper end when high is None)."""

    def problem(value: int) -> str | None:
        if high is None:
            return f"must be {low} or more, got {value}" if value < low else None
        return f"must be within {low}..{high}, got {value}" if not low <= value <= high else None

    return integer_unless(problem)
