"""The stop flag every process's signal handler sets: a wait that keeps its deadline and ends at a stop.

That setting it takes no lock is what the signal tests of the processes check (two stop signals
back to back, test_web_hostile.py and test_node_process.py)."""

from __future__ import annotations

import threading
import time

from fastsam_ros.core.signal_flag import SignalFlag


def test_wait_sleeps_to_its_deadline_and_ends_soon_after_the_flag_is_set():
    flag = SignalFlag()
    started = time.monotonic()
    assert flag.wait(0.3) is False
    assert time.monotonic() - started >= 0.3
    assert not flag.is_set()
    threading.Timer(0.1, flag.set).start()
    started = time.monotonic()
    assert flag.wait(30.0) is True
    assert time.monotonic() - started < 5.0
    assert flag.is_set() and flag.wait(0.0) is True
