"""The tools' command-line parser: a bad command line is one line on stderr and exit code 2,
since argparse's usage block would bury the reason."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def integer_where(problem: Callable[[int], str | None]) -> Callable[[str], int]:
    """An argparse type for an integer in ASCII digits that `problem` finds nothing wrong with (it
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
