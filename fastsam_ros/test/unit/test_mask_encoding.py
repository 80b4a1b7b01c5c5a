"""InstanceArray mask encoding: exact round trips, including holes and split objects."""

from __future__ import annotations

import numpy as np
import pytest

from fastsam_ros.core.mask_encoding import MaskEncodingError, decode_runs, encode_runs
from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.ros.convert import mask_set_to_msg, msg_to_mask_set, stamp_from_ns


def _header():
    from std_msgs.msg import Header

    return Header(stamp=stamp_from_ns(1_234_567_890_123), frame_id="camera")


def _ring_and_pair() -> MaskSet:
    ring = np.zeros((40, 50), bool)
    ring[5:35, 5:45] = True
    ring[15:25, 15:35] = False
    pair = np.zeros((20, 60), bool)
    pair[2:18, 3:20] = True
    pair[4:16, 40:58] = True
    return MaskSet(
        height=120,
        width=160,
        instances=(
            Instance((10.0, 20.0, 60.0, 60.0), 0.9, 3, "ring", (10, 20), ring),
            Instance((90.5, 70.2, 150.0, 90.0), 0.5, 7, "pair", (90, 70), pair),
        ),
    )


def test_hole_and_two_part_masks_round_trip_exactly():
    original = _ring_and_pair()
    decoded = msg_to_mask_set(mask_set_to_msg(original, _header()))
    assert np.array_equal(decoded.full_masks(), original.full_masks())
    ring = decoded.full_masks()[0]
    assert not ring[20 + 20, 10 + 25], "the hole must survive"
    pair = decoded.full_masks()[1]
    assert pair[80, 100] and pair[80, 140] and not pair[80, 120], "both parts, and the gap between them"


def test_message_fields_carry_frame_and_instance_data():
    msg = mask_set_to_msg(_ring_and_pair(), _header(), processing_ms=12.5)
    assert (msg.width, msg.height, msg.header.frame_id) == (160, 120, "camera")
    assert msg.processing_ms == 12.5
    first = msg.instances[0]
    assert (first.id, first.class_id, first.class_name, first.area) == (0, 3, "ring", 40 * 30 - 10 * 20)
    assert (first.mask_x, first.mask_y, first.mask_width, first.mask_height) == (10, 20, 50, 40)
    # 5 background rows plus 5 columns, then 40 object pixels; the hole splits 10 rows in two.
    assert list(first.mask_runs[:3]) == [5 * 50 + 5, 40, 10]
    assert sum(first.mask_runs) == 50 * 40


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((0, 0), bool),
        np.zeros((3, 4), bool),
        np.ones((3, 4), bool),
        np.eye(5, dtype=bool),
        np.random.default_rng(7).random((31, 17)) > 0.5,
    ],
    ids=["empty", "all background", "all object", "diagonal", "noise"],
)
def test_runs_round_trip(mask):
    runs = encode_runs(mask)
    assert runs.dtype == np.uint32
    assert np.array_equal(decode_runs(runs, *mask.shape), mask)


def test_runs_start_with_background():
    assert encode_runs(np.array([[True, True, False]])).tolist() == [0, 2, 1]
    assert encode_runs(np.array([[False, True, True]])).tolist() == [1, 2]


def test_runs_of_the_wrong_length_are_refused():
    with pytest.raises(MaskEncodingError, match="cover 5 pixels"):
        decode_runs(np.array([2, 3], np.uint32), 2, 3)


def test_real_masks_round_trip_exactly_and_are_small(bus_masks):
    msg = mask_set_to_msg(bus_masks, _header())
    decoded = msg_to_mask_set(msg)
    assert np.array_equal(decoded.full_masks(), bus_masks.full_masks())
    assert np.array_equal(decoded.label_image(), bus_masks.label_image())
    mask_bytes = sum(4 * len(instance.mask_runs) for instance in msg.instances)
    naive_bytes = len(bus_masks) * bus_masks.height * bus_masks.width
    assert mask_bytes < 0.05 * naive_bytes


def test_any_non_zero_pixel_is_object_and_an_empty_crop_has_no_runs():
    assert encode_runs(np.array([[0, 1, 2, 255, 0]], np.uint8)).tolist() == [1, 3, 1]
    assert encode_runs(np.zeros((0, 0), bool)).size == 0
    assert encode_runs(np.zeros((0, 5), bool)).size == 0


def test_the_length_error_names_both_counts():
    with pytest.raises(MaskEncodingError, match=r"^runs cover 5 pixels, the 3x2 crop has 6$"):
        decode_runs(np.array([2, 3], np.uint32), 2, 3)
