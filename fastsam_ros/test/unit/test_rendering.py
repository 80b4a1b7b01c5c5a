"""The debug overlay: each visible mask pixel tinted once, in its object's colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.rendering import colour_for, draw_overlay, tint_masks


def _expected_tint(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Per pixel, the straightforward blend of the pixel with its label's colour."""
    expected = image.copy()
    for label in np.unique(labels[labels > 0]):
        where = labels == label
        colour = np.full((int(where.sum()), 1, 3), colour_for(int(label) - 1), np.uint8)
        pixels = image[where][:, None, :]
        expected[where] = cv2.addWeighted(pixels, 1 - alpha, colour, alpha, 0.0)[:, 0, :]
    return expected


def test_masks_are_tinted_with_the_object_in_front(bus_masks, bus):
    labels = bus_masks.label_image()
    assert np.array_equal(tint_masks(bus, bus_masks, 0.45), _expected_tint(bus, labels))
    overlay = draw_overlay(bus, bus_masks)
    assert np.array_equal(overlay[labels == 0][:1000], bus[labels == 0][:1000]), "background is left alone"


@pytest.mark.parametrize("count", [3, 300])
def test_many_instances_are_all_tinted(count):
    """More than 255 instances leave the 8-bit lookup path; both give the same pixels."""
    image = np.full((40, 8 * count, 3), 200, np.uint8)
    instances = tuple(
        Instance((8.0 * i, 0.0, 8.0 * i + 4, 4.0), 0.9, 0, "", (8 * i, 30), np.ones((4, 4), bool)) for i in range(count)
    )
    masks = MaskSet(height=40, width=8 * count, instances=instances)
    tinted = tint_masks(image, masks, 0.45)
    assert np.array_equal(tinted, _expected_tint(image, masks.label_image()))
    assert not np.array_equal(tinted[30:34, :4], image[30:34, :4])
