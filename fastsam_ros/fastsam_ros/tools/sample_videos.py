"""Real videos for tests and tools: OpenCV's samples, fetched by `make setup`.

scripts/setup_env.sh extracts the .avi files of Debian's opencv-doc package into
<venv>/share/fastsam_ros/videos (vtest.avi: pedestrians, 768x576, 795 frames; Megamind.avi;
tree.avi). FASTSAM_ROS_VIDEOS points elsewhere when set. Panned photos move rigidly; people
walking in a real video occlude each other, turn and change size, which is what tracking
has to survive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np


def videos_dir() -> Path:
    """Where the sample videos live."""
    return Path(os.environ.get("FASTSAM_ROS_VIDEOS") or Path(sys.prefix) / "share" / "fastsam_ros" / "videos")


def sample_video(name: str) -> Path:
    """Path of a sample video by file name, e.g. sample_video("vtest.avi")."""
    path = videos_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"sample video '{name}' not found in {videos_dir()}: run `make setup` to fetch it")
    return path


def video_frames(path: Path, count: int, start: int = 0) -> list[np.ndarray]:
    """Up to ``count`` consecutive BGR frames from frame ``start`` on."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video '{path}'")
    frames = []
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames
