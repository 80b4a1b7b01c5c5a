"""Latest-frame slots between the camera callbacks and the inference worker.

Latest frame wins: when the model is slower than a camera, a new frame replaces that
camera's waiting one instead of queueing behind it, so results are never older than
one inference plus one frame. Replacements are counted as drops. With several cameras
there is one slot each, and the worker takes every waiting frame at once so that they
share one forward pass.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrameMailbox(Generic[T]):
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._items: dict[str, T] = {}
        self._closed = False
        self.dropped = 0

    def put(self, item: T, slot: str = "") -> bool:
        """Store item in its slot, replacing (and counting as dropped) one not yet taken."""
        with self._condition:
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

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
