"""Parameters: the YAML file, the specs and validation agree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from fastsam_ros.core import parameters, settings
from test_support.checkout import PACKAGE_FOLDER, REPOSITORY


def test_yaml_lists_every_parameter_with_its_default():
    values = yaml.safe_load((PACKAGE_FOLDER / "config" / "fastsam.yaml").read_text())["fastsam"]["ros__parameters"]
    assert set(values) == set(parameters.SPECS)
    for name, value in values.items():
        assert value == parameters.SPECS[name].default, name
    assert parameters.validate(values) == []


def test_yaml_and_parameters_page_table_are_rendered_from_the_specs():
    from test_support import parameter_docs

    assert (PACKAGE_FOLDER / "config" / "fastsam.yaml").read_text() == parameter_docs.render_yaml()
    page = (REPOSITORY / "docs" / "PARAMETERS.md").read_text()
    assert parameter_docs.render_table() in page
    for spec in parameters.PARAMETERS:
        assert f"| `{spec.name}` |" in page


def test_settings_defaults_follow_the_specs():
    from fastsam_ros.core.engine import EngineSettings
    from fastsam_ros.core.obstacles import ObstacleSettings

    engine, obstacles = EngineSettings(), ObstacleSettings()
    for name in ("imgsz", "conf", "iou", "max_det", "retina_masks"):
        assert getattr(engine, name) == parameters.default_of(name), name
    assert obstacles.roi == parameters.default_of("obstacle_roi")
    assert obstacles.min_area == parameters.default_of("obstacle_min_area")
    assert obstacles.min_overlap == parameters.default_of("obstacle_min_overlap")
    assert obstacles.max_distance == parameters.default_of("max_distance")


@pytest.mark.parametrize(
    ("name", "typed", "value"),
    [
        ("max_distance", 5, 5.0),
        ("conf", 1, 1.0),
        ("obstacle_roi", [0, 0.5, 1, 0.5, 1, 1], [0.0, 0.5, 1.0, 0.5, 1.0, 1.0]),
        ("obstacle_roi", (0.1, 0.1, 0.9, 0.1, 0.5, 0.9), [0.1, 0.1, 0.9, 0.1, 0.5, 0.9]),
    ],
)
def test_values_typed_as_people_type_them_are_accepted(name, typed, value):
    import array

    coerced, reasons = parameters.coerce({name: typed})
    assert reasons == [] and coerced[name] == value and type(coerced[name]) is type(value)
    if isinstance(value, list):
        from_rclpy = array.array("d", value)  # how rclpy hands over a double array at run time
        assert parameters.coerce({name: from_rclpy})[0][name] == value
    assert parameters.validate({name: typed}) == []


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("max_det", 10.0, "max_det: expected int, got float"),
        ("retina_masks", 1, "retina_masks: expected bool, got int"),
        ("conf", True, "conf: expected float, got bool"),
        ("obstacle_roi", "0, 0, 1", "obstacle_roi: expected a float list"),
        ("obstacle_roi", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], "an even count"),
        ("conf", float("nan"), "finite"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(name, value, reason):
    [message] = parameters.validate({name: value})
    assert reason in message


def test_tracker_settings_files_are_checked_without_quoting_them(tmp_path):
    secret = tmp_path / "secrets.yaml"
    secret.write_text("aws_secret_access_key: hunter2\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("track_buffer: [unclosed\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    good = tmp_path / "good.yaml"
    good.write_text("track_buffer: 60\n")
    for path, reason in (
        (secret, "1 key(s) that are not bytetrack settings"),
        (broken, "is not valid YAML"),
        (listing, "is not a YAML mapping"),
        (Path("/etc/passwd"), "not"),
        (tmp_path / "missing.yaml", "not found"),
    ):
        [message] = settings.problems({"tracker": "bytetrack", "tracker_config": str(path)})
        assert message.startswith("tracker_config:") and reason in message, message
        assert "aws_secret" not in message and "hunter2" not in message and "root:x" not in message
    assert settings.problems({"tracker": "bytetrack", "tracker_config": str(good)}) == []
    assert settings.problems({"tracker_config": str(secret)}, {**parameters.DEFAULTS, "tracker": "none"}) == []


def test_a_tracker_file_is_read_when_the_tracker_or_its_file_changes_and_only_then():
    """A settings file that went missing after start-up does not block unrelated changes."""
    missing = "/nonexistent/tracker.yaml"
    refused = [f"tracker_config: tracker settings file '{missing}' not found"]
    tracking = {**parameters.DEFAULTS, "tracker": "bytetrack"}
    assert settings.problems({"tracker_config": missing}, tracking) == refused
    assert (
        settings.problems(
            {"tracker": "bytetrack"}, {**parameters.DEFAULTS, "tracker": "none", "tracker_config": missing}
        )
        == refused
    )
    assert settings.problems({"conf": 0.3}, {**tracking, "tracker_config": missing}) == []


def test_list_parameters_name_what_they_got():
    assert parameters.validate({"obstacle_roi": "0, 0, 1"}) == ["obstacle_roi: expected a float list, got str"]
    assert parameters.validate({"obstacle_roi": 5}) == ["obstacle_roi: expected a float list, got int"]
    for odd in ("1", True):
        values = [0.0, odd, 0.5, 0.5, 1.0, 1.0]
        assert parameters.validate({"obstacle_roi": values}) == [f"obstacle_roi: expected a float list, got {values!r}"]
    assert parameters.validate({"cameras": [1, 2]}) == ["cameras: expected a str list, got [1, 2]"]


def test_yaml_comments_every_parameter():
    lines = (PACKAGE_FOLDER / "config" / "fastsam.yaml").read_text().splitlines()
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
    [message] = parameters.validate({name: value})
    assert message.startswith(f"{name}:") and reason in message


def test_camera_names_may_be_namespaces():
    assert parameters.validate({"cameras": ["front", "rear/left", "arm_1"]}) == []
    assert parameters.validate({"cameras": [""]}) == []


def test_launch_file_uses_the_installed_config():
    source = (PACKAGE_FOLDER / "launch" / "fastsam.launch.py").read_text()
    tree = ast.parse(source)
    names = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"DeclareLaunchArgument", "Node", "LaunchDescription"} <= names
    assert '"fastsam.yaml"' in source and 'executable="fastsam_node"' in source


def test_rviz_config_shows_the_node_outputs():
    rviz = yaml.safe_load((PACKAGE_FOLDER / "rviz" / "fastsam.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    topics = sorted(d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d)
    assert topics == ["/fastsam/debug_image", "/fastsam/label_image", "/fastsam/markers"]
    assert "rviz_default_plugins/MarkerArray" in displays
    launch = (PACKAGE_FOLDER / "launch" / "fastsam.launch.py").read_text()
    assert '"rviz"' in launch and '"fastsam.rviz"' in launch


@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), max_size=12))
def test_obstacle_roi_needs_an_even_count_of_at_least_six_fractions(values):
    reasons = parameters.validate({"obstacle_roi": values})
    if len(values) >= 6 and len(values) % 2 == 0:
        assert reasons == []
    else:
        [reason] = reasons
        pairs = "needs at least 3 x, y pairs (an even count of at least 6 numbers)"
        assert reason == f"obstacle_roi: {pairs}, got {len(values)} numbers"


@pytest.mark.parametrize("bad", [-0.01, 1.01])
def test_obstacle_roi_values_are_fractions(bad):
    [reason] = parameters.validate({"obstacle_roi": [0.0, 0.0, 1.0, 0.0, 1.0, bad]})
    assert reason == "obstacle_roi: coordinates are fractions of the image size, in [0, 1]"


@given(st.integers(-100, 5000))
@example(0)
@example(32)
@example(4096)
@example(4128)
def test_imgsz_is_a_multiple_of_32_in_range(value):
    valid = 32 <= value <= 4096 and value % 32 == 0
    assert (parameters.validate({"imgsz": value}) == []) == valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("auto", True), ("cpu", True), ("cuda", True), ("cuda:0", True), ("cuda:12", True), ("cuda:", False),
     ("cuda:x", False), ("cuda0", False), ("gpu", False), ("", False)],
)  # fmt: skip
def test_device_names(value, valid):
    assert (parameters.validate({"device": value}) == []) == valid


@given(st.floats(-0.5, 1.5, allow_nan=False))
def test_ranges_include_both_ends(value):
    assert (parameters.validate({"conf": value}) == []) == (0.0 <= value <= 1.0)


def test_sixteen_cameras_at_most_and_unknown_names_are_ignored():
    names = [f"cam{i}" for i in range(17)]
    assert parameters.validate({"cameras": names[:16]}) == []
    [reason] = parameters.validate({"cameras": names})
    assert reason.startswith("cameras: needs 1 to 16 names") and reason.endswith("got 17")
    assert parameters.validate({"no_such_parameter": 1}) == []
    assert parameters.validate({"no_such_parameter": 1, "conf": 2.0}) == ["conf: must be in [0.0, 1.0], got 2.0"]


def test_type_and_check_messages_name_the_parameter():
    assert parameters.validate({"max_det": 1.5}) == ["max_det: expected int, got float 1.5"]
    assert parameters.validate({"conf": 2.0}) == ["conf: must be in [0.0, 1.0], got 2.0"]
    assert parameters.validate({"runtime": "tensorrt"}) == [
        "runtime: must be one of auto, torch, onnxruntime, openvino; got 'tensorrt'"
    ]
    assert parameters.validate({"half": True, "clip_pretrained": "x.pt"}) == [], "specs without a check take any value"
    assert parameters.validate({"conf": 2.0, "iou": 2.0}) == [
        "conf: must be in [0.0, 1.0], got 2.0",
        "iou: must be in [0.0, 1.0], got 2.0",
    ]


def test_camera_and_name_messages_say_exactly_what_is_wrong():
    assert parameters.validate({"cameras": ["front", "front"]}) == ["cameras: names must be unique"]
    assert parameters.validate({"cameras": ["front", "2nd", "a b"]}) == [
        "cameras: names must be ROS name tokens (letters, digits, '_', '/'); got '2nd', 'a b'"
    ]
    assert parameters.validate({"model": "  "}) == ["model: must not be empty"]


@pytest.mark.parametrize(("cores", "counts"), [(8, (7, 8)), (2, (1, 2)), (1, (1, 1)), (None, (1, 1))])
def test_openvino_threads_default_to_following_the_load(monkeypatch, cores, counts):
    """Every core, and every core but one; a machine whose core count is unknown counts as one core."""
    monkeypatch.setattr(parameters.os, "cpu_count", lambda: cores)
    assert parameters.inference_thread_counts(0) == counts
    assert parameters.inference_thread_counts(3) == (3,)


def test_the_docs_quote_an_empty_choice_and_show_a_range_only_with_both_ends():
    """problem() enforces a range only when both ends are set, so the docs show none for one end alone."""
    assert parameters.ParameterSpec("encoding", "", "Encoding.", choices=("", "raw")).allowed() == '`""`, `raw`'
    assert parameters.ParameterSpec("rate", 1.5, "Hz.", low=0.5, high=30.0).allowed() == "0.5 to 30"
    assert parameters.ParameterSpec("floor", 1, "At least one.", low=1).allowed() == ""
    assert parameters.ParameterSpec("ceiling", 1, "At most ten.", high=10).allowed() == ""
    assert parameters.ParameterSpec("free", "x", "Anything.").allowed() == ""


def test_choice_lists_are_those_the_implementing_modules_accept():
    """The table writes its choice lists itself (it imports nothing); they must match the code that runs them."""
    from fastsam_ros.core.backends.model_loading import RUNTIMES
    from fastsam_ros.core.backends.precision import PRECISIONS
    from fastsam_ros.core.text_prompts import TEXT_BACKENDS
    from fastsam_ros.core.tracking import TRACKERS

    assert parameters.SPECS["runtime"].choices == RUNTIMES
    assert parameters.SPECS["precision"].choices == PRECISIONS
    assert parameters.SPECS["text_backend"].choices == ("auto", *TEXT_BACKENDS)
    assert parameters.SPECS["tracker"].choices == TRACKERS


def _modules_imported_by(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after running statement."""
    probe = f"import sys; {statement}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(done.stdout.split())


def test_the_parameter_table_is_a_standard_library_leaf():
    imported = _modules_imported_by("import fastsam_ros.core.parameters") - _modules_imported_by("pass")
    assert not imported & {"torch", "numpy", "ultralytics", "yaml", "rclpy", "cv2"}, imported
    assert imported - set(sys.stdlib_module_names) == {"fastsam_ros"}, imported


def test_the_core_imports_no_ros():
    modules = sorted(
        "fastsam_ros." + ".".join(path.relative_to(PACKAGE_FOLDER / "fastsam_ros").with_suffix("").parts)
        for path in (PACKAGE_FOLDER / "fastsam_ros" / "core").rglob("*.py")
        if path.name != "__init__.py"
    )
    imported = _modules_imported_by("; ".join(f"import {module}" for module in modules))
    assert "fastsam_ros" in imported
    assert not {name for name in imported if name == "rclpy" or name.endswith("_msgs")}, imported
