"""Driving a fastsam node from another process: start it, send frames, call its services, read its outputs.

Used by the demo and the player, and by the tests and benchmarks.

Starting the node as a real subprocess (DDS between processes, as on a robot) and
waiting on real graph events, never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import rclpy
from rclpy.client import Client
from rclpy.qos import qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import Image

from fastsam_msgs.msg import InstanceArray
from fastsam_ros.ros.convert import array_to_image, stamp_from_ns, stamp_to_ns
from fastsam_ros.ros.graph_exit import leave_graph
from fastsam_ros.ros.qos import SERVICE_QOS

OUTPUTS = {"instances": InstanceArray, "label_image": Image, "debug_image": Image, "selection": InstanceArray}


def isolated_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for a private graph: own domain id, discovery on this host only.

    Without a domain id, a graph that is already private (this host only) keeps its domain,
    so that a test run that chose one domain per worker keeps them apart.
    """
    env = dict(os.environ)
    if domain_id is None and env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" and env.get("ROS_DOMAIN_ID"):
        domain_id = int(env["ROS_DOMAIN_ID"])
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
    return env


def start_node(
    ros_args: list[str], env: dict[str, str], log_path: str | None = None, executable: str = "fastsam_node"
) -> subprocess.Popen:
    """fastsam_node in its own process; its output goes to log_path (or is inherited)."""
    command = [installed_command(executable), "--ros-args", *ros_args]
    output = open(log_path, "w") if log_path else None  # noqa: SIM115 - owned by the process
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT if output else None)


def stop_node(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT, as Ctrl-C would; kill only if the node does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def installed_command(name: str) -> str:
    """The command installed beside this interpreter (the venv's), so tests run what set-up installed."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def wait_until(condition: Callable[[], bool], timeout: float, spin: Callable[[], None], what: str) -> None:
    """Spin until condition holds; TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        spin()


def first_answer(client: Client, request, spin_until_done: Callable[[Future, float], None], timeout: float) -> bool:
    """Call until one answer arrives; only then is the response path known to be matched.

    A service can look ready to a new client before the server has matched the client's
    response reader, and a response sent in that window is lost for good. Calls made
    before the first answer are therefore retried (each given 2 s), not counted.
    ``spin_until_done(future, seconds)`` spins the client's node until the future is done
    or the seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        spin_until_done(future, 2.0)
        if future.done():
            return True
        client.remove_pending_request(future)
    return False


class NodeClient:
    """The other side of a fastsam node: publishes camera frames, records its outputs.

    Runs in its own rclpy context so it can live beside other ROS code in a process.
    Arrival times of ~/instances are kept for end-to-end latency.
    """

    def __init__(
        self,
        camera_topic: str,
        node_name: str = "fastsam",
        name: str = "fastsam_client",
        outputs: tuple[str, ...] = tuple(OUTPUTS),
    ) -> None:
        self.context = rclpy.Context()
        self.context.init()
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.camera = self.node.create_publisher(Image, camera_topic, qos_profile_sensor_data)
        self.outputs = outputs
        self.received: dict[str, list] = {topic: [] for topic in OUTPUTS}
        self.arrival: dict[int, float] = {}
        for topic in outputs:
            self.node.create_subscription(OUTPUTS[topic], f"/{node_name}/{topic}", self._recorder(topic), 10)
        self.process: subprocess.Popen | None = None

    def _recorder(self, topic: str) -> Callable:
        def record(msg) -> None:
            if topic == "instances":
                self.arrival[stamp_to_ns(msg.header.stamp)] = time.perf_counter()
            self.received[topic].append(msg)

        return record

    def spin(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"node process exited with code {self.process.returncode}")
        self.executor.spin_once(timeout_sec=0.05)

    def wait(self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        wait_until(condition, timeout, self.spin, what)

    def service_client(self, service_type, name: str, timeout: float = 60.0, probe=None) -> Client:
        """A client of the node's service, ready to call, with the QoS every prompt client needs.

        With a probe (a request that changes nothing when it is answered twice) the client is
        returned only once one call was answered, so the response path is matched for sure;
        without one, after a pause that is enough on an idle host.
        """
        client = self.node.create_client(service_type, name, qos_profile=SERVICE_QOS)
        self.wait(client.service_is_ready, timeout, f"service {name}")
        if probe is not None:
            if not first_answer(client, probe, self._spin_until_done, timeout):
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for a first answer from {name}")
            return client
        # The service looks ready once it matched this client's requests; the response path
        # may need a moment more, or the first response is lost.
        settle = time.monotonic() + 0.3
        self.wait(lambda: time.monotonic() > settle, 1.0, "the response path")
        return client

    def _spin_until_done(self, future: Future, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            self.wait(future.done, seconds, "an answer")

    def call(self, service_type, name: str, request, timeout: float = 60.0):
        """Call a service and wait for its response."""
        client = self.service_client(service_type, name, timeout)
        try:
            future = client.call_async(request)
            self.wait(future.done, timeout, f"response from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def send(self, image: np.ndarray, encoding: str = "bgr8", frame_id: str = "camera", publisher=None) -> int:
        """Publish a frame stamped now (on the camera topic by default); returns the stamp in nanoseconds."""
        stamp = time.time_ns()
        msg = array_to_image(image, encoding)
        msg.header.stamp = stamp_from_ns(stamp)
        msg.header.frame_id = frame_id
        (publisher or self.camera).publish(msg)
        return stamp

    def result_for(self, stamp: int, topic: str = "instances", timeout: float = 60.0):
        """The output on topic for the frame with this stamp, waiting for it."""

        def found():
            return next((m for m in self.received[topic] if stamp_to_ns(m.header.stamp) == stamp), None)

        self.wait(lambda: found() is not None, timeout, f"{topic} for frame {stamp}")
        return found()

    def first_result(self, image: np.ndarray, timeout: float = 60.0, resend: float = 2.0) -> tuple[int, object]:
        """Send a frame, again every `resend` seconds, until one is answered.

        Best-effort samples sent before both sides of a new connection have matched are
        lost; a first frame must therefore be retried, not awaited.
        """
        deadline = time.monotonic() + timeout
        while True:
            stamp = self.send(image)
            try:
                return stamp, self.result_for(stamp, timeout=min(resend, max(deadline - time.monotonic(), 0.1)))
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def warm_up(self, timeout: float = 60.0) -> None:
        """Send small frames until every subscribed output reaches us: both sides matched."""
        frame = np.full((48, 64, 3), 127, np.uint8)
        awaited = [topic for topic in ("instances", "label_image", "debug_image") if topic in self.outputs]
        deadline = time.monotonic() + timeout
        while not all(self.received[topic] for topic in awaited):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no output from the node on {awaited}")
            self.send(frame)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not all(self.received[topic] for topic in awaited):
                self.spin()
        for values in self.received.values():
            values.clear()
        self.arrival.clear()

    def close(self) -> None:
        self.executor.shutdown()
        leave_graph(self.node, self.context)
