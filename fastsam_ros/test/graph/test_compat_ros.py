"""Canaries of the upstream workarounds that need rclpy nodes (fastsam_ros.core.compat).

Each reproduces the problem on the installed ROS and fails, with the entry's message, once
it is gone. Nodes in a private context of this process; guard conditions for the executor,
services over DDS on loopback for the responses.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger

from fastsam_ros.core.compat import FASTDDS_RESPONSES_TO_EVERY_CLIENT, RCLPY_EXECUTOR_REQUEUE, RCLPY_OVERRIDE_TYPE
from fastsam_ros.ros import executor as executor_module
from fastsam_ros.ros.executor import CallbackPoolExecutor, node_executor

SPINS = 5
SPIN_TIMEOUT_S = 0.2


@pytest.fixture
def context() -> Iterator[Context]:
    context = rclpy.Context()
    context.init()
    yield context
    context.try_shutdown()


def test_canary_multithreaded_executor_offers_a_queued_callback_again_without_waiting(context):
    node = rclpy.create_node("requeue_canary", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    group = ReentrantCallbackGroup()
    release = threading.Event()
    blocked: list[int] = []

    def block() -> None:
        blocked.append(1)
        release.wait()

    for _ in range(2):
        node.create_guard_condition(block, callback_group=group).trigger()
    ran = threading.Event()
    queued = node.create_guard_condition(ran.set, callback_group=group)
    try:
        deadline = time.monotonic() + 5.0
        while len(blocked) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert len(blocked) == 2, "both pool threads should be held"
        queued.trigger()
        executor.spin_once(timeout_sec=1.0)  # hands the callback to the pool, whose threads are busy
        started = time.monotonic()
        for _ in range(SPINS):
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)  # nothing new is ready: each should wait
        elapsed = time.monotonic() - started
    finally:
        release.set()
        deadline = time.monotonic() + 5.0
        while not ran.is_set() and time.monotonic() < deadline:  # no callback left to run on a destroyed node
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        node.destroy_node()
    assert elapsed < SPINS * SPIN_TIMEOUT_S / 2, RCLPY_EXECUTOR_REQUEUE.expired()


def test_the_node_process_runs_callback_pool_executor_while_rclpy_lacks_the_fix(context, monkeypatch):
    assert RCLPY_EXECUTOR_REQUEUE.needed()
    executor = node_executor(2, context=context)
    assert isinstance(executor, CallbackPoolExecutor)
    executor.shutdown()
    fixed = dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in="0.0.1")
    monkeypatch.setattr(executor_module, "RCLPY_EXECUTOR_REQUEUE", fixed)
    executor = node_executor(2, context=context)
    assert isinstance(executor, MultiThreadedExecutor)
    executor.shutdown()


def test_canary_a_client_receives_the_responses_to_other_clients(context):
    server = rclpy.create_node("responses_canary_server", context=context)
    server.create_service(Trigger, "responses_canary", lambda request, response: response)
    quiet = rclpy.create_node("responses_canary_quiet", context=context)
    busy = rclpy.create_node("responses_canary_busy", context=context)
    quiet_client = quiet.create_client(Trigger, "responses_canary", qos_profile=QoSProfile(depth=1))
    busy_client = busy.create_client(Trigger, "responses_canary", qos_profile=QoSProfile(depth=1))
    serving = SingleThreadedExecutor(context=context)
    serving.add_node(server)
    serving.add_node(busy)
    waiting = SingleThreadedExecutor(context=context)
    waiting.add_node(quiet)
    try:
        assert quiet_client.wait_for_service(5.0) and busy_client.wait_for_service(5.0)
        pending = quiet_client.call_async(Trigger.Request())
        for _ in range(3):  # answered after the quiet client's request, while it does not take responses
            call = busy_client.call_async(Trigger.Request())
            serving.spin_until_future_complete(call, timeout_sec=5.0)
            assert call.done()
        waiting.spin_until_future_complete(pending, timeout_sec=1.0)
        answered = pending.done()
    finally:
        serving.shutdown()
        waiting.shutdown()
        for node in (server, quiet, busy):
            node.destroy_node()
    assert not answered, FASTDDS_RESPONSES_TO_EVERY_CLIENT.expired()


def test_canary_rclpy_refuses_an_integer_for_a_double_parameter(context):
    node = rclpy.create_node("override_canary", context=context, parameter_overrides=[Parameter("conf", value=1)])
    try:
        node.declare_parameter("conf", 0.4)
    except InvalidParameterTypeException:
        pass
    else:
        pytest.fail(RCLPY_OVERRIDE_TYPE.expired())
    finally:
        node.destroy_node()
