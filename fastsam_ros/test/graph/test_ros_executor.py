"""The node process's executor: callbacks run on its pool, and it never spins while one waits.

A real rclpy node in a private context, with messages over DDS to its own subscriptions.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import Executor, MultiThreadedExecutor
from std_msgs.msg import String

from fastsam_ros.core.compat import RCLPY_EXECUTOR_REQUEUE
from fastsam_ros.ros import executor as executor_module
from fastsam_ros.ros.executor import CallbackPoolExecutor, node_executor
from fastsam_ros.tools.node_client import wait_until
from test_support.own_context import NodeInOwnContext

SLOW_S = 0.5


class CountingExecutor(CallbackPoolExecutor):
    """Counts its looks for ready callbacks: a busy loop makes thousands in half a second."""

    looks = 0

    def wait_for_ready_callbacks(self, *args, **kwargs):
        self.looks += 1
        return super().wait_for_ready_callbacks(*args, **kwargs)


class Graph(NodeInOwnContext):
    """A node with a slow and a fast subscription, a publisher to each, and when each callback ran."""

    def __init__(self, threads: int, make_executor: Callable[..., Executor] = CountingExecutor) -> None:
        super().__init__("executor_test", lambda context: make_executor(threads, context=context))
        self.started: dict[str, float] = {}
        self.ran: dict[str, tuple[float, float]] = {}
        self.threads: dict[str, str] = {}
        group = ReentrantCallbackGroup()
        self.node.create_subscription(String, "slow", self._record("slow", SLOW_S), 10, callback_group=group)
        self.node.create_subscription(String, "fast", self._record("fast", 0.0), 10, callback_group=group)
        self.slow = self.node.create_publisher(String, "slow", 10)
        self.fast = self.node.create_publisher(String, "fast", 10)

    def _record(self, name: str, seconds: float) -> Callable[[String], None]:
        def callback(msg: String) -> None:
            started = self.started[name] = time.monotonic()
            self.threads[name] = threading.current_thread().name
            if msg.data == "fail":
                raise RuntimeError("a callback failed")
            time.sleep(seconds)
            self.ran[name] = (started, time.monotonic())

        return callback

    def spin_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        wait_until(condition, timeout, lambda: self.executor.spin_once(timeout_sec=0.05), "the callbacks")

    def matched(self) -> None:
        self.spin_until(lambda: self.slow.get_subscription_count() and self.fast.get_subscription_count())


@pytest.fixture
def graph_of() -> Iterator[Callable[[int], Graph]]:
    made: list[Graph] = []

    def make(threads: int, make_executor: Callable[..., Executor] = CountingExecutor) -> Graph:
        made.append(Graph(threads, make_executor))
        made[-1].matched()
        return made[-1]

    yield make
    for graph in made:
        graph.close()


def test_a_callback_waiting_for_a_free_thread_does_not_make_the_executor_spin(graph_of):
    graph = graph_of(1)
    graph.slow.publish(String(data="slow"))
    graph.spin_until(lambda: "slow" in graph.started)
    graph.fast.publish(String(data="fast"))
    looks_before = graph.executor.looks
    graph.spin_until(lambda: "fast" in graph.ran)
    assert graph.ran["fast"][0] >= graph.ran["slow"][1], "one thread: the fast callback waits for the slow one"
    assert graph.executor.looks - looks_before < 20


def test_callbacks_run_side_by_side_on_the_pool(graph_of):
    graph = graph_of(2)
    graph.slow.publish(String(data="slow"))
    graph.fast.publish(String(data="fast"))
    graph.spin_until(lambda: len(graph.ran) == 2)
    assert graph.ran["fast"][1] < graph.ran["slow"][1], "the fast callback ran while the slow one slept"
    assert all(name.startswith("fastsam_callbacks_") for name in graph.threads.values()), graph.threads
    assert graph.threads["fast"] != graph.threads["slow"]


@pytest.mark.filterwarnings("ignore:MultiThreadedExecutor is used with a single thread")
@pytest.mark.parametrize("rclpy_fixed", [False, True])
def test_the_node_processs_executor_runs_as_many_callbacks_at_once_as_it_is_given_threads(
    graph_of, monkeypatch, rclpy_fixed
):
    """node_executor(1), whichever executor it picks: the fast callback waits for the slow one."""
    if rclpy_fixed:
        fixed = dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in="0.0.1")
        monkeypatch.setattr(executor_module, "RCLPY_EXECUTOR_REQUEUE", fixed)
    graph = graph_of(1, node_executor)
    assert isinstance(graph.executor, MultiThreadedExecutor if rclpy_fixed else CallbackPoolExecutor)
    graph.slow.publish(String(data="slow"))
    graph.spin_until(lambda: "slow" in graph.started)
    graph.fast.publish(String(data="fast"))
    graph.spin_until(lambda: "fast" in graph.ran)
    assert graph.ran["fast"][0] >= graph.ran["slow"][1]


def test_an_exception_from_a_callback_comes_out_of_spin_once(graph_of):
    graph = graph_of(2)
    graph.fast.publish(String(data="fail"))
    with pytest.raises(RuntimeError, match="a callback failed"):
        graph.spin_until(lambda: False, timeout=5.0)


def test_shutdown_waits_for_a_running_callback(graph_of):
    graph = graph_of(2)
    graph.slow.publish(String(data="slow"))
    graph.spin_until(lambda: "slow" in graph.started)
    assert graph.executor.shutdown() is True
    assert "slow" in graph.ran, "shutdown returned while the slow callback still ran"
