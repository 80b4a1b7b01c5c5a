"""Where the tests find the package's files and the repository's (docs, requirements, fastsam_msgs).

The package folder is this file's parent's parent. The repository is the nearest folder above it
that holds fastsam_msgs/: found rather than assumed, because mutation testing runs the tests from
a copy of the package one folder deeper.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_FOLDER = Path(__file__).resolve().parents[1]
REPOSITORY = next(
    (folder for folder in PACKAGE_FOLDER.parents if (folder / "fastsam_msgs" / "package.xml").is_file()),
    PACKAGE_FOLDER.parent,
)
