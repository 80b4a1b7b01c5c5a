"""A real rclpy graph inside the test process, for the ROS shell's tests that need no node process:
publishers and services of the code under test, and subscriptions that record what they send."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from fastsam_ros.ros.graph_exit import leave_graph
from fastsam_ros.tools.node_client import wait_until

SILENCE_S = 0.3
"""How long to listen before concluding that nothing was published."""


class InProcessGraph:
    """One rclpy context with an executor and a listening node; nodes under test join it.

    Every node lives in a namespace of this process: processes that share a ROS domain (a
    mutation run's workers) never hear each other's topics.
    """

    def __init__(self) -> None:
        self.namespace = f"/test{os.getpid()}"
        self.context = rclpy.Context()
        self.context.init()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.listener = rclpy.create_node("in_process_listener", namespace=self.namespace, context=self.context)
        self.executor.add_node(self.listener)

    def add(self, node: Node) -> None:
        self.executor.add_node(node)

    def listen(self, kind: type, topic: str, publisher_count: Callable[[], int] | None = None) -> list:
        """Every message on topic from now on, once the subscription is matched with the publisher."""
        received: list = []
        self.listener.create_subscription(kind, topic, received.append, 50)
        self.spin_until(lambda: self.listener.count_publishers(topic) > 0, f"a publisher on {topic}")
        if publisher_count is not None:
            self.spin_until(lambda: publisher_count() > 0, f"{topic} matched")
        return received

    def spin_until(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        wait_until(condition, timeout, lambda: self.executor.spin_once(timeout_sec=0.02), what)

    def spin_for(self, seconds: float = SILENCE_S) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        leave_graph(self.listener, self.context)


@pytest.fixture(scope="module")
def ros_graph() -> Iterator[InProcessGraph]:
    graph = InProcessGraph()
    yield graph
    graph.close()
