"""Drawing the debug overlay: coloured masks, boxes, ids and scores."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.obstacles import Obstacle

_PALETTE = np.array(
    [
        (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
        (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
        (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
        (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
    ],
    dtype=np.uint8,
)  # fmt: skip


def colour_for(index: int) -> tuple[int, int, int]:
    """A stable BGR colour per instance (or track) id."""
    return tuple(int(c) for c in _PALETTE[index % len(_PALETTE)])


OBSTACLE_RED = (0, 0, 255)
FOLLOWED_YELLOW = (0, 230, 255)


def draw_overlay(
    image: np.ndarray,
    masks: MaskSet,
    alpha: float = 0.45,
    obstacles: list[Obstacle] = (),
    roi: np.ndarray | None = None,
    followed: Mapping[int, str] | None = None,
) -> np.ndarray:
    """A BGR copy of ``image`` with each instance's mask tinted and its box labelled.

    Larger masks are tinted first, so smaller objects in front keep their own colour.
    Labels show track ids when tracking is on; obstacles get a thick red box and their
    distance, and the obstacle region of interest (pixel polygon) is outlined. Followed
    objects (``followed``: instance index to label, e.g. "follow alice") get a thick yellow
    outline along their mask and their label above the box.
    """
    canvas = tint_masks(image, masks, alpha)
    if roi is not None:
        cv2.polylines(canvas, [roi], isClosed=True, color=OBSTACLE_RED, thickness=1, lineType=cv2.LINE_AA)
    distances = {o.index: o.distance for o in obstacles}
    for index, instance in enumerate(masks.instances):
        colour = colour_for(_colour_key(index, instance.track_id))
        x1, y1, x2, y2 = (round(v) for v in instance.box)
        name = instance.class_name or "object"
        tag = f"#{index}" if instance.track_id < 0 else f"id{instance.track_id}"
        text = f"{tag} {name} {instance.score:.2f}"
        if index in distances:
            colour = OBSTACLE_RED
            distance = distances[index]
            text += " OBSTACLE" + (f" {distance:.2f} m" if distance is not None else "")
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 4 if index in distances else 2)
        _label(canvas, text, (x1, y1), colour)
    for index, label in (followed or {}).items():
        instance = masks[index]
        contours, _ = cv2.findContours(instance.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, FOLLOWED_YELLOW, 4, cv2.LINE_AA, offset=instance.mask_offset)
        x1, y1 = round(instance.box[0]), round(instance.box[1])
        _label(canvas, label, (x1, max(y1 - 20, 0)), FOLLOWED_YELLOW)
    return canvas


def tint_masks(image: np.ndarray, masks: MaskSet, alpha: float) -> np.ndarray:
    """Every mask tinted in one full-frame blend, through the label image.

    The label image already puts smaller objects on top, so each pixel takes the colour
    of the object in front; one blend of the frame is about 4x faster at 1080p than a
    blend per instance box.
    """
    canvas = image.copy()
    if not len(masks):
        return canvas
    labels = masks.label_image()
    keys = np.array([_colour_key(i, instance.track_id) for i, instance in enumerate(masks.instances)])
    colours = np.zeros((len(keys) + 1, 3), np.uint8)
    colours[1:] = _PALETTE[keys % len(_PALETTE)]
    if len(keys) < 256:
        small = labels.astype(np.uint8)
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[: len(colours), 0] = colours
        tint = cv2.LUT(cv2.cvtColor(small, cv2.COLOR_GRAY2BGR), lut)
    else:
        tint = colours[labels]
    blended = cv2.addWeighted(image, 1 - alpha, tint, alpha, 0.0)
    cv2.copyTo(blended, (labels > 0).view(np.uint8), canvas)
    return canvas


def _colour_key(index: int, track_id: int) -> int:
    return track_id if track_id >= 0 else index


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]) -> None:
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1
    (w, h), baseline = cv2.getTextSize(text, font, scale, thickness)
    x, y = corner
    top = max(y - h - baseline - 2, 0)
    cv2.rectangle(canvas, (x, top), (x + w + 2, top + h + baseline + 2), colour, -1)
    cv2.putText(canvas, text, (x + 1, top + h + 1), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
