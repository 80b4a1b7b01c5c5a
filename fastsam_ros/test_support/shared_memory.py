"""Removes the Fast DDS shared-memory files that killed processes leave in /dev/shm.

A participant's segment (70 MB under the large-frame profile) is deleted by its process on a
clean exit only. Tests kill node processes on purpose (SIGKILL, the OOM-like cases), so without
this a test run leaves gigabytes of RAM-backed files behind. A segment is in use while its owner
holds a lock on its lock file (`_el` or `_sl`); only segments whose lock nobody holds are removed,
the rule Fast DDS's own `fastdds shm clean` follows. Ports (a few kB each) are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from pathlib import Path

SHM = Path("/dev/shm")
LOCK_FILE = re.compile(r"^(fastdds_[0-9a-z]{16})_[es]l$")


def lock_is_held(lock_file: Path) -> bool:
    """Whether a live process holds the lock (flock conflicts even within this process)."""
    try:
        with open(lock_file, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False


def remove_abandoned_segments(folder: Path = SHM) -> int:
    """Deletes every Fast DDS segment of a dead process; returns how many bytes were freed."""
    freed = 0
    for lock_file in sorted(folder.glob("fastdds_*l")):
        match = LOCK_FILE.match(lock_file.name)
        if match is None or lock_is_held(lock_file):
            continue
        base = match.group(1)
        for path in (folder / base, lock_file):
            with contextlib.suppress(OSError):
                freed += path.stat().st_size
                path.unlink()
    return freed
