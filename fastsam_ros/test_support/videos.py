"""Small real video files for the players' tests, with frames made unreadable on purpose."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

MJPEG_FPS = 30
GREY_STEP = 6
"""Grey levels this far apart stay apart through JPEG: a frame is told by its grey level."""


def mjpeg_video(path: Path, frames: int, corrupt: Iterable[int] = (), fps: float = MJPEG_FPS) -> Path:
    """An MJPEG AVI of `frames` 32x24 frames at `fps`, frame i of grey level GREY_STEP * i (at
    most 42 frames); the frames numbered in `corrupt` keep their place but have no JPEG data left."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (32, 24))
    for index in range(frames):
        writer.write(np.full((24, 32, 3), index * GREY_STEP, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [index for index in range(len(data) - 1) if data[index : index + 3] == b"\xff\xd8\xff"]
    # Each frame's JPEG data ends 8 bytes before the next frame's (its AVI chunk header), the
    # last one 8 bytes before the file's index chunk.
    ends = [start - 8 for start in starts[1:]] + [data.rfind(b"idx1")]
    for index in corrupt:
        data[starts[index] : ends[index]] = bytes(ends[index] - starts[index])
    path.write_bytes(bytes(data))
    return path
