"""A real photo seen by an RGB-D camera while one object in it moves with a known 3D velocity.

The colour frames are windows of a real photo; the window slides so that the object's
centroid lands where the pinhole model puts a point moving at constant velocity. The
synthetic depth image holds the object's pixels at its true range and everything else
at a far background, so the truth of every frame is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastsam_ros.core.obstacles import Intrinsics
from fastsam_ros.tools.sample_frames import asset_image

BACKGROUND_M = 25.0


@dataclass(frozen=True)
class MovingObjectScene:
    frames: list[np.ndarray]
    depths: list[np.ndarray]
    """float32 metres, aligned with the frames."""
    stamps_ns: list[int]
    positions: list[np.ndarray]
    """True 3D centroid of the object per frame, optical frame, metres."""
    velocity: np.ndarray
    intrinsics: Intrinsics
    object_masks: list[np.ndarray]
    """The object's pixels in each frame (where the depth holds its range)."""
    class_name: str


def moving_object_scene(
    engine,
    photo_name: str = "bus.jpg",
    size: tuple[int, int] = (480, 640),
    frames: int = 20,
    rate_hz: float = 10.0,
    start: tuple[float, float, float] = (-1.8, 0.2, 7.0),
    velocity: tuple[float, float, float] = (0.4, 0.0, -1.5),
    focal: float = 500.0,
    first_stamp_ns: int = 1_000_000_000_000,
) -> MovingObjectScene:
    """Windows of ``size`` (width, height) over the photo; the largest person walks as given."""
    photo = asset_image(photo_name)
    people = [i for i in engine.segment(photo).instances if i.class_name == "person"]
    if not people:
        raise ValueError(f"no person found in {photo_name}")
    person = max(people, key=lambda i: i.area)
    full = person.full_mask(photo.shape[0], photo.shape[1])
    rows, cols = np.nonzero(full)
    centre_u, centre_v = cols.mean(), rows.mean()
    width, height = size
    intrinsics = Intrinsics(focal, focal, width / 2, height / 2)
    speed = np.asarray(velocity, dtype=np.float64)
    scene = MovingObjectScene([], [], [], [], speed, intrinsics, [], person.class_name)
    for index in range(frames):
        t = index / rate_hz
        x, y, z = np.asarray(start) + speed * t
        left = round(centre_u - intrinsics.cx - focal * x / z)
        top = round(centre_v - intrinsics.cy - focal * y / z)
        if not (0 <= left <= photo.shape[1] - width and 0 <= top <= photo.shape[0] - height):
            raise ValueError(f"frame {index}: the window at ({left}, {top}) leaves the photo; choose another motion")
        window = (slice(top, top + height), slice(left, left + width))
        mask = full[window]
        depth = np.full((height, width), BACKGROUND_M, np.float32)
        depth[mask] = z
        # The truth is where the object's pixels actually are, after the window's rounding.
        position = np.array(
            [(centre_u - left - intrinsics.cx) * z / focal, (centre_v - top - intrinsics.cy) * z / focal, z]
        )
        scene.frames.append(np.ascontiguousarray(photo[window]))
        scene.depths.append(depth)
        scene.stamps_ns.append(first_stamp_ns + round(t * 1e9))
        scene.positions.append(position)
        scene.object_masks.append(mask)
    return scene
