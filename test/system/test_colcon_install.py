"""The CMake build a colcon user runs: generated interfaces, the Python package and the
executables land in one install prefix and work from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


PACKAGE_FILES = ("CMakeLists.txt", "package.xml", "msg", "srv", "fastsam_ros", "scripts", "launch", "config", "rviz")


def test_cmake_install_gives_a_working_package(tmp_path):
    venv = Path(sys.prefix)
    source = tmp_path / "src" / "fastsam_ros"
    source.mkdir(parents=True)
    for name in PACKAGE_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    build, install = tmp_path / "build", tmp_path / "install"
    build.mkdir()
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(venv), AMENT_PREFIX_PATH=str(venv))
    configure = [
        "cmake",
        str(source),
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DCMAKE_INSTALL_PREFIX={install}",
        "-DBUILD_TESTING=OFF",
    ]
    for command in (configure, ["make", f"-j{os.cpu_count()}"], ["make", "install"]):
        done = subprocess.run(command, cwd=build, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    site = next(install.glob("lib/python3*/site-packages"))
    assert (site / "fastsam_ros" / "node.py").is_file() and (site / "fastsam_ros" / "msg").is_dir()
    for share in ("launch/fastsam.launch.py", "config/fastsam.yaml", "rviz/fastsam.rviz"):
        assert (install / "share" / "fastsam_ros" / share).is_file(), share

    run_env = dict(
        os.environ,
        PYTHONPATH=str(site),
        LD_LIBRARY_PATH=f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        AMENT_PREFIX_PATH=f"{install}:{venv}",
    )
    probe = (
        "import fastsam_ros.ros.node; from fastsam_ros.msg import InstanceArray; print(fastsam_ros.ros.node.__file__)"
    )
    imported = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=run_env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(site)), "the installed package, not the source tree"

    executable = install / "lib" / "fastsam_ros" / "fastsam_node"
    started = subprocess.run(
        [sys.executable, str(executable), "--ros-args", "-p", "conf:=3.0"],
        cwd=tmp_path,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2 and "fastsam_node: error: conf: must be in" in started.stderr
