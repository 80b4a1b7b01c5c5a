"""The packaging says one thing everywhere: the pins of requirements/*.txt, the lock file and
the ranges of pyproject.toml agree, and package.xml declares what the installed code imports
from ROS and from the system."""

from __future__ import annotations

import ast
import os
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from test_support.checkout import PACKAGE_FOLDER, REPOSITORY

# Imports rosdep knows by another name; a ROS package is declared under its own name.
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "PIL": "python3-pil", "yaml": "python3-yaml"}


def pins(path: Path) -> dict[str, str]:
    """Version by normalised name of every `name==version` line of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def imported_modules(folder: Path) -> set[str]:
    """Top-level names of the absolute imports of every Python file under a folder."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def ament_packages() -> set[str]:
    """ROS packages of the environment: those the ament index of .venv or AMENT_PREFIX_PATH lists."""
    prefixes = [sys.prefix, *filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep))]
    indices = [Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" for prefix in prefixes]
    return {marker.name for index in indices if index.is_dir() for marker in index.iterdir()}


def test_the_lock_pins_what_the_requirements_pin():
    lock = pins(REPOSITORY / "requirements" / "lock.txt")
    for source in ("ros-wheels.txt", "ml.txt", "dev.txt"):
        for name, version in pins(REPOSITORY / "requirements" / source).items():
            assert lock.get(name) == version, f"{source} pins {name}=={version}, lock.txt {lock.get(name)}"


def test_the_locked_versions_are_inside_the_ranges_of_pyproject():
    project = tomllib.loads((PACKAGE_FOLDER / "pyproject.toml").read_text())["project"]
    lock = pins(REPOSITORY / "requirements" / "lock.txt")
    extras = project["optional-dependencies"].values()
    declared = [*project["dependencies"], *(line for extra in extras for line in extra)]
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        if name == canonicalize_name(project["name"]):
            continue
        assert name in lock, f"pyproject.toml names {name}, which lock.txt does not pin"
        assert requirement.specifier.contains(lock[name], prereleases=True), f"{requirement} vs locked {lock[name]}"


def test_package_xml_declares_every_ros_package_and_system_library_imported():
    manifest = ElementTree.parse(PACKAGE_FOLDER / "package.xml").getroot()
    declared = {element.text for element in manifest if element.tag in ("depend", "exec_depend")}
    code = imported_modules(PACKAGE_FOLDER / "fastsam_ros")
    needed = {ROSDEP_KEYS[name] for name in code & ROSDEP_KEYS.keys()}
    needed |= code & (ament_packages() - {"fastsam_ros"})
    needed |= imported_modules(PACKAGE_FOLDER / "launch")
    assert {"rclpy", "fastsam_msgs", "python3-yaml", "launch_ros"} <= needed
    assert needed - declared == set(), f"package.xml lacks {sorted(needed - declared)}"
