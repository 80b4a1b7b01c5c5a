"""Shared fixtures: the real model, real images, and a real node process over DDS.

The whole session runs on a private ROS domain with discovery limited to this host,
so parallel runs and other graphs on the machine cannot interfere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from fastsam_ros.ros_graph import isolated_ros_env, start_node, stop_node, wait_until

os.environ.update(isolated_ros_env())

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def loaded_model():
    from fastsam_ros.model_loading import load_model

    return load_model("yolo11n-seg.pt", "cpu")


@pytest.fixture(scope="session")
def engine(loaded_model):
    from fastsam_ros.engine import SegmentationEngine

    return SegmentationEngine(loaded_model)


@pytest.fixture(scope="session")
def bus() -> np.ndarray:
    from fastsam_ros.sample_frames import asset_image

    return asset_image("bus.jpg")


@pytest.fixture(scope="session")
def zidane() -> np.ndarray:
    from fastsam_ros.sample_frames import asset_image

    return asset_image("zidane.jpg")


@pytest.fixture(scope="session")
def bus_masks(engine, bus):
    return engine.segment(bus, stamp_ns=1, frame_id="camera")


class GraphClient:
    """A test-side ROS node: publishes camera frames, records the node's outputs."""

    def __init__(self, camera_topic: str, node_name: str = "fastsam") -> None:
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from fastsam_ros.msg import InstanceArray

        self.context = rclpy.Context()
        self.context.init()
        self.node = rclpy.create_node("fastsam_test_client", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.camera = self.node.create_publisher(Image, camera_topic, qos_profile_sensor_data)
        self.received: dict[str, list] = {"instances": [], "label_image": [], "debug_image": [], "selection": []}
        for name, kind in [
            ("instances", InstanceArray),
            ("label_image", Image),
            ("debug_image", Image),
            ("selection", InstanceArray),
        ]:
            self.node.create_subscription(kind, f"/{node_name}/{name}", self.received[name].append, 10)
        self.process = None

    def spin(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"node process exited with code {self.process.returncode}")
        self.executor.spin_once(timeout_sec=0.05)

    def wait(self, condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        wait_until(condition, timeout, self.spin, what)

    def call(self, service_type, name: str, request, timeout: float = 60.0):
        client = self.node.create_client(service_type, name)
        try:
            self.wait(lambda: client.service_is_ready(), timeout, f"service {name}")
            future = client.call_async(request)
            self.wait(future.done, timeout, f"response from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def send(self, image: np.ndarray, encoding: str = "bgr8") -> int:
        """Publish a frame stamped now; returns the stamp in nanoseconds."""
        from fastsam_ros.ros_convert import array_to_image
        from fastsam_ros.ros_graph import stamp_from_ns

        stamp = time.time_ns()
        msg = array_to_image(image, encoding)
        msg.header.stamp = stamp_from_ns(stamp)
        msg.header.frame_id = "camera"
        self.camera.publish(msg)
        return stamp

    def result_for(self, stamp: int, topic: str = "instances", timeout: float = 60.0):
        from fastsam_ros.ros_graph import stamp_to_ns

        def found():
            return next((m for m in self.received[topic] if stamp_to_ns(m.header.stamp) == stamp), None)

        self.wait(lambda: found() is not None, timeout, f"{topic} for frame {stamp}")
        return found()

    def warm_up(self) -> None:
        """Send small frames until the node's debug image reaches us: both sides matched."""
        frame = np.full((48, 64, 3), 127, np.uint8)
        deadline = time.monotonic() + 60.0
        while not self.received["debug_image"]:
            if time.monotonic() > deadline:
                raise TimeoutError("no debug image from the node")
            self.send(frame)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and not self.received["debug_image"]:
                self.spin()
        for values in self.received.values():
            values.clear()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def node_graph(tmp_path_factory, request) -> Iterator[GraphClient]:
    """fastsam_node in its own process, plus a client in this one, on one private graph.

    Test modules may define NODE_PARAMETERS (a list of "name:=value"), NODE_ARGS (more
    --ros-args arguments) and WARM_UP = False for a node that has not seen a frame yet.
    """
    parameters = getattr(request.module, "NODE_PARAMETERS", [])
    camera = "/test/camera/image_raw"
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-r", f"image:={camera}", "-p", "device:=cpu"]
    for parameter in parameters:
        args += ["-p", parameter]
    args += getattr(request.module, "NODE_ARGS", [])
    process = start_node(args, dict(os.environ), str(log))
    client = GraphClient(camera)
    client.process = process
    client.log_path = log
    try:
        client.wait(lambda: client.camera.get_subscription_count() > 0, 180.0, "the node to subscribe")
        client.wait(lambda: client.node.count_publishers("/fastsam/debug_image") > 0, 30.0, "the node's outputs")
        if getattr(request.module, "WARM_UP", True):
            client.warm_up()
        yield client
    finally:
        client.close()
        code = stop_node(process)
        time.sleep(0.1)
        assert code == 0, f"node exited with code {code}:\n{log.read_text()}"
