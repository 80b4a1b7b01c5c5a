"""Shared fixtures: the real model, real images, and a real node process over DDS.

The whole session runs on a private ROS domain with discovery limited to this host,
so parallel runs and other graphs on the machine cannot interfere.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastsam_ros.ros_graph import NodeClient, isolated_ros_env, start_node, stop_node

os.environ.update(isolated_ros_env())
# ONNX exports of the weights go to a cache of this run, shared with the node processes.
os.environ["FASTSAM_ROS_CACHE"] = tempfile.mkdtemp(prefix="fastsam_ros_cache_")

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
def node_engine():
    """An engine on the runtime a node picks by default on this CPU, to compare its outputs with."""
    from fastsam_ros.engine import SegmentationEngine
    from fastsam_ros.model_loading import load_model

    return SegmentationEngine(load_model("yolo11n-seg.pt", "cpu", runtime="auto"))


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


@pytest.fixture(scope="module")
def node_graph(tmp_path_factory, request) -> Iterator[NodeClient]:
    """fastsam_node in its own process, plus a client in this one, on one private graph.

    Test modules may define NODE_PARAMETERS (a list of "name:=value"), NODE_ARGS (more
    --ros-args arguments), WARM_UP = False for a node that has not seen a frame yet, and
    NODE_EXECUTABLE = "fastsam_lifecycle_node" for the managed node (left unconfigured).
    """
    parameters = getattr(request.module, "NODE_PARAMETERS", [])
    camera = "/test/camera/image_raw"
    log = tmp_path_factory.mktemp("node") / "node.log"
    args = ["-r", f"image:={camera}", "-p", "device:=cpu"]
    for parameter in parameters:
        args += ["-p", parameter]
    args += getattr(request.module, "NODE_ARGS", [])
    executable = getattr(request.module, "NODE_EXECUTABLE", "fastsam_node")
    process = start_node(args, dict(os.environ), str(log), executable=executable)
    client = NodeClient(camera)
    client.process = process
    client.log_path = log
    try:
        if executable == "fastsam_lifecycle_node":
            client.wait(lambda: client.node.count_publishers("/fastsam/transition_event") > 0, 120.0, "lifecycle")
            yield client
            return
        if "input:=compressed" in parameters:
            client.wait(lambda: client.node.count_publishers("/fastsam/instances") > 0, 180.0, "the node's outputs")
            yield client
            return
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
