"""FastSAM's second stage for points and boxes: choosing among a frame's masks.

Semantics follow FastSAM (and ultralytics' ``FastSAMPredictor.prompt``, which the tests
use as the oracle): coordinates are truncated to whole pixels; a box picks the mask
with the highest mask-to-box IoU. Unlike the oracle, a point outside the image is refused
with a PromptError instead of being silently clipped, because a planner that sends one
has a bug it needs to hear about; a box partly outside the image is clipped to it (as
BoxPrompt.srv says) and only a box entirely outside is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.parameters import default_of


class PromptError(ValueError):
    """A prompt that cannot be answered; the message says why."""


@dataclass(frozen=True)
class PromptLimits:
    """Largest requests answered: a prompt's cost grows with its size, and it shares the CPU with inference."""

    max_points: int = default_of("max_prompt_points")
    max_boxes: int = default_of("max_prompt_boxes")
    max_texts: int = default_of("max_prompt_texts")
    max_text_length: int = default_of("max_text_length")

    def check(self, points: int = 0, boxes: int = 0, texts: Sequence[str] = (), names: Sequence[str] = ()) -> None:
        """Raise PromptError naming the limit (and its parameter) that a request exceeds.

        A follow request's name is published with every frame and drawn: it is held to the
        text length too."""
        for count, limit, what, parameter in (
            (points, self.max_points, "points", "max_prompt_points"),
            (boxes, self.max_boxes, "boxes", "max_prompt_boxes"),
            (len(texts), self.max_texts, "texts", "max_prompt_texts"),
        ):
            if count > limit:
                raise PromptError(f"{count} {what} exceed the limit of {limit} per request (parameter {parameter})")
        for what, strings in (("text", texts), ("name", names)):
            longest = max((len(string) for string in strings), default=0)
            if longest > self.max_text_length:
                raise PromptError(
                    f"a {what} of {longest} characters exceeds the limit of {self.max_text_length} "
                    "(parameter max_text_length)"
                )


def merge_instances(masks: MaskSet, indices: list[int]) -> Instance:
    """One instance covering the union of the selected masks, cropped to its extent.

    No selection, or masks without a pixel, give an empty instance at the origin.
    """
    plane = masks.merged_mask(indices)
    if not plane.any():
        return Instance((0.0, 0.0, 0.0, 0.0), 0.0, -1, "merged", (0, 0), np.zeros((0, 0), dtype=bool))
    rows, cols = np.nonzero(plane.any(axis=1))[0], np.nonzero(plane.any(axis=0))[0]
    r1, r2, c1, c2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    score = max(masks[i].score for i in indices)
    return Instance((float(c1), float(r1), float(c2), float(r2)), score, -1, "merged", (c1, r1), plane[r1:r2, c1:c2])


@dataclass(frozen=True)
class BoxMatch:
    index: int
    iou: float


def select_by_points(masks: MaskSet, points: Sequence[tuple[float, float]], labels: Sequence[int]) -> list[int]:
    """Indices of masks hit by a foreground point and by no background point.

    With only background points, every mask that no point hits is kept.
    """
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

    def iou(instance: Instance) -> float:
        inside = instance.area_inside(x1, y1, x2, y2)
        return inside / (box_area + instance.area - inside)

    ious = [iou(instance) for instance in masks.instances]
    best = int(np.argmax(ious))  # the first of equal IoUs
    return BoxMatch(index=best, iou=ious[best])


def _require_finite(*values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise PromptError(f"coordinates must be finite numbers, got {values}")
