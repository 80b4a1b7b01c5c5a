"""A pid that names no running process, for code that tells running processes from ended ones."""

from __future__ import annotations

import subprocess
import sys


def ended_pid() -> int:
    """The pid of a child that has ended and been reaped (free until the kernel reuses it)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
