"""Which instances are obstacles, and how far away they are.

An instance is an obstacle when enough of its mask lies inside a region of interest
(by default a corridor in front of the robot, at the bottom of the image) and it is
large enough. With an aligned depth image and the camera intrinsics, each obstacle
gets a robust distance (median of the valid depth under its mask), a 3D centroid and a
3D box; the depth points under the obstacles' masks form a point cloud for costmaps.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.parameters import default_of, roi_problem

MEDIAN_SAMPLES = 65536
"""Pixels the median of a large mask is taken over, on a regular grid."""

DEPTH_BAND = 0.1
"""Mask pixels farther than 10% from the median depth are background seen past the
object's outline (masks bleed a little); they are left out of the 3D centroid, box and cloud."""

EXTENT_PERCENTILES = (5.0, 95.0)
"""The 3D box spans these percentiles of the object's points per axis, so a few stray
depth readings do not stretch it."""


class DepthError(ValueError):
    """A depth image that cannot be used; the message says why."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera parameters in pixels (from sensor_msgs/CameraInfo K)."""

    fx: float
    fy: float
    cx: float
    cy: float


@dataclass(frozen=True)
class ObstacleSettings:
    roi: tuple[float, ...] = default_of("obstacle_roi")
    """x, y pairs as fractions of the image size (default: a trapezoid widening towards the robot)."""
    min_area: int = default_of("obstacle_min_area")
    min_overlap: float = default_of("obstacle_min_overlap")
    max_distance: float = default_of("max_distance")
    """Metres; 0 keeps obstacles at any distance."""
    cloud_decimation: int = default_of("obstacle_cloud_decimation")
    """The obstacle cloud takes every n-th pixel row and column."""
    cloud_max_range: float = default_of("obstacle_cloud_max_range")
    """Metres from the camera; farther cloud points are left out (0: no limit)."""


@dataclass(frozen=True)
class Obstacle:
    index: int
    overlap: float
    """Share of the mask inside the region of interest."""
    distance: float | None = None
    centroid: tuple[float, float, float] | None = None
    extent: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    """Corners (min x, y, z), (max x, y, z) of the object's points in the optical frame, metres."""


def roi_polygon(roi: tuple[float, ...], width: int, height: int) -> np.ndarray:
    """Pixel vertices of the region of interest given as fractions of the image size."""
    problem = roi_problem(roi)
    if problem:
        raise ValueError(f"region of interest: {problem}")
    points = np.asarray(roi, dtype=np.float64).reshape(-1, 2) * (width, height)
    return np.round(points).astype(np.int32)


def roi_mask(roi: tuple[float, ...], width: int, height: int) -> np.ndarray:
    plane = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(plane, [roi_polygon(roi, width, height)], 1)
    return plane.view(bool)


def depth_in_metres(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """float32 metres with NaN where there is no measurement."""
    if encoding == "16UC1":
        metres = pixels.astype(np.float32) / 1000.0
        metres[pixels == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = pixels.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
        return metres
    raise unsupported_depth_encoding(encoding)


def unsupported_depth_encoding(encoding: str) -> DepthError:
    return DepthError(f"unsupported depth encoding '{encoding}' (use 16UC1 millimetres or 32FC1 metres)")


def find_obstacles(
    masks: MaskSet,
    settings: ObstacleSettings,
    roi: np.ndarray,
    depth: np.ndarray | None = None,
    intrinsics: Intrinsics | None = None,
) -> list[Obstacle]:
    """Obstacles among the instances, nearest first when depth is known.

    ``roi`` is the boolean region mask at the frame's size; ``depth`` is float32
    metres aligned with the colour image (NaN = no measurement).
    """
    if depth is not None and depth.shape != (masks.height, masks.width):
        raise DepthError(
            f"depth image {depth.shape[1]}x{depth.shape[0]} is not aligned with the {masks.width}x{masks.height} frame"
        )
    found = []
    for index, instance in enumerate(masks.instances):
        area = instance.area
        if area < settings.min_area:
            continue
        ox, oy = instance.mask_offset
        rows, cols = instance.mask.shape
        inside = np.count_nonzero(roi[oy : oy + rows, ox : ox + cols] & instance.mask)
        overlap = inside / area
        if overlap < settings.min_overlap:
            continue
        obstacle = Obstacle(index, overlap)
        if depth is not None:
            obstacle = _locate(obstacle, instance.mask, depth[oy : oy + rows, ox : ox + cols], (ox, oy), intrinsics)
            if obstacle.distance is not None and 0 < settings.max_distance < obstacle.distance:
                continue
        found.append(obstacle)
    found.sort(key=lambda o: (o.distance is None, o.distance or 0.0, -masks[o.index].area))
    return found


def centroid_of(instance: Instance, depth: np.ndarray, intrinsics: Intrinsics) -> tuple[float, float, float] | None:
    """The 3D centroid of any instance, as an obstacle's would be, wherever it lies in the image:
    a followed object is located outside the obstacles' region of interest too."""
    ox, oy = instance.mask_offset
    rows, cols = instance.mask.shape
    return _locate(
        Obstacle(-1, 0.0), instance.mask, depth[oy : oy + rows, ox : ox + cols], (ox, oy), intrinsics
    ).centroid


def _locate(
    obstacle: Obstacle, mask: np.ndarray, depth: np.ndarray, offset: tuple[int, int], intrinsics: Intrinsics | None
) -> Obstacle:
    """The obstacle with its median depth under the mask, and the centroid and 3D box of
    the pixels near that depth.

    Large masks are sampled on a grid (at most ~65k pixels) for the median and the box;
    the centroid uses row and column sums instead of per-pixel coordinates.
    """
    stride = max(1, math.ceil(math.sqrt(mask.size / MEDIAN_SAMPLES)))
    sample = depth[::stride, ::stride][mask[::stride, ::stride]]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return obstacle
    distance = float(np.median(sample))
    if intrinsics is None:
        return dataclasses.replace(obstacle, distance=distance)
    near = _near(mask, depth, distance)
    weights = np.where(near, depth, 0.0).astype(np.float64)
    count = np.count_nonzero(near)
    total_z = weights.sum()
    cols = np.arange(mask.shape[1]) + offset[0]
    rows = np.arange(mask.shape[0]) + offset[1]
    mean_uz = cols @ weights.sum(axis=0) / count
    mean_vz = rows @ weights.sum(axis=1) / count
    mean_z = total_z / count
    x = (mean_uz - intrinsics.cx * mean_z) / intrinsics.fx
    y = (mean_vz - intrinsics.cy * mean_z) / intrinsics.fy
    located = dataclasses.replace(obstacle, distance=distance, centroid=(float(x), float(y), float(mean_z)))
    points = _deproject(mask, depth, offset, intrinsics, stride, distance)
    if len(points) == 0:
        return located
    low, high = np.percentile(points, EXTENT_PERCENTILES, axis=0)
    return dataclasses.replace(located, extent=(tuple(float(v) for v in low), tuple(float(v) for v in high)))


def _near(mask: np.ndarray, depth: np.ndarray, distance: float) -> np.ndarray:
    """Mask pixels whose depth lies within DEPTH_BAND of the object's distance."""
    with np.errstate(invalid="ignore"):
        return mask & (np.abs(depth - distance) <= DEPTH_BAND * distance)


def _deproject(
    mask: np.ndarray,
    depth: np.ndarray,
    offset: tuple[int, int],
    intrinsics: Intrinsics,
    stride: int,
    distance: float,
) -> np.ndarray:
    """(N, 3) float32 optical-frame points of the mask's pixels near ``distance``, on every
    stride-th row and column of the image (the grid is anchored at image pixel 0, so
    neighbouring crops sample alike; only grid pixels are looked at)."""
    ox, oy = offset
    first_row, first_col = -oy % stride, -ox % stride
    grid_depth = depth[first_row::stride, first_col::stride]
    rows, cols = np.nonzero(_near(mask[first_row::stride, first_col::stride], grid_depth, distance))
    z = grid_depth[rows, cols]
    u = (cols * stride + first_col + ox).astype(np.float32)
    v = (rows * stride + first_row + oy).astype(np.float32)
    points = np.empty((z.size, 3), dtype=np.float32)
    points[:, 0] = (u - intrinsics.cx) * z / intrinsics.fx
    points[:, 1] = (v - intrinsics.cy) * z / intrinsics.fy
    points[:, 2] = z
    return points


def obstacle_cloud(
    masks: MaskSet,
    obstacles: list[Obstacle],
    depth: np.ndarray,
    intrinsics: Intrinsics,
    decimation: int = 1,
    max_range: float = 0.0,
) -> np.ndarray:
    """(N, 3) float32 points in the optical frame under the masks of obstacles with a distance.

    Every ``decimation``-th pixel row and column is used; points farther than ``max_range``
    metres from the camera (0: no limit) and mask pixels off the object's depth are left out.
    """
    if decimation < 1:
        raise ValueError(f"decimation must be at least 1, got {decimation}")
    parts = [np.zeros((0, 3), dtype=np.float32)]
    for obstacle in obstacles:
        if obstacle.distance is None:
            continue
        instance = masks[obstacle.index]
        ox, oy = instance.mask_offset
        rows, cols = instance.mask.shape
        crop = depth[oy : oy + rows, ox : ox + cols]
        parts.append(_deproject(instance.mask, crop, (ox, oy), intrinsics, decimation, obstacle.distance))
    points = np.concatenate(parts)
    if max_range > 0:
        points = points[np.einsum("ij,ij->i", points, points) <= max_range * max_range]
    return points


class DepthPairer:
    """Pairs colour frames with depth frames by timestamp, within a slop.

    message_filters' ApproximateTime is not available everywhere this node runs, and one
    colour stream against one depth stream needs only this: keep the last few depth
    frames, take the one nearest in time.
    """

    def __init__(self, slop_ns: int, keep: int = 10) -> None:
        self.slop_ns = slop_ns
        self._frames: deque[tuple[int, object]] = deque(maxlen=keep)

    @property
    def has_frames(self) -> bool:
        return bool(self._frames)

    def add(self, stamp_ns: int, depth: object) -> None:
        self._frames.append((stamp_ns, depth))

    def match(self, stamp_ns: int) -> object | None:
        best = min(self._frames, key=lambda item: abs(item[0] - stamp_ns), default=None)
        if best is None or abs(best[0] - stamp_ns) > self.slop_ns:
            return None
        return best[1]
