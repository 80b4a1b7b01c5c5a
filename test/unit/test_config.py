"""Parameters: the YAML file, the specs and validation agree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from fastsam_ros import config

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_lists_every_parameter_with_its_default():
    values = yaml.safe_load((ROOT / "config" / "fastsam.yaml").read_text())["fastsam"]["ros__parameters"]
    assert set(values) == set(config.SPECS)
    for name, value in values.items():
        assert value == config.SPECS[name].default, name
    assert config.validate(values) == []


def test_yaml_comments_every_parameter():
    lines = (ROOT / "config" / "fastsam.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("    ") and not line.strip().startswith("#") and ":" in line:
            assert lines[index - 1].strip().startswith("#"), f"no comment above: {line.strip()}"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("conf", 1.5, "must be in"),
        ("iou", -0.1, "must be in"),
        ("imgsz", 100, "multiple of 32"),
        ("max_det", 0, "must be in"),
        ("device", "gpu", "auto, cpu"),
        ("image_qos", "fast", "one of"),
        ("model", " ", "not be empty"),
        ("conf", "high", "expected float"),
        ("cameras", ["front", "front"], "unique"),
        ("cameras", ["front", ""], "name tokens"),
        ("cameras", ["2nd"], "name tokens"),
        ("cameras", [], "needs 1 to"),
    ],
)
def test_invalid_values_are_rejected_with_the_parameter_name(name, value, reason):
    [message] = config.validate({name: value})
    assert message.startswith(f"{name}:") and reason in message


def test_camera_names_may_be_namespaces():
    assert config.validate({"cameras": ["front", "rear/left", "arm_1"]}) == []
    assert config.validate({"cameras": [""]}) == []


def test_launch_file_uses_the_installed_config():
    source = (ROOT / "launch" / "fastsam.launch.py").read_text()
    tree = ast.parse(source)
    names = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"DeclareLaunchArgument", "Node", "LaunchDescription"} <= names
    assert '"fastsam.yaml"' in source and 'executable="fastsam_node"' in source


def test_rviz_config_shows_the_node_outputs():
    rviz = yaml.safe_load((ROOT / "rviz" / "fastsam.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    topics = sorted(d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d)
    assert topics == ["/fastsam/debug_image", "/fastsam/label_image", "/fastsam/markers"]
    assert "rviz_default_plugins/MarkerArray" in displays
    launch = (ROOT / "launch" / "fastsam.launch.py").read_text()
    assert '"rviz"' in launch and '"fastsam.rviz"' in launch


@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), max_size=12))
def test_obstacle_roi_needs_an_even_count_of_at_least_six_fractions(values):
    reasons = config.validate({"obstacle_roi": values})
    if len(values) >= 6 and len(values) % 2 == 0:
        assert reasons == []
    else:
        [reason] = reasons
        assert reason == f"obstacle_roi: needs at least 3 x, y pairs, got {len(values)} numbers"


@pytest.mark.parametrize("bad", [-0.01, 1.01])
def test_obstacle_roi_values_are_fractions(bad):
    [reason] = config.validate({"obstacle_roi": [0.0, 0.0, 1.0, 0.0, 1.0, bad]})
    assert reason == "obstacle_roi: coordinates are fractions of the image size, in [0, 1]"


@given(st.integers(-100, 5000))
@example(0)
@example(32)
@example(4096)
@example(4128)
def test_imgsz_is_a_multiple_of_32_in_range(value):
    valid = 32 <= value <= 4096 and value % 32 == 0
    assert (config.validate({"imgsz": value}) == []) == valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("auto", True), ("cpu", True), ("cuda", True), ("cuda:0", True), ("cuda:12", True), ("cuda:", False),
     ("cuda:x", False), ("cuda0", False), ("gpu", False), ("", False)],
)  # fmt: skip
def test_device_names(value, valid):
    assert (config.validate({"device": value}) == []) == valid


@given(st.floats(-0.5, 1.5, allow_nan=False))
def test_ranges_include_both_ends(value):
    assert (config.validate({"conf": value}) == []) == (0.0 <= value <= 1.0)


def test_sixteen_cameras_at_most_and_unknown_names_are_ignored():
    names = [f"cam{i}" for i in range(17)]
    assert config.validate({"cameras": names[:16]}) == []
    [reason] = config.validate({"cameras": names})
    assert reason.startswith("cameras: needs 1 to 16 names") and reason.endswith("got 17")
    assert config.validate({"no_such_parameter": 1}) == []


def test_type_and_check_messages_name_the_parameter():
    assert config.validate({"max_det": 1.5}) == ["max_det: expected int, got float"]
    assert config.validate({"conf": 2.0}) == ["conf: must be in [0.0, 1.0], got 2.0"]
    assert config.validate({"runtime": "tensorrt"}) == [
        "runtime: must be one of auto, torch, onnxruntime; got 'tensorrt'"
    ]
    assert config.validate({"half": True, "tracker_config": "x.yaml"}) == [], "specs without a check take any value"
    assert config.validate({"conf": 2.0, "iou": 2.0}) == [
        "conf: must be in [0.0, 1.0], got 2.0",
        "iou: must be in [0.0, 1.0], got 2.0",
    ]


def test_camera_and_name_messages_say_exactly_what_is_wrong():
    assert config.validate({"cameras": ["front", "front"]}) == ["cameras: names must be unique"]
    assert config.validate({"cameras": ["front", "2nd", "a b"]}) == [
        "cameras: names must be ROS name tokens (letters, digits, '_', '/'); got '2nd', 'a b'"
    ]
    assert config.validate({"model": "  "}) == ["model: must not be empty"]
