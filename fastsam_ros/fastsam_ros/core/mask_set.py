"""A frame's instances with masks stored cropped to their boxes.

Masks are kept as boolean crops plus an offset instead of full-frame planes: a frame
with 50 small objects then costs kilobytes instead of 50 full images, and point and box
queries touch only the pixels of the instances they concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Instance:
    """One object in a frame: its box, score, class and box-cropped mask."""

    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in source-image pixels (floats, as the model predicted them)."""
    score: float
    class_id: int
    class_name: str
    mask_offset: tuple[int, int]
    """Column and row of the mask crop's top-left pixel in the source image."""
    mask: np.ndarray
    """Boolean array (rows, cols) covering the box; pixels outside it are background."""
    track_id: int = -1
    tracked_low_score: bool = False
    """Scored below the published confidence, and published because a track matched it (ByteTrack's
    and BoT-SORT's second association stage): a tracked object whose score dipped, not a fresh detection."""

    @cached_property
    def area(self) -> int:
        """Mask pixels; counted once, since sorting, drawing and obstacles all ask."""
        return int(np.count_nonzero(self.mask))

    def contains(self, x: int, y: int) -> bool:
        """Whether source pixel (x, y) belongs to this instance."""
        col, row = x - self.mask_offset[0], y - self.mask_offset[1]
        rows, cols = self.mask.shape
        return 0 <= row < rows and 0 <= col < cols and bool(self.mask[row, col])

    def area_inside(self, x1: int, y1: int, x2: int, y2: int) -> int:
        """Mask pixels inside the half-open pixel rectangle [x1, x2) x [y1, y2)."""
        ox, oy = self.mask_offset
        rows, cols = self.mask.shape
        c1, c2 = max(x1 - ox, 0), min(x2 - ox, cols)
        r1, r2 = max(y1 - oy, 0), min(y2 - oy, rows)
        if c1 >= c2 or r1 >= r2:
            return 0
        return int(np.count_nonzero(self.mask[r1:r2, c1:c2]))

    def paste(self, plane: np.ndarray, value: int | bool = True) -> None:
        """Write this instance's pixels into a full-frame plane."""
        ox, oy = self.mask_offset
        rows, cols = self.mask.shape
        plane[oy : oy + rows, ox : ox + cols][self.mask] = value

    def full_mask(self, height: int, width: int) -> np.ndarray:
        plane = np.zeros((height, width), dtype=bool)
        self.paste(plane)
        return plane


@dataclass(frozen=True)
class MaskSet:
    """All instances found in one source frame, with the frame's size and identity."""

    height: int
    width: int
    instances: tuple[Instance, ...] = ()
    stamp_ns: int = 0
    frame_id: str = ""
    class_names: dict[int, str] = field(default_factory=dict)
    candidates: tuple[Instance, ...] = ()
    """Detections scored below the published confidence, with their masks: the tracker matches
    them to its tracks in its second association stage and publishes those it matched."""
    conf: float = 0.0
    """The published confidence the instances were selected at: a candidate, scored below it,
    may extend a track but never start one (as in ``track()`` called with this confidence)."""

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> Instance:
        return self.instances[index]

    def full_masks(self) -> np.ndarray:
        """(N, H, W) boolean stack; for tests and oracles, not for the hot path."""
        stack = np.zeros((len(self), self.height, self.width), dtype=bool)
        for plane, instance in zip(stack, self.instances, strict=True):
            instance.paste(plane)
        return stack

    def merged_mask(self, indices: list[int]) -> np.ndarray:
        plane = np.zeros((self.height, self.width), dtype=bool)
        for index in indices:
            self.instances[index].paste(plane)
        return plane

    def label_image(self) -> np.ndarray:
        """uint16 plane: 0 is background, i + 1 is instance i.

        Larger instances are painted first so that smaller ones drawn later stay
        visible where objects overlap (a person in front of a bus keeps its pixels).
        """
        labels = np.zeros((self.height, self.width), dtype=np.uint16)
        order = sorted(range(len(self)), key=lambda i: self.instances[i].area, reverse=True)
        for index in order:
            self.instances[index].paste(labels, index + 1)
        return labels


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x1 y1 x2 y2 boxes; 0 for two boxes without area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
