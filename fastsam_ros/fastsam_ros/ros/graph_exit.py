"""Leaving the ROS graph in bounded time, once a process's own work is done and saved.

Deleting a DDS participant can hang. Fast DDS 3.2 waits for the participant-discovery
callbacks in flight before it lets go, and that wait busy-loops on the lock those callbacks
need, so when other participants leave at the same moment (a launch stopped with Ctrl-C,
several clients told to stop together) a process can spin on one core for minutes: seen in a
prompt-load client whose output was complete, with two discovery threads starved behind the
deleting one (https://github.com/eProsima/Fast-DDS/issues/6513). Other middlewares have had
their own hangs there. Nothing is lost by giving up on that goodbye, so every program of the
package leaves through `leave_graph`: past LEAVE_TIMEOUT_S the process exits with status 1 and
prints every thread's stack, which shows where it hung. The watchdog is faulthandler's native
thread, so it fires while the main thread is stuck in C++ and holds the GIL.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import rclpy
from rclpy.context import Context
from rclpy.node import Node

LEAVE_TIMEOUT_S = 10.0
"""Far above a normal leave (tens of milliseconds here, a second or two on a loaded machine)."""


@contextmanager
def exits_within(seconds: float) -> Iterator[None]:
    """Exit the process with status 1, printing every thread's stack, if the block outlasts `seconds`."""
    stream = sys.__stderr__ if sys.__stderr__ is not None else open(os.devnull, "w")  # noqa: SIM115 - kept by faulthandler
    faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def leave_graph(node: Node | None, context: Context | None = None) -> None:
    """Destroy the node (where one was made) and shut its ROS context down (the default one
    where none is given), within LEAVE_TIMEOUT_S."""
    with exits_within(LEAVE_TIMEOUT_S):
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
