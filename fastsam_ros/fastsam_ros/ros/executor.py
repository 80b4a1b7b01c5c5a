"""The node process's executor: callbacks on a thread pool, without rclpy's busy loop.

rclpy's MultiThreadedExecutor (up to at least Kilted) hands a ready callback to its
thread pool and goes straight back to its wait loop, which offers the same callback again,
without waiting, for as long as no pool thread has started it. That loop runs Python and
holds the GIL, so the pool thread it waits for gets the GIL only now and then, and a
camera frame could reach its callback hundreds of milliseconds late (README, Performance).
The fix upstream (ros2/rclpy pull request 1547) came after Kilted, in rclpy 10.0.4;
`node_executor` picks this executor only where the installed rclpy lacks it
(fastsam_ros.core.compat.RCLPY_EXECUTOR_REQUEUE, read from rclpy's distribution metadata).

This executor waits until the pool has started each callback before it looks for the next
one, and never hands the pool a callback it already holds. Otherwise it runs callbacks as
MultiThreadedExecutor does: several at once, each callback group's rules kept, a
callback's exception raised from spin_once. Unlike it, it lets ExternalShutdownException
out of spin_once (the process's loop ends on it), and it offers only spin and spin_once:
the node process needs nothing else.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, ShutdownException, TimeoutException
from rclpy.task import Task

from fastsam_ros.core.compat import RCLPY_EXECUTOR_REQUEUE

HANDOVER_POLL_S = 1e-4


class CallbackPoolExecutor(Executor):
    def __init__(self, num_threads: int, context: Context | None = None) -> None:
        super().__init__(context=context)
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="fastsam_callbacks")
        self._held: set[Task] = set()
        self._failures: list[BaseException] = []

    def spin_once(self, timeout_sec: float | None = None) -> None:
        """Start the next ready callback on the pool (waiting up to timeout_sec for one)."""
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec)
        except (ShutdownException, TimeoutException):
            pass
        else:
            if handler not in self._held:
                self._held.add(handler)
                started = threading.Event()
                self._pool.submit(self._run, handler, started)
                started.wait()
                # The pool thread is a few steps from marking the task as executing; until then
                # the wait loop would offer it again at once.
                while handler in self._held and not handler.executing():
                    time.sleep(HANDOVER_POLL_S)
        if self._failures:
            raise self._failures.pop(0)

    def _run(self, handler: Task, started: threading.Event) -> None:
        started.set()
        try:
            handler()
        finally:
            self._held.discard(handler)
        failure = handler.exception()
        if failure is not None:
            self._failures.append(failure)

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        """Stop taking callbacks, then wait for those running to end (however long they take)."""
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=True)
        return done


def node_executor(num_threads: int, context: Context | None = None) -> Executor:
    """The node process's executor: CallbackPoolExecutor where rclpy's MultiThreadedExecutor
    still spins on queued callbacks, rclpy's own where the installed rclpy has the fix."""
    if RCLPY_EXECUTOR_REQUEUE.needed():
        return CallbackPoolExecutor(num_threads, context=context)
    return MultiThreadedExecutor(num_threads, context=context)
