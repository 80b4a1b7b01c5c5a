"""The node process's executor: callbacks on a thread pool, without rclpy's busy loop.

rclpy's MultiThreadedExecutor (up to at least Kilted) hands a ready callback to its
thread pool and goes straight back to its wait loop, which offers the same callback again,
without waiting, for as long as no pool thread has started it. That loop runs Python and
holds the GIL, so the pool thread it waits for gets the GIL only now and then: a camera
frame reached its callback 5-10 ms after arriving when the loop was lucky, and 20-380 ms
when it was not (1080p frames one at a time; median 9 ms, a quarter of them over 20 ms).
The fix upstream (ros2/rclpy pull request 1547) came after Kilted. This executor waits
until the pool has started each callback before it looks for the next one, and otherwise
runs callbacks as MultiThreadedExecutor does: several at once, each group's rules kept,
an exception raised from spin_once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from rclpy.context import Context
from rclpy.executors import ConditionReachedException, Executor, ShutdownException, TimeoutException
from rclpy.task import Task


class CallbackPoolExecutor(Executor):
    def __init__(self, num_threads: int, context: Context | None = None) -> None:
        super().__init__(context=context)
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="fastsam_callbacks")
        self._failures: list[BaseException] = []

    def spin_once(self, timeout_sec: float | None = None) -> None:
        """Start the next ready callback on the pool (waiting up to timeout_sec for one)."""
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec)
        except (ShutdownException, TimeoutException, ConditionReachedException):
            pass
        else:
            started = threading.Event()
            self._pool.submit(self._run, handler, started)
            started.wait()
        if self._failures:
            raise self._failures.pop(0)

    def _run(self, handler: Task, started: threading.Event) -> None:
        started.set()
        handler()
        failure = handler.exception()
        if failure is not None:
            self._failures.append(failure)

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Stop taking callbacks, then wait for those running to end."""
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=True)
        return done
