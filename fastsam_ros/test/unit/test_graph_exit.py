"""Leaving the ROS graph is bounded in time (fastsam_ros.ros.graph_exit).

The bound's cases run in a child process, since the bound ends the process: a real node in a
private context, whose deletion is made to hang in C code that holds the GIL, as a DDS
participant deletion that spins does. What a leave does runs in this process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import rclpy

from fastsam_ros.ros.graph_exit import leave_graph

CHILD = textwrap.dedent(
    """
    import ctypes
    import time

    import rclpy

    from fastsam_ros.ros import graph_exit

    graph_exit.LEAVE_TIMEOUT_S = 1.0
    context = rclpy.Context()
    context.init()
    node = rclpy.create_node("graph_exit_check", context=context)
    if HANG:
        node.destroy_node = lambda: ctypes.PyDLL(None).sleep(60)  # holds the GIL, never returns in time
    graph_exit.leave_graph(node, context)
    print("left", context.ok(), flush=True)
    time.sleep(2.0)  # past the bound: a watchdog left armed would end the process now
    print("done", flush=True)
    """
)


def _run(hang: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", f"HANG = {hang}\n{CHILD}"], capture_output=True, text=True, timeout=60
    )
    return child, time.monotonic() - start


def test_a_leave_that_hangs_ends_the_process_within_the_bound_and_says_where():
    child, seconds = _run(hang=True)
    assert child.returncode == 1, child.stderr
    assert seconds < 20.0, seconds
    assert "left" not in child.stdout
    assert "Timeout (0:00:01)!" in child.stderr
    assert "leave_graph" in child.stderr, child.stderr


def test_a_leave_in_time_shuts_the_context_down_and_disarms_the_bound():
    child, _ = _run(hang=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["left", "False", "done"]
    assert "Timeout" not in child.stderr


def test_leaving_destroys_the_node_given_and_shuts_down_its_context_not_another():
    contexts = [rclpy.Context(), rclpy.Context()]
    for context in contexts:
        context.init(args=[])
    node = rclpy.create_node("graph_exit_in_process", context=contexts[0])
    destroyed = []
    node.destroy_node = lambda: destroyed.append(contexts[0].ok())
    leave_graph(node, contexts[0])
    assert destroyed[:1] == [True], "the node is destroyed, before its context is shut down"
    assert [context.ok() for context in contexts] == [False, True]
    leave_graph(None, contexts[1])
    assert not contexts[1].ok()
