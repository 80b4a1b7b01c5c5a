"""Persistent selections: "follow this one" across frames, through occlusions and id switches.

A prompt answers about one frame; a robot told "that person" needs the same person in every
frame after. A Follower (one per camera) remembers each selection by its tracker id and,
when that id is gone from a frame (the person walked behind someone, or the tracker gave
them a new id), re-attaches the selection within a window to the instance that best
matches where the object should be by now (constant velocity on its box centre) and how it
looked (a hue-saturation histogram of its masked pixels). When nothing matches well enough,
or two candidates match about equally well, the selection stays occluded, and is lost after
the window: a wrong re-acquisition sends the robot after a stranger, waiting only costs time.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np

from fastsam_ros.core.mask_set import Instance, MaskSet, box_iou
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.prompts import PromptError, select_by_points

HUE_BINS, SATURATION_BINS = 16, 8
"""Hue-saturation histogram size: 128 floats per selection; value (brightness) is left out
because it changes with shadows and lighting while clothing colours do not."""


HISTOGRAM_PIXELS = 4096
"""Larger crops are sampled on a grid down to about this many pixels: a close-up person costs no
more than a distant one, and a few thousand pixels give the same histogram."""

DUPLICATE_IOU = 0.5
"""Boxes overlapping at least this much may be two detections of one object."""


class FollowError(ValueError):
    """A follow or unfollow request that cannot be done; the message says why."""


class FollowStatus(str, Enum):
    TRACKING = "tracking"
    """Seen in this frame, and in the previous one."""
    OCCLUDED = "occluded"
    """Not seen in this frame; still looked for until the re-acquisition window ends."""
    LOST = "lost"
    """Unseen for longer than the window; only its own track id coming back revives it."""
    REACQUIRED = "reacquired"
    """Seen again in this frame after at least one frame without it."""


@dataclass(frozen=True)
class FollowSettings:
    window_s: float = 3.0
    """How long an unseen selection is looked for before it is lost."""
    max_selections: int = 16
    use_appearance: bool = True
    """Whether candidates must also look like the selection (colour histogram), not only be where it should be."""
    max_appearance_distance: float = 0.45
    """Bhattacharyya distance (0 identical, 1 disjoint) above which a candidate does not look like the selection."""
    gate_base: float = 0.5
    """Search radius around the predicted position when the object was just seen, in box heights."""
    gate_growth: float = 0.3
    """Growth of the search radius per second unseen, in box heights (people turn, stop and start)."""
    max_size_ratio: float = 2.0
    """A candidate's box height may differ from the selection's running height by at most this factor."""
    min_margin: float = 0.25
    """The best candidate's cost must beat the runner-up's by this much, or nothing is re-acquired yet."""
    appearance_memory: float = 0.1
    """Weight of the newest frame in the selection's running colour histogram."""
    motion_memory: float = 0.3
    """Weight of the newest frame in the selection's running box-centre velocity and box height."""


@dataclass(frozen=True)
class FollowedObject:
    """One selection as of one frame."""

    selection_id: int
    name: str
    status: FollowStatus
    since_ns: int
    """Stamp of the first frame of the current status (occluded since, lost since, ...)."""
    track_id: int
    """The tracker id the selection is attached to now; -1 while the tracker has not confirmed it."""
    instance: Instance | None
    """The object in this frame, with its mask; None unless the status is tracking or reacquired."""
    last_seen_ns: int
    last_box: tuple[float, float, float, float]
    """Where the object was last seen, in pixels."""
    motion: ObstacleTrack | None = None
    """3D position and velocity of its track, where depth exists and the object is seen."""
    previous_track_id: int | None = None
    """The track id it was attached to before this frame, when it changed in this frame."""

    @property
    def seen(self) -> bool:
        return self.instance is not None


@dataclass
class _Selection:
    selection_id: int
    name: str
    class_id: int
    track_id: int
    box: np.ndarray
    """Last seen box, x1 y1 x2 y2."""
    velocity: np.ndarray
    """Box centre velocity, pixels per second."""
    height: float
    """Running box height, pixels: the search radius scales with it, and a box cut short by an
    occluder in the last frame before the loss would otherwise shrink it."""
    appearance: np.ndarray | None
    last_seen_ns: int
    status: FollowStatus
    since_ns: int
    companions: dict[int, int] = field(default_factory=dict)
    """Track ids seen in the same frames as this selection, with the last such stamp: while
    those ids are around they are other objects, never candidates for re-acquisition."""


@dataclass(frozen=True)
class _Candidate:
    index: int
    cost: float


class Follower:
    """The selections of one camera; follow and unfollow may come from other threads than update."""

    def __init__(self, settings: FollowSettings | None = None) -> None:
        self.settings = settings or FollowSettings()
        self._lock = threading.Lock()
        self._selections: dict[int, _Selection] = {}
        self._next_id = 1
        self._last_stamp_ns: int | None = None
        self._last_result: list[FollowedObject] = []

    def __len__(self) -> int:
        return len(self._selections)

    def track_ids(self) -> frozenset[int]:
        """The track ids the selections are attached to now (none while unconfirmed)."""
        with self._lock:
            return frozenset(s.track_id for s in self._selections.values() if s.track_id >= 0)

    def configure(self, **changes: object) -> None:
        """Change settings from the next frame on; existing selections are kept even above a lower limit."""
        with self._lock:
            self.settings = dataclasses.replace(self.settings, **changes)

    def follow(self, masks: MaskSet, index: int, image: np.ndarray, name: str = "") -> int:
        """Start following instance ``index`` of a frame; answers its selection id.

        An instance whose track id is already followed answers that selection's id, so that
        a repeated request does not fill the selections up.
        """
        if not 0 <= index < len(masks):
            raise FollowError(f"instance {index} is not in the frame's {len(masks)} instances")
        instance = masks[index]
        appearance = colour_histogram(image, instance)
        with self._lock:
            for selection in self._selections.values():
                if instance.track_id >= 0 and selection.track_id == instance.track_id:
                    return selection.selection_id
            if len(self._selections) >= self.settings.max_selections:
                raise FollowError(
                    f"already following {len(self._selections)} selections, the most allowed: unfollow one first"
                )
            selection_id = self._next_id
            self._next_id += 1
            self._selections[selection_id] = _Selection(
                selection_id=selection_id,
                name=name,
                class_id=instance.class_id,
                track_id=instance.track_id,
                box=np.asarray(instance.box, dtype=np.float64),
                velocity=np.zeros(2),
                height=_height(instance.box),
                appearance=appearance,
                last_seen_ns=masks.stamp_ns,
                status=FollowStatus.TRACKING,
                since_ns=masks.stamp_ns,
                companions=dict.fromkeys(_others_beside(masks, instance), masks.stamp_ns),
            )
            return selection_id

    def unfollow(self, selection_id: int | None = None) -> list[int]:
        """Stop following one selection, or all of them with None; answers the ids ended."""
        with self._lock:
            if selection_id is None:
                ended = sorted(self._selections)
                self._selections.clear()
                return ended
            if selection_id not in self._selections:
                known = ", ".join(str(i) for i in sorted(self._selections)) or "none"
                raise FollowError(f"no selection {selection_id} (followed now: {known})")
            del self._selections[selection_id]
            return [selection_id]

    def forget_track_ids(self) -> None:
        """After a tracker change: ids from before mean nothing now, so every selection is found
        again by motion and appearance instead (a new tracker may hand an old id to anyone)."""
        with self._lock:
            for selection in self._selections.values():
                selection.track_id = -1
                selection.companions.clear()

    def update(
        self,
        masks: MaskSet,
        image: np.ndarray,
        stamp_ns: int,
        positions3d: Mapping[int, ObstacleTrack] | None = None,
    ) -> list[FollowedObject]:
        """Every selection as of this frame, in selection id order.

        A frame stamped earlier than the last one, by less than the window, arrived out of
        order: it changes nothing and the last answer is repeated. An earlier stamp by more
        than the window is a restarted clock (a replayed recording): the selections carry on
        as if this frame came right after the last one.
        """
        with self._lock:
            settings = self.settings
            if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
                if self._last_stamp_ns - stamp_ns <= settings.window_s * 1e9:
                    return [o for o in self._last_result if o.selection_id in self._selections]
                self._shift_clock(stamp_ns - self._last_stamp_ns)
            self._last_stamp_ns = stamp_ns
            result = self._update(masks, image, stamp_ns, positions3d or {}, settings)
            self._last_result = result
            return list(result)

    def _shift_clock(self, offset_ns: int) -> None:
        for selection in self._selections.values():
            selection.last_seen_ns += offset_ns
            selection.since_ns += offset_ns
            selection.companions = {track: stamp + offset_ns for track, stamp in selection.companions.items()}

    def _update(
        self,
        masks: MaskSet,
        image: np.ndarray,
        stamp_ns: int,
        positions3d: Mapping[int, ObstacleTrack],
        settings: FollowSettings,
    ) -> list[FollowedObject]:
        instances = masks.instances
        by_track: dict[int, list[int]] = {}
        for index, instance in enumerate(instances):
            if instance.track_id >= 0:
                by_track.setdefault(instance.track_id, []).append(index)
        found: dict[int, int] = {}
        for selection in self._selections.values():
            indices = by_track.get(selection.track_id, []) if selection.track_id >= 0 else []
            indices = [i for i in indices if instances[i].class_id == selection.class_id]
            if indices:
                found[selection.selection_id] = max(indices, key=lambda i: box_iou(instances[i].box, selection.box))
        claimed = set(found.values())
        missing = [s for s in self._selections.values() if s.selection_id not in found]
        found.update(self._reacquire(missing, masks, image, stamp_ns, claimed, settings))
        out = []
        for selection in self._selections.values():
            index = found.get(selection.selection_id)
            out.append(self._advance(selection, index, masks, image, stamp_ns, positions3d, settings))
        return out

    def _reacquire(
        self,
        missing: list[_Selection],
        masks: MaskSet,
        image: np.ndarray,
        stamp_ns: int,
        claimed: set[int],
        settings: FollowSettings,
    ) -> dict[int, int]:
        """Greedy assignment of unclaimed instances to the unseen selections, cheapest first."""
        instances, width, height = masks.instances, masks.width, masks.height
        histograms: dict[int, np.ndarray | None] = {}
        choices = []
        for selection in missing:
            unseen_s = _seconds_since(selection.last_seen_ns, stamp_ns)
            if selection.status is FollowStatus.LOST or unseen_s > settings.window_s:
                continue
            predicted = _centre(selection.box) + selection.velocity * unseen_s
            if not (0 <= predicted[0] < width and 0 <= predicted[1] < height):
                continue  # it walked out of the picture: whoever comes in there next is anyone
            candidates = []
            for index, instance in enumerate(instances):
                if index in claimed or instance.class_id != selection.class_id:
                    continue
                if instance.track_id in selection.companions:
                    continue
                if instance.track_id < 0 <= selection.track_id:
                    continue  # a detection no track has confirmed yet: often a fragment of someone
                cost = _motion_cost(selection, instance, unseen_s, settings)
                if cost is None:
                    continue
                if settings.use_appearance:
                    if index not in histograms:
                        histograms[index] = colour_histogram(image, instance)
                    look = _appearance_cost(selection, histograms[index], settings)
                    if look is None:
                        continue
                    cost += look
                candidates.append(_Candidate(index, cost))
            candidates.sort(key=lambda c: c.cost)
            if candidates and (len(candidates) == 1 or candidates[1].cost - candidates[0].cost >= settings.min_margin):
                choices.append((candidates[0].cost, selection.selection_id, candidates[0].index))
        assigned: dict[int, int] = {}
        for _, selection_id, index in sorted(choices):
            if index not in claimed and selection_id not in assigned:
                assigned[selection_id] = index
                claimed.add(index)
        return assigned

    def _advance(
        self,
        selection: _Selection,
        index: int | None,
        masks: MaskSet,
        image: np.ndarray,
        stamp_ns: int,
        positions3d: Mapping[int, ObstacleTrack],
        settings: FollowSettings,
    ) -> FollowedObject:
        """Move one selection to this frame: seen at ``index``, or unseen."""
        previous_track = selection.track_id
        if index is None:
            unseen_s = _seconds_since(selection.last_seen_ns, stamp_ns)
            lost = selection.status is FollowStatus.LOST or unseen_s > settings.window_s
            self._set_status(selection, FollowStatus.LOST if lost else FollowStatus.OCCLUDED, stamp_ns)
            self._forget_companions(selection, stamp_ns, settings)
            return self._snapshot(selection, None, None, None)
        instance = masks[index]
        was_seen = selection.status in (FollowStatus.TRACKING, FollowStatus.REACQUIRED)
        self._set_status(selection, FollowStatus.TRACKING if was_seen else FollowStatus.REACQUIRED, stamp_ns)
        box = np.asarray(instance.box, dtype=np.float64)
        dt = (stamp_ns - selection.last_seen_ns) / 1e9
        if dt > 0:
            step = (_centre(box) - _centre(selection.box)) / dt
            selection.velocity += settings.motion_memory * (step - selection.velocity)
        selection.height += settings.motion_memory * (_height(box) - selection.height)
        selection.box = box
        selection.last_seen_ns = stamp_ns
        selection.track_id = instance.track_id
        histogram = colour_histogram(image, instance)
        if selection.appearance is None:
            selection.appearance = histogram
        elif histogram is not None:
            selection.appearance = selection.appearance + settings.appearance_memory * (
                histogram - selection.appearance
            )
        for track_id in _others_beside(masks, instance):
            selection.companions[track_id] = stamp_ns
        self._forget_companions(selection, stamp_ns, settings)
        changed = previous_track if previous_track != instance.track_id else None
        return self._snapshot(selection, instance, positions3d.get(instance.track_id), changed)

    @staticmethod
    def _set_status(selection: _Selection, status: FollowStatus, stamp_ns: int) -> None:
        if status is not selection.status:
            selection.status, selection.since_ns = status, stamp_ns

    @staticmethod
    def _forget_companions(selection: _Selection, stamp_ns: int, settings: FollowSettings) -> None:
        """Ids not seen beside the selection for a window may be anyone now (the tracker reuses nothing, but
        an id kept for ever would grow the set without bound on a long run)."""
        limit = settings.window_s * 1e9
        selection.companions = {t: s for t, s in selection.companions.items() if stamp_ns - s <= limit}

    @staticmethod
    def _snapshot(
        selection: _Selection, instance: Instance | None, motion: ObstacleTrack | None, previous_track: int | None
    ) -> FollowedObject:
        return FollowedObject(
            selection_id=selection.selection_id,
            name=selection.name,
            status=selection.status,
            since_ns=selection.since_ns,
            track_id=selection.track_id,
            instance=instance,
            last_seen_ns=selection.last_seen_ns,
            last_box=tuple(float(v) for v in selection.box),
            motion=motion,
            previous_track_id=previous_track,
        )


def instance_to_follow(masks: MaskSet, points: Sequence[tuple[float, float]], labels: Sequence[int]) -> int:
    """The one instance a point prompt designates for following: the smallest of those it selects.

    A point prompt may select overlapping masks (a bag on a person); a selection follows one
    object, and the smallest is the one the point is most specifically on.
    """
    hits = select_by_points(masks, points, labels)
    if not hits:
        raise PromptError("no instance under the foreground points")
    return min(hits, key=lambda index: masks[index].area)


def colour_histogram(image: np.ndarray, instance: Instance) -> np.ndarray | None:
    """Normalised hue-saturation histogram of the instance's pixels; None for a mask without pixels in the image."""
    ox, oy = instance.mask_offset
    rows, cols = instance.mask.shape
    height, width = image.shape[:2]
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + cols, width), min(oy + rows, height)
    if x2 <= x1 or y2 <= y1:
        return None
    stride = max(1, math.ceil(math.sqrt((y2 - y1) * (x2 - x1) / HISTOGRAM_PIXELS)))
    mask = instance.mask[y1 - oy : y2 - oy : stride, x1 - ox : x2 - ox : stride]
    if not mask.any():
        return None
    crop = image[y1:y2:stride, x1:x2:stride]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist(
        [hsv], [0, 1], mask.astype(np.uint8), [HUE_BINS, SATURATION_BINS], [0, 180, 0, 256]
    ).ravel()
    return histogram / float(histogram.sum())  # at least the one mask pixel found above


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two normalised histograms: 0 for the same colours, 1 for disjoint ones."""
    return float(cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_BHATTACHARYYA))


def _motion_cost(selection: _Selection, instance: Instance, unseen_s: float, settings: FollowSettings) -> float | None:
    """How far an instance is from where an unseen selection should be, 0 to 1 inside the gate, else None.

    The object is looked for near the segment from where it was last seen to where constant
    velocity would have taken it: it may have stopped behind the occluder or walked on.
    """
    ratio = _height(instance.box) / selection.height
    if not 1 / settings.max_size_ratio <= ratio <= settings.max_size_ratio:
        return None
    last = _centre(selection.box)
    predicted = last + selection.velocity * unseen_s
    radius = selection.height * (settings.gate_base + settings.gate_growth * unseen_s)
    distance = _distance_to_segment(_centre(np.asarray(instance.box)), last, predicted) / radius
    return distance if distance <= 1.0 else None


def _appearance_cost(selection: _Selection, histogram: np.ndarray | None, settings: FollowSettings) -> float | None:
    """How differently an instance looks, 0 to 1 within the threshold, else None (no pixels: no judgement)."""
    if histogram is None or selection.appearance is None:
        return None
    difference = appearance_distance(selection.appearance, histogram) / settings.max_appearance_distance
    return difference if difference <= 1.0 else None


def _others_beside(masks: MaskSet, instance: Instance) -> set[int]:
    """Track ids of the frame's objects that are clearly not this one: apart from it, not overlapping.

    A box mostly over the instance's may be a second detection of the same object, which the
    tracker may keep while it drops the first one; that id must stay a candidate.
    """
    return {
        other.track_id
        for other in masks.instances
        if other.track_id >= 0
        and other.track_id != instance.track_id
        and box_iou(other.box, instance.box) < DUPLICATE_IOU
    }


def _seconds_since(then_ns: int, now_ns: int) -> float:
    """Never negative: a selection made on a frame newer than the one being updated was just seen."""
    return max(now_ns - then_ns, 0) / 1e9


def _height(box: tuple[float, ...] | np.ndarray) -> float:
    return max(float(box[3] - box[1]), 1.0)


def _centre(box: tuple[float, ...] | np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _distance_to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    along = end - start
    length2 = float(along @ along)
    t = 0.0 if length2 == 0 else min(max(float((point - start) @ along) / length2, 0.0), 1.0)
    return float(np.linalg.norm(point - (start + t * along)))
