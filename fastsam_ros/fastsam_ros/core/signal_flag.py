"""A stop request that a signal handler can record without taking a lock.

threading.Event.set takes a lock. A handler runs in the main thread between two bytecodes, so
a second signal can arrive while the first handler holds that lock inside set(): the second
handler then waits for a lock its own thread holds, forever (seen with two stop signals sent
back to back to fastsam_web). Assigning a bool takes no lock and is atomic under the GIL.
"""

from __future__ import annotations


class SignalFlag:
    """Set once from a signal handler (or any thread), polled by the code that acts on it."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set
