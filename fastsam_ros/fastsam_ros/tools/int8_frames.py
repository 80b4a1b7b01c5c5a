"""The real frames int8 is calibrated on, and the other real frames its quality guard checks.

Both sets mix kinds of scene (street and football photos at camera resolutions, pedestrians,
a studio interview, a tree in wind), because a network calibrated on one kind loses
instances on the others. The guard never sees a calibration frame: it takes other frames
of the same videos and the photos' windows mirrored, so its verdict says how int8 does
on frames it was not tuned to.
"""

from __future__ import annotations

import numpy as np

from fastsam_ros.tools.sample_frames import asset_image, camera_frames, mosaic
from fastsam_ros.tools.sample_videos import sample_video, video_frames

CAMERA_SIZES = ((1280, 720), (1920, 1080), (640, 480))

CALIBRATION_VIDEO = {"vtest.avi": range(300, 795, 10), "Megamind.avi": range(0, 270, 9), "tree.avi": range(0, 68, 4)}
"""Frame indices per sample video for calibration: vtest's second half (the bench guards on its first 200);
OpenCV decodes 68 frames of tree.avi."""

GUARD_VIDEO = {"vtest.avi": range(0, 200, 20), "Megamind.avi": range(4, 270, 27)}
"""Frame indices per sample video for the guard, none of them in CALIBRATION_VIDEO."""


def picked_frames(indices_by_video: dict[str, range]) -> dict[str, list[np.ndarray]]:
    """The frames at these indices of each sample video, by video name."""
    picked = {}
    for name, indices in indices_by_video.items():
        run = video_frames(sample_video(name), indices.stop - indices.start, indices.start)
        picked[name] = run[:: indices.step]
    return picked


def calibration_sources() -> dict[str, list[np.ndarray]]:
    """Calibration frames by source: the photos whole, a crowded mosaic and pans at three camera sizes; video."""
    photos = [asset_image("bus.jpg"), asset_image("zidane.jpg"), mosaic(4, 3, 1280, 720)]
    for width, height in CAMERA_SIZES:
        photos += camera_frames(width, height, 6)
    return {"photos": photos, **picked_frames(CALIBRATION_VIDEO)}


def guard_sources() -> dict[str, list[np.ndarray]]:
    """Guard frames by source: the photos and the calibration's camera windows mirrored; other video frames."""
    photos = [np.ascontiguousarray(asset_image(name)[:, ::-1]) for name in ("bus.jpg", "zidane.jpg")]
    for width, height in CAMERA_SIZES[:2]:
        photos += [np.ascontiguousarray(frame[:, ::-1]) for frame in camera_frames(width, height, 6)]
    return {"photos": photos, **picked_frames(GUARD_VIDEO)}


def calibration_frames() -> list[np.ndarray]:
    return [frame for frames in calibration_sources().values() for frame in frames]


def guard_frames() -> list[np.ndarray]:
    return [frame for frames in guard_sources().values() for frame in frames]
