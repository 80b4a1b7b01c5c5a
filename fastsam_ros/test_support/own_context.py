"""A node in an rclpy context of its own, for tests that stand in for the other side of a topic.

A context of its own can be started and shut down without touching the default context that the
code under test (a tool's node, the test process's other graphs) may be using.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, SingleThreadedExecutor

from fastsam_ros.ros.graph_exit import leave_graph


class NodeInOwnContext:
    """One node, its context and its executor (made by `executor(context=...)`), spun by whoever
    calls `executor.spin_once`, or in a daemon thread from `spin_in_thread` on."""

    def __init__(self, name: str, executor: Callable[..., Executor] = SingleThreadedExecutor) -> None:
        self.context = rclpy.Context()
        self.context.init(args=[])
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = executor(context=self.context)
        self.executor.add_node(self.node)
        self.thread: threading.Thread | None = None

    def spin_in_thread(self) -> None:
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop spinning and leave the graph (bounded, as the package's own nodes leave it)."""
        self.executor.shutdown()
        if self.thread is not None:
            self.thread.join(5.0)
        leave_graph(self.node, self.context)
