"""Stable instance ids across frames, from ultralytics' own ByteTrack and BoT-SORT.

The trackers see only boxes, scores and classes, as in ``model.track``: the frame's
instances and, like ``track()``'s predictions at confidence 0.1, the low-score candidates
the engine kept aside, for the trackers' second association stage. Their result rows name
the detection they matched, so each instance of the frame gets the id of its track.
Detections a tracker has not confirmed yet keep track_id -1. A candidate a track matched
is published too, with its mask and ``tracked_low_score`` set, as ``track()`` returns it:
a tracked person whose score dips for a frame stays in the instances, the obstacles and
their 3D tracks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros.core.mask_set import MaskSet

TRACKERS = ("none", "bytetrack", "botsort")


class TrackerConfigError(ValueError):
    """The tracker name or its settings file is invalid."""


MAX_SETTINGS_BYTES = 64 * 1024
"""A tracker settings file is a few lines; anything larger is not one (and is not read)."""


def tracker_settings(kind: str, config_path: str = "") -> dict[str, Any]:
    """ultralytics' default settings for a tracker, updated from an optional YAML file.

    The file may be named by a remote parameter call, so errors say what is wrong with it
    without ever quoting its content or its key names.
    """
    from ultralytics.utils import YAML
    from ultralytics.utils.checks import check_yaml

    if kind not in TRACKERS[1:]:
        raise TrackerConfigError(f"unknown tracker '{kind}' (known: {', '.join(TRACKERS)})")
    settings = dict(YAML.load(check_yaml(f"{kind}.yaml")))
    if config_path:
        overrides = _read_overrides(Path(config_path), kind)
        unknown = set(overrides) - set(settings)
        if unknown:
            raise TrackerConfigError(
                f"'{config_path}' has {len(unknown)} key(s) that are not {kind} settings "
                f"(known: {', '.join(sorted(settings))})"
            )
        if overrides.get("tracker_type", kind) != kind:
            raise TrackerConfigError(f"'{config_path}' is for another tracker type, not '{kind}'")
        settings.update(overrides)
    if settings.get("with_reid"):
        raise TrackerConfigError("BoT-SORT ReID needs a separate model and is not supported; set with_reid: False")
    return settings


def _read_overrides(path: Path, kind: str) -> dict[str, Any]:
    import yaml

    try:
        if not path.is_file():
            raise TrackerConfigError(f"tracker settings file '{path}' not found")
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            raise TrackerConfigError(f"'{path}' is larger than {MAX_SETTINGS_BYTES} bytes: not a tracker settings file")
        overrides = yaml.safe_load(path.read_bytes())
    except OSError as error:
        raise TrackerConfigError(f"'{path}' cannot be read ({error.strerror})") from None
    except yaml.YAMLError:
        raise TrackerConfigError(f"'{path}' is not valid YAML") from None
    if overrides is None:
        return {}
    if not isinstance(overrides, dict) or not all(isinstance(key, str) for key in overrides):
        raise TrackerConfigError(f"'{path}' is not a YAML mapping of {kind} settings")
    return overrides


class InstanceTracker:
    """Assigns track ids to the instances of consecutive frames of one camera."""

    def __init__(self, kind: str, config_path: str = "") -> None:
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import IterableSimpleNamespace

        self.settings = tracker_settings(kind, config_path)
        self._tracker = TRACKER_MAP[kind](args=IterableSimpleNamespace(**self.settings))

    def update(self, masks: MaskSet, image: np.ndarray) -> MaskSet:
        """The same frame with track_id set on every instance a track matched, and the
        candidates a track matched added after them, marked ``tracked_low_score``."""
        from ultralytics.engine.results import Boxes

        detections = (*masks.instances, *masks.candidates)
        rows = np.array([[*d.box, d.score, d.class_id] for d in detections], dtype=np.float32).reshape(-1, 6)
        self._start_tracks_at(masks.conf)
        tracks = self._tracker.update(Boxes(rows, (masks.height, masks.width)), image)
        track_of = {int(row[-1]): int(row[4]) for row in tracks}
        first_candidate = len(masks.instances)
        instances = [
            dataclasses.replace(instance, track_id=track_of.get(index, -1))
            for index, instance in enumerate(masks.instances)
        ]
        kept = [
            dataclasses.replace(candidate, track_id=track_of[index], tracked_low_score=True)
            for index, candidate in enumerate(masks.candidates, first_candidate)
            if index in track_of
        ]
        unmatched = tuple(c for index, c in enumerate(masks.candidates, first_candidate) if index not in track_of)
        return dataclasses.replace(masks, instances=(*instances, *kept), candidates=unmatched)

    def _start_tracks_at(self, conf: float) -> None:
        """Only detections scored at least ``conf`` start a track or match one in the first stage,
        so a candidate is never published unless a track of a published detection matched it
        (``conf: 1`` publishes nothing, as ``track(conf=1)`` returns nothing)."""
        args = self._tracker.args
        args.track_high_thresh = max(self.settings["track_high_thresh"], conf)
        args.new_track_thresh = max(self.settings["new_track_thresh"], conf)
