"""One frame through the whole pipeline: segment, track, find obstacles, follow them in 3D.

Settings can change between frames (ROS parameters at run time); each frame works
with one consistent snapshot of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.obstacle_tracking import ObstacleMotionTracker, ObstacleTrack
from fastsam_ros.core.obstacles import (
    Intrinsics,
    Obstacle,
    ObstacleSettings,
    centroid_of,
    find_obstacles,
    obstacle_cloud,
    roi_mask,
)
from fastsam_ros.core.tracking import InstanceTracker


@dataclass(frozen=True)
class PerceptionResult:
    masks: MaskSet
    obstacles: list[Obstacle]
    tracking_ms: float
    obstacles_ms: float
    """Obstacles, their 3D boxes and their motion filters."""
    tracks: dict[int, ObstacleTrack] = field(default_factory=dict)
    """3D motion of the obstacles with a track id and a centroid, and of the instances asked
    for by track id (``locate_tracks``) wherever they are, by track id."""
    cloud: np.ndarray | None = None
    """(N, 3) float32 optical-frame points under the obstacles' masks, when asked for and depth was there."""
    cloud_ms: float = 0.0


class Perception:
    """One camera's pipeline after segmentation (segmented alone or in a batch with other
    cameras' frames): tracking, obstacles, their motion and cloud. Its state is that camera's."""

    def __init__(
        self, tracker: str = "none", tracker_config: str = "", obstacles: ObstacleSettings | None = None
    ) -> None:
        self.obstacle_settings = obstacles or ObstacleSettings()
        self._lock = threading.Lock()
        self._tracker = self._make_tracker(tracker, tracker_config)
        self._tracker_spec = (tracker, tracker_config)
        self._motion = ObstacleMotionTracker()
        self._roi_cache: tuple[tuple, np.ndarray] | None = None

    @staticmethod
    def _make_tracker(kind: str, config_path: str) -> InstanceTracker | None:
        return None if kind == "none" else InstanceTracker(kind, config_path)

    def set_tracker(self, kind: str, config_path: str) -> None:
        """Switch trackers from the next frame on; raises TrackerConfigError, keeping the old one."""
        if (kind, config_path) == self._tracker_spec:
            return
        tracker = self._make_tracker(kind, config_path)
        with self._lock:
            self._tracker, self._tracker_spec = tracker, (kind, config_path)
            self._motion = ObstacleMotionTracker()

    def set_obstacle_settings(self, **changes: object) -> None:
        with self._lock:
            self.obstacle_settings = dataclasses.replace(self.obstacle_settings, **changes)

    def roi(self, width: int, height: int) -> np.ndarray:
        key = (self.obstacle_settings.roi, width, height)
        if self._roi_cache is None or self._roi_cache[0] != key:
            self._roi_cache = (key, roi_mask(self.obstacle_settings.roi, width, height))
        return self._roi_cache[1]

    def process_masks(
        self,
        masks: MaskSet,
        image: np.ndarray,
        depth: np.ndarray | None = None,
        intrinsics: Intrinsics | None = None,
        want_obstacles: bool = True,
        want_cloud: bool = False,
        locate_tracks: Collection[int] = (),
    ) -> PerceptionResult:
        """Everything after segmentation, for frames segmented in a batch with other cameras'.

        The cloud needs the obstacles, so asking for it computes them too. The instances whose
        track id is in ``locate_tracks`` (followed objects) get a 3D track even outside the
        obstacles' region of interest or range.
        """
        with self._lock:
            tracker, settings, motion = self._tracker, self.obstacle_settings, self._motion
            roi = self.roi(masks.width, masks.height)
        start = time.perf_counter()
        if tracker is not None:
            masks = tracker.update(masks, image)
        tracked = time.perf_counter()
        obstacles, tracks = [], {}
        if want_obstacles or want_cloud:
            obstacles = find_obstacles(masks, settings, roi, depth, intrinsics)
            centroids = {
                masks[o.index].track_id: o.centroid
                for o in obstacles
                if o.centroid is not None and masks[o.index].track_id >= 0
            }
            if depth is not None and intrinsics is not None:
                for instance in masks.instances:
                    if instance.track_id in locate_tracks and instance.track_id not in centroids:
                        centroid = centroid_of(instance, depth, intrinsics)
                        if centroid is not None:
                            centroids[instance.track_id] = centroid
            tracks = motion.update(masks.stamp_ns, centroids)
        located = time.perf_counter()
        cloud = None
        if want_cloud and depth is not None and intrinsics is not None:
            cloud = obstacle_cloud(
                masks, obstacles, depth, intrinsics, settings.cloud_decimation, settings.cloud_max_range
            )
        done = time.perf_counter()
        return PerceptionResult(
            masks,
            obstacles,
            (tracked - start) * 1e3,
            (located - tracked) * 1e3,
            tracks,
            cloud,
            (done - located) * 1e3,
        )
