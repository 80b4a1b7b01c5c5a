"""Latest-frame slots between the camera callbacks and the inference worker.

Latest frame wins: when the model is slower than a camera, a new frame replaces that
camera's waiting one instead of queueing behind it, so results are never older than
one inference plus one frame. Replacements are counted as drops. With several cameras
there is one slot each, and the worker takes every waiting frame at once so that they
share one forward pass.

The mailbox also keeps each camera's pace (the smoothed time between its frames), which
the worker compares with its own to tell whether frames arrive faster than they are
processed.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")

PACE_SMOOTHING = 0.25
"""Weight of the newest sample in a smoothed pace: DDS may deliver a steady stream in bursts."""


def smoothed(previous: float | None, sample: float) -> float:
    """Exponential moving average; the first sample as it is."""
    return sample if previous is None else previous + PACE_SMOOTHING * (sample - previous)


class LatestFrameMailbox(Generic[T]):
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._items: dict[str, T] = {}
        self._closed = False
        self._arrived: dict[str, float] = {}
        self._gaps: dict[str, float] = {}
        self.dropped = 0

    def put(self, item: T, slot: str = "", now: float | None = None) -> bool:
        """Store item in its slot, replacing (and counting as dropped) one not yet taken."""
        now = time.monotonic() if now is None else now
        with self._condition:
            if slot in self._arrived:
                self._gaps[slot] = smoothed(self._gaps.get(slot), now - self._arrived[slot])
            self._arrived[slot] = now
            replaced = slot in self._items
            if replaced:
                self.dropped += 1
            self._items[slot] = item
            self._condition.notify()
            return replaced

    def take_all(self, timeout: float | None = None) -> dict[str, T]:
        """Every waiting item by slot, waiting up to timeout for one; empty on timeout or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: bool(self._items) or self._closed, timeout)
            items, self._items = self._items, {}
            return {} if self._closed else items

    def arrival_gap(self, now: float | None = None) -> float | None:
        """Seconds between frames of the fastest camera, smoothed; a camera counts its silence
        since its last frame, so one that stopped stops counting. None before any second frame."""
        now = time.monotonic() if now is None else now
        with self._condition:
            gaps = [max(gap, now - self._arrived[slot]) for slot, gap in self._gaps.items()]
        return min(gaps, default=None)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
