"""Start-up and run-time parameters of the real node process."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from fastsam_ros.tools.node_client import start_node
from test_support.checkout import PACKAGE_FOLDER

NODE_ARGS = ["--params-file", str(PACKAGE_FOLDER / "config" / "fastsam.yaml")]


def _run_to_exit(tmp_path, args: list[str]) -> tuple[int, str]:
    log = tmp_path / "node.log"
    process = start_node(args, dict(os.environ), str(log))
    try:
        code = process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the node kept running with an invalid configuration")
    return code, log.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "device:=cpu", "-p", "conf:=2.0"], "conf: must be in [0.0, 1.0], got 2.0"),
        (["-p", "device:=cpu", "-p", "imgsz:=100"], "imgsz: must be a multiple of 32"),
        (["-p", "device:=cpu", "-p", "model:=/no/such/weights.pt"], "model weights not found"),
        (["-p", "device:=cpu", "-p", f"model:={PACKAGE_FOLDER / 'LICENSE'}"], "could not load model"),
        (["-p", "device:=cpu", "-p", "tracker:=kalman"], "tracker: must be one of"),
        pytest.param(
            ["-p", "device:=cuda:0"],
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="behaviour on machines without CUDA"),
        ),
    ],
)
def test_bad_start_up_configuration_fails_fast_with_one_line(tmp_path, args, expected):
    code, output = _run_to_exit(tmp_path, args)
    assert code == 2
    errors = [line for line in output.splitlines() if line.startswith("fastsam_node: error:")]
    assert len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output


@pytest.mark.parametrize("extra", [[], ["-p", "conf:=2.0"]], ids=["idle", "invalid-conf"])
def test_lifecycle_node_stays_up_unconfigured_and_stops_on_sigint(tmp_path, extra):
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    from fastsam_ros.tools.node_client import NodeClient, stop_node

    log = tmp_path / "node.log"
    process = start_node(["-p", "device:=cpu", *extra], dict(os.environ), str(log), "fastsam_lifecycle_node")
    client = NodeClient("/unused/camera", name="lifecycle_probe", outputs=())
    client.process = process
    try:
        if extra:
            request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
            assert not client.call(ChangeState, "/fastsam/change_state", request, timeout=120.0).success
            assert "configure failed: conf: must be in" in log.read_text()
        state = client.call(GetState, "/fastsam/get_state", GetState.Request(), timeout=120.0)
        assert state.current_state.id == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        client.close()
        code = stop_node(process, timeout=10.0)
    assert code == 0, log.read_text()


# Last in this module: the module's node, once started, is also named /fastsam and would answer
# the lifecycle services the tests above call.
def _set(node_graph, name: str, value: float) -> tuple[bool, str]:
    parameter = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    response = node_graph.call(SetParameters, "/fastsam/set_parameters", SetParameters.Request(parameters=[parameter]))
    return response.results[0].successful, response.results[0].reason


def test_node_from_params_file_applies_valid_run_time_changes_only(node_graph, bus):
    ok, reason = _set(node_graph, "conf", 5.0)
    assert not ok and "conf: must be in" in reason
    ok, _ = _set(node_graph, "conf", 0.8)
    assert ok
    result = node_graph.result_for(node_graph.send(bus))
    assert result.instances and all(instance.score >= 0.8 for instance in result.instances)
    assert len(result.instances) < 6, "the default conf 0.25 finds more on this photo"
