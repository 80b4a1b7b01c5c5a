"""Box-cropped masks: pixel queries against a full-frame plane built by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastsam_ros.core.mask_set import Instance, MaskSet, box_iou

HEIGHT, WIDTH = 12, 16

# An L-shaped object of 6 pixels, cropped to a 3x4 box at column 5, row 2.
L_SHAPE = np.array(
    [
        [1, 0, 0, 0],
        [1, 0, 0, 0],
        [1, 1, 1, 1],
    ],
    dtype=bool,
)


def _instance(mask: np.ndarray, offset: tuple[int, int], track_id: int = -1) -> Instance:
    ox, oy = offset
    rows, cols = mask.shape
    return Instance((ox, oy, ox + cols, oy + rows), 0.5, 0, "thing", offset, mask, track_id)


def test_area_inside_counts_a_half_open_rectangle():
    shape = _instance(L_SHAPE, (5, 2))
    assert shape.area == 6
    assert shape.area_inside(0, 0, WIDTH, HEIGHT) == 6
    assert shape.area_inside(5, 2, 9, 5) == 6, "exactly the crop"
    assert shape.area_inside(5, 2, 8, 5) == 5, "x2 = 8 leaves column 8 out"
    assert shape.area_inside(5, 2, 9, 4) == 2, "y2 = 4 leaves row 4 out"
    assert shape.area_inside(6, 4, 7, 5) == 1, "one pixel"
    assert shape.area_inside(6, 4, 6, 5) == 0, "zero width"
    assert shape.area_inside(9, 2, 12, 5) == 0, "right of the crop"
    assert shape.area_inside(0, 0, 5, HEIGHT) == 0, "left of the crop, touching it"
    assert shape.area_inside(6, 0, WIDTH, 3) == 0, "above the foot"
    assert shape.area_inside(0, 2, 3, 5) == 0, "left of the crop, beside its rows"
    assert shape.area_inside(5, 0, 9, 1) == 0, "above the crop, over its columns"


masks = arrays(bool, st.tuples(st.integers(1, 6), st.integers(1, 6)))
offsets = st.tuples(st.integers(0, WIDTH - 6), st.integers(0, HEIGHT - 6))
xs, ys = st.integers(-3, WIDTH + 3), st.integers(-3, HEIGHT + 3)


@given(masks, offsets, xs, ys, xs, ys)
def test_area_inside_equals_a_count_on_the_full_plane(mask, offset, x1, y1, x2, y2):
    instance = _instance(mask, offset)
    plane = np.zeros((HEIGHT, WIDTH), bool)
    ox, oy = offset
    plane[oy : oy + mask.shape[0], ox : ox + mask.shape[1]] = mask
    expected = sum(
        int(plane[y, x]) for y in range(max(y1, 0), min(y2, HEIGHT)) for x in range(max(x1, 0), min(x2, WIDTH))
    )
    assert instance.area_inside(x1, y1, x2, y2) == expected
    assert instance.area == int(plane.sum())
    full = instance.full_mask(HEIGHT, WIDTH)
    assert full.dtype == bool and np.array_equal(full, plane)


@given(masks, offsets, xs, ys)
def test_contains_is_the_full_plane_pixel(mask, offset, x, y):
    instance = _instance(mask, offset)
    plane = instance.full_mask(HEIGHT, WIDTH)
    inside = 0 <= x < WIDTH and 0 <= y < HEIGHT
    assert instance.contains(x, y) == (inside and bool(plane[y, x]))


def test_contains_on_the_l_shape():
    shape = _instance(L_SHAPE, (5, 2))
    assert shape.contains(5, 2) and shape.contains(8, 4)
    assert not shape.contains(6, 2), "inside the box, outside the mask"
    assert not shape.contains(9, 4) and not shape.contains(5, 5), "just past the crop"
    assert not shape.contains(4, 2) and not shape.contains(5, 1), "just before the crop"


def test_full_masks_merged_mask_and_label_image():
    big = np.ones((4, 6), bool)
    small = np.ones((2, 2), bool)
    frame = MaskSet(HEIGHT, WIDTH, (_instance(small, (3, 3)), _instance(big, (2, 2))))
    assert len(frame) == 2 and frame[1].area == 24
    stack = frame.full_masks()
    assert stack.shape == (2, HEIGHT, WIDTH) and stack.dtype == bool
    assert stack[0].sum() == 4 and stack[1].sum() == 24 and stack[0][3, 3] and not stack[0][2, 2]
    merged = frame.merged_mask([0, 1])
    assert merged.dtype == bool and merged.shape == (HEIGHT, WIDTH)
    assert np.array_equal(merged, stack[1])
    assert np.array_equal(frame.merged_mask([0]), stack[0])
    assert not frame.merged_mask([]).any()
    labels = frame.label_image()
    assert labels.dtype == np.uint16
    assert np.count_nonzero(labels == 1) == 4, "the small object drawn over the big one stays visible"
    assert np.count_nonzero(labels == 2) == 20
    assert labels[0, 0] == 0 and labels[3, 3] == 1 and labels[2, 2] == 2


def test_label_image_paints_the_larger_object_first_whatever_the_order():
    big = np.ones((4, 6), bool)
    small = np.ones((2, 2), bool)
    frame = MaskSet(HEIGHT, WIDTH, (_instance(big, (2, 2)), _instance(small, (3, 3))))
    labels = frame.label_image()
    assert np.count_nonzero(labels == 2) == 4 and np.count_nonzero(labels == 1) == 20


def test_paste_writes_the_given_value_only_on_mask_pixels():
    plane = np.full((HEIGHT, WIDTH), 9, np.uint16)
    _instance(L_SHAPE, (5, 2)).paste(plane, 3)
    assert np.count_nonzero(plane == 3) == 6 and plane[2, 6] == 9 and plane[4, 8] == 3


def test_box_iou_is_exact_symmetric_and_zero_apart():
    """Boxes with no two coordinates alike, so that an x read for a y (or x1 for x2) shows."""
    wide, tall = (2, 3, 12, 8), (6, 1, 10, 11)  # areas 50 and 40, overlapping on 4 x 5
    assert box_iou(wide, tall) == box_iou(tall, wide) == 20 / 70
    assert box_iou(wide, wide) == 1.0
    assert box_iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == 1.0, "a box smaller than a pixel is still a box"
    assert box_iou((0, 0, 10, 10), (20, 0, 30, 10)) == 0.0, "apart in x only"
    assert box_iou((0, 0, 10, 10), (0, 20, 10, 30)) == 0.0, "apart in y only"
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0, "touching"
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0, "no area: no overlap, not a division by zero"
    assert box_iou(np.array([2.0, 3.0, 12.0, 8.0]), tall) == 20 / 70
