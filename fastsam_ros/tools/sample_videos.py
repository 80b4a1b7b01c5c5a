"""Real videos for tests and tools: OpenCV's samples, fetched by `make setup`.

scripts/setup_env.sh extracts the .avi files of Debian's opencv-doc package into
<venv>/share/fastsam_ros/videos (vtest.avi: pedestrians, 768x576; Megamind.avi; tree.avi).
FASTSAM_ROS_VIDEOS points elsewhere when set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def videos_dir() -> Path:
    """Where the sample videos live."""
    return Path(os.environ.get("FASTSAM_ROS_VIDEOS") or Path(sys.prefix) / "share" / "fastsam_ros" / "videos")


def sample_video(name: str) -> Path:
    """Path of a sample video by file name, e.g. sample_video("vtest.avi")."""
    path = videos_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"sample video '{name}' not found in {videos_dir()}: run `make setup` to fetch it")
    return path
