"""Parameters: the YAML file, the specs and validation agree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

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
