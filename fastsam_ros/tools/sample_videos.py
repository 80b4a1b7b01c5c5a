"""Real camera videos that a registry package ships: OpenCV's samples from Debian's opencv-doc.

Panned photos move rigidly; people walking in a real video occlude each other, turn and
change size, which is what tracking has to survive.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

SAMPLE_DIRS = (
    Path(os.environ.get("FASTSAM_ROS_SAMPLE_VIDEOS", "")),
    Path(__file__).resolve().parents[2] / ".venv" / "share" / "opencv-doc" / "data",
    Path("/usr/share/doc/opencv-doc/examples/data"),
)
"""Where the sample videos are looked for, first match wins: an explicit folder, the copy the
set-up script extracts next to the virtual environment, then an installed opencv-doc."""


def sample_video(name: str) -> Path:
    """Path of an OpenCV sample video such as 'vtest.avi' (pedestrians, 768x576, 795 frames)."""
    for folder in SAMPLE_DIRS:
        if str(folder) not in ("", ".") and (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(folder) for folder in SAMPLE_DIRS if str(folder) not in ("", "."))
    raise FileNotFoundError(
        f"sample video '{name}' not found (searched {searched}); `make setup` extracts Debian's opencv-doc, "
        "or set FASTSAM_ROS_SAMPLE_VIDEOS to a folder holding it"
    )


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
