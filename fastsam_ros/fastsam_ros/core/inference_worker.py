"""The one thread that runs inference, supervised so that no frame can end it.

Every camera's newest frame is taken from the mailbox at once and handed to the node's
processing function, with whether frames queue: the fastest camera's frames arrive more
often than the worker, smoothed alike, gets through a batch. A client that sends its next
frame only once it has the answer arrives slower by its round trip, so it never queues.
An exception from the processing function is reported and the worker goes on with the
next frames. Should the thread die all the same (an exception from the reporting itself,
say), ``check`` notices, restarts it and says why, so a node never keeps answering
prompts from an old frame while silently segmenting nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from fastsam_ros.core.frame_mailbox import LatestFrameMailbox, smoothed

T = TypeVar("T")


class InferenceWorker(Generic[T]):
    def __init__(
        self,
        mailbox: LatestFrameMailbox[T],
        process: Callable[[dict[str, T], bool], None],
        on_error: Callable[[Exception], None],
        name: str = "fastsam_inference",
    ) -> None:
        self._mailbox = mailbox
        self._process = process
        self._on_error = on_error
        self._name = name
        self._death: str | None = None
        self._thread = self._spawn()

    def _spawn(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        busy: float | None = None
        try:
            while not self._mailbox.closed:
                frames = self._mailbox.take_all(timeout=0.5)
                if not frames:
                    continue
                gap = self._mailbox.arrival_gap()
                started = time.monotonic()
                try:
                    self._process(frames, busy is not None and gap is not None and gap < busy)
                except Exception as error:  # one bad batch must never stop inference
                    self._on_error(error)
                busy = smoothed(busy, time.monotonic() - started)
        except BaseException as error:  # recorded for check(), which restarts the thread
            self._death = repr(error)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def check(self) -> str | None:
        """Restart a worker that died while the mailbox is open; the reason it died, or None."""
        if self._thread.is_alive() or self._mailbox.closed:
            return None
        reason = self._death or "the thread ended"
        self._death = None
        self._thread = self._spawn()
        return reason

    def stop(self, timeout: float = 10.0) -> None:
        self._mailbox.close()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
