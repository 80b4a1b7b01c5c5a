"""What pyproject.toml cannot say; the metadata, dependencies and commands live there.

colcon (ament_python) and pip both run this. ROS finds the package through the ament
resource index marker, and its launch files, parameter files, rviz view and package.xml
under share/fastsam_ros.
"""

from pathlib import Path

from setuptools import setup

PACKAGE = "fastsam_ros"


def share_folder(folder: str) -> list[tuple[str, list[str]]]:
    """(destination, files) pairs that install a folder, sub-folders kept, under share/fastsam_ros."""
    directories = sorted({path.parent for path in Path(folder).rglob("*") if path.is_file()})
    return [
        (f"share/{PACKAGE}/{directory}", sorted(str(path) for path in directory.iterdir() if path.is_file()))
        for directory in directories
        if "__pycache__" not in directory.parts
    ]


setup(
    # Here, not in pyproject.toml: colcon cannot read the object setuptools makes of
    # requires-python (colcon-python-setup-py#56); a string given here stays a string.
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_folder("launch"),
        *share_folder("config"),
        *share_folder("rviz"),
    ],
)
