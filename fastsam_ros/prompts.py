"""FastSAM's second stage for points and boxes: choosing among a frame's masks.

Semantics follow FastSAM (and ultralytics' ``FastSAMPredictor.prompt``, which the tests
use as the oracle): coordinates are truncated to whole pixels; a box picks the mask
with the highest mask-to-box IoU. Unlike the oracle, out-of-range input is refused with
a PromptError instead of being silently clipped, because a planner that sends a point
outside the image has a bug it needs to hear about.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fastsam_ros.mask_set import MaskSet


class PromptError(ValueError):
    """A prompt that cannot be answered; the message says why."""


@dataclass(frozen=True)
class BoxMatch:
    index: int
    iou: float


def select_by_points(masks: MaskSet, points: Sequence[tuple[float, float]], labels: Sequence[int]) -> list[int]:
    """Indices of masks hit by a foreground point and by no background point.

    With only background points, every mask that no point hits is kept.
    """
    _require_frame(masks)
    if len(points) == 0:
        raise PromptError("no points given")
    if len(labels) != len(points):
        raise PromptError(f"{len(points)} points but {len(labels)} labels: give one label (1 or 0) per point")
    pixels = []
    for (x, y), label in zip(points, labels, strict=True):
        if label not in (0, 1):
            raise PromptError(f"label {label} is not 1 (foreground) or 0 (background)")
        _require_finite(x, y)
        if not (0 <= x < masks.width and 0 <= y < masks.height):
            raise PromptError(f"point ({x}, {y}) is outside the {masks.width}x{masks.height} image")
        pixels.append((int(x), int(y), label))
    foreground = [(x, y) for x, y, label in pixels if label == 1]
    background = [(x, y) for x, y, label in pixels if label == 0]
    selected = []
    for index, instance in enumerate(masks.instances):
        hit_fg = any(instance.contains(x, y) for x, y in foreground)
        hit_bg = any(instance.contains(x, y) for x, y in background)
        if (hit_fg or not foreground) and not hit_bg:
            selected.append(index)
    return selected


def select_by_box(masks: MaskSet, box: Sequence[float]) -> BoxMatch:
    """The mask with the highest IoU against the box (x1, y1, x2, y2 in pixels)."""
    _require_frame(masks)
    if len(masks) == 0:
        raise PromptError("the frame has no instances to select from")
    if len(box) != 4:
        raise PromptError(f"a box needs 4 numbers (x1, y1, x2, y2), got {len(box)}")
    _require_finite(*box)
    x1, y1, x2, y2 = (int(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise PromptError(f"box ({x1}, {y1}, {x2}, {y2}) is empty or inverted: need x1 < x2 and y1 < y2")
    x1, x2 = max(x1, 0), min(x2, masks.width)
    y1, y2 = max(y1, 0), min(y2, masks.height)
    if x2 <= x1 or y2 <= y1:
        raise PromptError(f"box {tuple(box)} lies outside the {masks.width}x{masks.height} image")
    box_area = (x2 - x1) * (y2 - y1)
    best = BoxMatch(index=-1, iou=-1.0)
    for index, instance in enumerate(masks.instances):
        inside = instance.area_inside(x1, y1, x2, y2)
        iou = inside / (box_area + instance.area - inside)
        if iou > best.iou:
            best = BoxMatch(index=index, iou=iou)
    return best


def _require_frame(masks: MaskSet | None) -> None:
    if masks is None:
        raise PromptError("no frame has been segmented yet")


def _require_finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise PromptError(f"coordinates must be finite numbers, got {values}")
