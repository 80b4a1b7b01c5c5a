"""A stop request that a signal handler can record without taking a lock.

threading.Event.set takes a lock. A handler runs in the main thread between two bytecodes, so
a second signal can arrive while the first handler holds that lock inside set(): the second
handler then waits for a lock its own thread holds, forever (seen with two stop signals sent
back to back to fastsam_web). Assigning a bool takes no lock and is atomic under the GIL.
"""

from __future__ import annotations

import time

POLL_S = 0.05
"""How often wait() looks at the flag: the longest a stop waits to be noticed by a sleeper."""


class SignalFlag:
    """Set once from a signal handler (or any thread); polled, or slept on with wait()."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until the flag is set or timeout seconds have passed; whether it is set.

        The last slice ends at the deadline itself, so a paced sleep keeps its timing.
        """
        deadline = time.monotonic() + timeout
        while not self._set:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, POLL_S))
        return True
