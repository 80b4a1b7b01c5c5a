"""Work folders for exports written into a cache, which outlive a process that ends halfway.

An export is written into a work folder beside its target and moved into place when complete,
so a reader never sees half a file. A process can end before it removes that folder: killed,
or leaving at Ctrl-C without waiting for a background export (fastsam_ros.ros.process). Each
folder is named after its process, and the next export into the same cache removes the folders
of processes that no longer run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = ".export-"
"""Then the pid of the process that writes, a dash, and tempfile's random part."""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        pass
    return True


def remove_abandoned(folder: Path) -> None:
    """Remove the work folders in `folder` whose process has ended, as far as this user may: what
    cannot be removed (another user's files, a folder another process removes at once) stays."""
    for work in folder.glob(f"{PREFIX}*-*"):
        pid = work.name[len(PREFIX) :].split("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(work, ignore_errors=True)


@contextmanager
def work_folder(folder: Path) -> Iterator[Path]:
    """A fresh folder in `folder` (created with its parents), removed on leaving the block."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_abandoned(folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=f"{PREFIX}{os.getpid()}-") as work:
        yield Path(work)
