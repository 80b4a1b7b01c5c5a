"""The test run's clean-up of Fast DDS segments left by killed processes keeps those still in use."""

from __future__ import annotations

import subprocess
import sys
import time

from test_support.shared_memory import remove_abandoned_segments

HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "ab")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_only_segments_whose_lock_nobody_holds_are_removed(tmp_path):
    live, dead, other = "fastdds_0123456789abcdef", "fastdds_fedcba9876543210", "fastdds_port7411"
    for name in (live, f"{live}_el", dead, f"{dead}_sl", other, f"{other}_el"):
        (tmp_path / name).write_bytes(b"x" * 1000)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / f"{live}_el")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        freed = remove_abandoned_segments(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert freed == 2000
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([live, f"{live}_el", other, f"{other}_el"])
    time.sleep(0.1)
    assert remove_abandoned_segments(tmp_path) == 2000  # the holder is gone: its segment is abandoned now
    assert sorted(path.name for path in tmp_path.iterdir()) == [other, f"{other}_el"]
