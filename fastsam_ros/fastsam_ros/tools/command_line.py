"""The tools' command-line parser and their one-line messages: a bad command line is one line on
stderr and exit code 2, since argparse's usage block would bury the reason."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn

_ESCAPED = {code: ascii(chr(code))[1:-1] for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}
"""The C0 and C1 controls and Unicode's line and paragraph separators: what ends a line or drives a terminal."""


def one_line(text: str) -> str:
    """`text` with its control characters escaped (a newline as \\n): a file, topic or host name that
    holds a newline would split a one-line message in two, and a terminal would obey an escape sequence."""
    return text.translate(_ESCAPED)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, one_line(f"{self.prog}: error: {message} (see --help)") + "\n")


def integer_unless(problem: Callable[[int], str | None]) -> Callable[[str], int]:
    """An argparse type for an integer in ASCII digits, unless `problem` finds something wrong with it (it
    returns the reason or None): int() alone would also take '1_0' and other scripts' digits."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'")
        value = int(text)
        reason = problem(value)
        if reason is not None:
            raise argparse.ArgumentTypeError(reason)
        return value

    return parse
