"""The node under test: a real fastsam_node process, and a client in this one, over DDS."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from fastsam_ros.tools.node_client import NodeClient, start_node, stop_node


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


NODE_LOG_LINES = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the node shows the end of the node's log beside its own output."""
    outcome = yield
    report = outcome.get_result()
    client = getattr(item, "funcargs", {}).get("node_graph")
    log = getattr(client, "log_path", None)
    if report.failed and log is not None and log.exists():
        tail = log.read_text(errors="replace").splitlines()[-NODE_LOG_LINES:]
        report.sections.append((f"fastsam_node log, last {NODE_LOG_LINES} lines", "\n".join(tail)))
