"""A colcon workspace, as a ROS user builds one: the clone in src/, a `colcon build` that finds
both packages of the repository (fastsam_msgs, ament_cmake; fastsam_ros, ament_python), the
installed commands started from the install prefix, and `colcon test` running the package's unit tests.

The CMake build of the messages is most of this test's time (about 45 s of both cores). make setup
has just built them from the same CMake project into .venv, so make test builds fastsam_ros alone
over that underlay; make test-colcon (FASTSAM_COLCON_BOTH=1) builds both packages in the workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from test_support.checkout import REPOSITORY

BUILD_BOTH = os.environ.get("FASTSAM_COLCON_BOTH") == "1"
COMMANDS = (
    "fastsam_node",
    "fastsam_lifecycle_node",
    "fastsam_demo",
    "fastsam_play",
    "fastsam_record",
    "fastsam_web",
    "fastsam_export",
)


def checkout_files() -> list[str]:
    """The files a clone has: tracked and new ones, without what git ignores (.venv, build)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (REPOSITORY / name).is_file()]


def colcon(workspace: Path, *arguments: str) -> None:
    """Runs colcon in the workspace with the environment of .venv, as a sourced ROS install has."""
    venv = Path(sys.prefix)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env.update(CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "colcon"), *arguments],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def run_installed(workspace: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Runs a command in a shell that sourced the workspace's install/setup.sh."""
    return subprocess.run(
        ["bash", "-c", '. install/setup.sh && exec "$@"', "bash", *command],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_colcon_build_installs_the_packages_and_colcon_test_runs_the_unit_tests(tmp_path):
    source = tmp_path / "src" / "fastsam_ros"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPOSITORY / name, source / name)

    # The packages are side by side in the clone: colcon finds both without being told where.
    ignored = () if BUILD_BOTH else ("--packages-ignore", "fastsam_msgs")
    colcon(
        tmp_path,
        "build",
        *ignored,
        "--cmake-args",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
    )
    found = (tmp_path / "log" / "latest_build" / "logger_all.log").read_text()
    for kind, name in (("ros.ament_cmake", "fastsam_msgs"), ("ros.ament_python", "fastsam_ros")):
        assert f"with type '{kind}' and name '{name}'" in found, name
    install = tmp_path / "install"
    for command in COMMANDS:
        assert (install / "fastsam_ros" / "lib" / "fastsam_ros" / command).is_file(), command
    share = install / "fastsam_ros" / "share"
    for name in ("package.xml", "launch/fastsam.launch.py", "config/fastsam.yaml", "rviz/fastsam.rviz"):
        assert (share / "fastsam_ros" / name).is_file(), name
    assert (share / "ament_index" / "resource_index" / "packages" / "fastsam_ros").is_file()
    messages_prefix = install / "fastsam_msgs" if BUILD_BOTH else Path(sys.prefix)
    assert (messages_prefix / "share" / "fastsam_msgs" / "msg" / "InstanceArray.msg").is_file()

    probe = (
        "import fastsam_msgs.msg, fastsam_ros.ros.node; "
        "print(fastsam_msgs.msg.__file__); print(fastsam_ros.ros.node.__file__)"
    )
    imported = run_installed(tmp_path, sys.executable, "-c", probe)
    assert imported.returncode == 0, imported.stderr
    messages, node = imported.stdout.split()
    assert messages.startswith(str(messages_prefix)), f"the messages of {messages_prefix}"
    assert node.startswith(str(install / "fastsam_ros")), "the installed package, not the source tree"

    # What `ros2 run fastsam_ros <command>` executes.
    commands = install / "fastsam_ros" / "lib" / "fastsam_ros"
    started = run_installed(tmp_path, str(commands / "fastsam_node"), "--ros-args", "-p", "conf:=3.0")
    assert started.returncode == 2 and "fastsam_node: error: conf: must be in" in started.stderr, started.stderr
    export = run_installed(tmp_path, str(commands / "fastsam_export"), "--help")
    assert export.returncode == 0 and "usage: fastsam_export" in export.stdout, export.stderr

    colcon(tmp_path, "test", *ignored, "--packages-select", "fastsam_ros", "--return-code-on-test-failure")
    results = ElementTree.parse(tmp_path / "build" / "fastsam_ros" / "pytest.xml").getroot()
    suite = results if results.tag == "testsuite" else results.find("testsuite")
    assert int(suite.get("tests")) >= 200 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert any(case.get("classname").endswith("test_ros_convert") for case in suite.iter("testcase"))
