"""The node process itself: signals at any moment, a missing HOME, parameters typed the way
people type them, a second node of the same name, and a lifecycle node that is repaired
after a failed configure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter

from fastsam_ros.core.backends import work_folder
from fastsam_ros.tools.node_client import NodeClient, start_node, stop_node, wait_until
from test_support.ended_process import ended_pid


def _start(tmp_path: Path, args: list[str], env: dict[str, str] | None = None, executable: str = "fastsam_node"):
    log = tmp_path / f"{executable}-{time.monotonic_ns()}.log"
    return start_node(["-p", "device:=cpu", *args], env or dict(os.environ), str(log), executable), log


def _wait_exit(process: subprocess.Popen, timeout: float = 60.0) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the node did not exit")


def _wait_for_log(log: Path, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"'{text}' never logged:\n{log.read_text()}"
        time.sleep(0.05)


def _set(client: NodeClient, name: str, value) -> tuple[bool, str]:
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    result = client.call(SetParameters, "/fastsam/set_parameters", request, timeout=60.0).results[0]
    return result.successful, result.reason


def _wait_for_signal_handlers(pid: int, timeout: float = 60.0) -> None:
    """Until the process catches SIGTERM, i.e. the node's own handlers are installed (the
    interpreter catches only SIGINT by itself); a fresh install compiles for seconds first."""
    deadline = time.monotonic() + timeout
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        assert time.monotonic() < deadline, "the node never installed its signal handlers"
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("when", "signals"),
    [
        ("early", [(0.05, signal.SIGTERM)]),
        ("starting", [(0.2, signal.SIGINT)]),
        ("starting", [(0.1, signal.SIGTERM), (0.05, signal.SIGINT)]),
        ("running", [(0.0, signal.SIGINT), (0.05, signal.SIGINT)]),
        ("running", [(0.0, signal.SIGTERM), (0.05, signal.SIGINT)]),
    ],
)
def test_any_signal_sequence_exits_cleanly(tmp_path, when, signals):
    process, log = _start(tmp_path, [])
    if when == "starting":
        _wait_for_signal_handlers(process.pid)
    if when == "running":
        _wait_for_log(log, "model ready")
    for delay, signum in signals:
        time.sleep(delay)
        process.send_signal(signum)
    code = _wait_exit(process)
    output = log.read_text()
    # A SIGTERM before the interpreter has reached the node's first line gets the default
    # action: the conventional "terminated by SIGTERM" status, and nothing printed.
    conventional = {0, -signal.SIGTERM} if when == "early" else {0}
    assert code in conventional, output
    assert "Traceback" not in output, output


def test_ctrl_c_does_not_wait_for_a_first_text_model_export(tmp_path):
    """Right after start-up the default text backend exports its encoder into a fresh cache
    (seconds). Ctrl-C in the middle ends the node cleanly without waiting for it (the interpreter
    would abort if finalized under it); its work folder is left for the next export to remove, as
    the model's export at this start removed the one a killed process had left."""
    cache = tmp_path / "cache"
    abandoned = cache / f"{work_folder.PREFIX}{ended_pid()}-abc"
    abandoned.mkdir(parents=True)
    (abandoned / "half.onnx").write_bytes(b"\0" * 1000)
    process, log = _start(tmp_path, [], {**os.environ, "FASTSAM_ROS_CACHE": str(cache)})
    _wait_for_log(log, "active: segmenting frames")
    exporting = f"{work_folder.PREFIX}{process.pid}-*"
    wait_until(lambda: any(cache.glob(exporting)), 60.0, lambda: time.sleep(0.01), "the encoder's export")
    process.send_signal(signal.SIGINT)
    assert _wait_exit(process) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output and "text prompts ready" not in output, output
    assert not list(cache.glob("all-minilm-*.onnx")), "the node waited for the text encoder's export"
    assert list(cache.glob("yolo11n-seg-*.onnx")) and not abandoned.exists()


def test_without_home_the_node_logs_elsewhere_and_runs(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("HOME", "ROS_HOME", "ROS_LOG_DIR")}
    process, log = _start(tmp_path, [], env)
    try:
        _wait_for_log(log, "HOME is not set: ROS logs go to")
        _wait_for_log(log, "model ready")
    finally:
        assert stop_node(process) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_values_typed_as_people_type_them_start_the_node(tmp_path, bus):
    args = [
        "-r",
        "image:=/typed/image",
        "-p",
        "max_distance:=5",
        "-p",
        "conf:=1",
        "-p",
        "obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]",
    ]
    process, log = _start(tmp_path, args)
    client = NodeClient("/typed/image", name="typed_probe", outputs=("instances",))
    client.process = process
    try:
        client.wait(lambda: client.camera.get_subscription_count() > 0, 180.0, "the node to subscribe")
        _, result = client.first_result(bus)
        assert result.instances == [], "conf 1 (read as 1.0) keeps no detection"
        assert _set(client, "conf", 0)[0], "an integer for a double at run time too"
    finally:
        client.close()
        assert stop_node(process) == 0, log.read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "max_det:=10.0"], "max_det: expected int, got float 10.0"),
        (["-p", "retina_masks:=1"], "retina_masks: expected bool, got int 1"),
        (["-p", "tracker_config:=/etc/passwd"], "tracker_config: '/etc/passwd'"),
    ],
)
def test_unusable_start_up_values_exit_2_with_one_line(tmp_path, args, expected):
    process, log = _start(tmp_path, args)
    code = _wait_exit(process, 120.0)
    output = log.read_text()
    errors = [line for line in output.splitlines() if line.startswith("fastsam_node: error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output and "root:x" not in output


def test_a_second_node_of_the_same_name_is_warned_about(tmp_path):
    first, _ = _start(tmp_path, [], executable="fastsam_lifecycle_node")
    second, second_log = _start(tmp_path, [], executable="fastsam_lifecycle_node")
    try:
        _wait_for_log(second_log, "another node named '/fastsam' is on this ROS domain", 60.0)
    finally:
        assert stop_node(first) == 0 and stop_node(second) == 0


def test_unconfigured_lifecycle_node_validates_and_is_repaired_after_a_failed_configure(tmp_path, bus):
    process, log = _start(
        tmp_path, ["-p", "conf:=2.0", "-r", "image:=/managed/image"], executable="fastsam_lifecycle_node"
    )
    client = NodeClient("/managed/image", name="lifecycle_repair", outputs=("instances",))
    client.process = process
    configure = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
    try:
        assert _set(client, "conf", 5.0) == (False, "conf: must be in [0.0, 1.0], got 5.0")
        ok, reason = _set(client, "tracker_config", "/etc/passwd")
        assert not ok and reason.startswith("tracker_config:") and "root:x" not in reason
        assert not client.call(ChangeState, "/fastsam/change_state", configure, timeout=120.0).success
        assert "configure failed: conf: must be in [0.0, 1.0], got 2.0" in log.read_text()
        assert _set(client, "conf", 0.5)[0]
        assert client.call(ChangeState, "/fastsam/change_state", configure, timeout=180.0).success
        activate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
        assert client.call(ChangeState, "/fastsam/change_state", activate, timeout=60.0).success
        state = client.call(GetState, "/fastsam/get_state", GetState.Request()).current_state.id
        assert state == State.PRIMARY_STATE_ACTIVE
        client.wait(lambda: client.camera.get_subscription_count() > 0, 60.0, "camera subscription")
        _, result = client.first_result(bus)
        assert result.instances and all(i.score >= 0.5 for i in result.instances)
    finally:
        client.close()
        assert stop_node(process) == 0, log.read_text()


def test_depth_frames_are_not_kept_while_nobody_wants_obstacles(tmp_path, bus):
    """Only ~/instances is read here, so depth (30 MB frames) is dropped on arrival and memory stays."""
    import psutil
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    process, log = _start(tmp_path, ["-r", "image:=/depthless/image", "-r", "depth:=/depthless/depth"])
    client = NodeClient("/depthless/image", name="depth_probe", outputs=("instances",))
    client.process = process
    depth = client.node.create_publisher(Image, "/depthless/depth", qos_profile_sensor_data)
    try:
        client.wait(lambda: client.camera.get_subscription_count() > 0, 180.0, "the node to subscribe")
        client.wait(lambda: depth.get_subscription_count() > 0, 30.0, "the depth subscription")
        client.first_result(bus)
        client.result_for(client.send(bus))
        before = psutil.Process(process.pid).memory_info().rss
        height, width = 2500, 3000
        for index in range(10):
            msg = Image(height=height, width=width, encoding="32FC1", step=width * 4)
            msg.data = bytes(height * width * 4)
            msg.header.stamp.nanosec = index
            depth.publish(msg)
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                client.spin()
        result = client.result_for(client.send(bus))
        assert "bus" in [i.class_name for i in result.instances]
        assert psutil.Process(process.pid).memory_info().rss - before < 100 * 2**20
    finally:
        client.close()
        assert stop_node(process) == 0, log.read_text()
