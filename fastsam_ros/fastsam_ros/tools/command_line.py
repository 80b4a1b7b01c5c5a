"""The tools' command-line parser: a bad command line is one line on stderr and exit code 2,
since argparse's usage block would bury the reason."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
