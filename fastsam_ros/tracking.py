"""Stable instance ids across frames, from ultralytics' own ByteTrack and BoT-SORT.

The trackers see only boxes, scores and classes, as in ``model.track``: the frame's
instances and, like ``track()``'s predictions at confidence 0.1, the low-score candidate
boxes the engine kept without masks, for the trackers' second association stage. Their
result rows name the detection they matched, so each instance of the frame gets the id
of its track. Detections a tracker has not confirmed yet keep track_id -1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros.mask_set import MaskSet

TRACKERS = ("none", "bytetrack", "botsort")


class TrackerConfigError(ValueError):
    """The tracker name or its settings file is invalid."""


def tracker_settings(kind: str, config_path: str = "") -> dict[str, Any]:
    """ultralytics' default settings for a tracker, updated from an optional YAML file."""
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    if kind not in TRACKERS[1:]:
        raise TrackerConfigError(f"unknown tracker '{kind}' (known: {', '.join(TRACKERS)})")
    settings = dict(YAML.load(check_yaml(f"{kind}.yaml")))
    if config_path:
        path = Path(config_path)
        if not path.is_file():
            raise TrackerConfigError(f"tracker settings file '{config_path}' not found")
        overrides = YAML.load(path) or {}
        unknown = set(overrides) - set(settings)
        if unknown:
            raise TrackerConfigError(f"unknown {kind} settings in {config_path}: {', '.join(sorted(unknown))}")
        if overrides.get("tracker_type", kind) != kind:
            raise TrackerConfigError(f"{config_path} is for '{overrides['tracker_type']}', not '{kind}'")
        settings.update(overrides)
    if settings.get("with_reid"):
        raise TrackerConfigError("BoT-SORT ReID needs a separate model and is not supported; set with_reid: False")
    return settings


class InstanceTracker:
    """Assigns track ids to the instances of consecutive frames of one camera."""

    def __init__(self, kind: str, config_path: str = "") -> None:
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import IterableSimpleNamespace

        self.kind = kind
        self.settings = tracker_settings(kind, config_path)
        self._tracker = TRACKER_MAP[kind](args=IterableSimpleNamespace(**self.settings))

    def update(self, masks: MaskSet, image: np.ndarray) -> MaskSet:
        """The same frame with track_id set on every instance a track matched."""
        from ultralytics.engine.results import Boxes

        published = np.array(
            [[*inst.box, inst.score, inst.class_id] for inst in masks.instances], dtype=np.float32
        ).reshape(-1, 6)
        detections = np.concatenate([published, masks.candidates.astype(np.float32)])
        tracks = self._tracker.update(Boxes(detections, (masks.height, masks.width)), image)
        track_of = {int(row[-1]): int(row[4]) for row in tracks}
        instances = tuple(
            dataclasses.replace(instance, track_id=track_of.get(index, -1))
            for index, instance in enumerate(masks.instances)
        )
        return dataclasses.replace(masks, instances=instances)

    def reset(self) -> None:
        self._tracker.reset()
