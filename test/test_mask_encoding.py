"""InstanceArray mask encoding: exact round trips, including holes and split objects."""

from __future__ import annotations

import numpy as np

from fastsam_ros.mask_set import Instance, MaskSet
from fastsam_ros.ros_convert import mask_set_to_msg, msg_to_mask_set
from fastsam_ros.ros_graph import stamp_from_ns


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
    assert (first.mask.encoding, first.mask.width, first.mask.height) == ("mono8", 50, 40)
    assert set(bytes(first.mask.data)) == {0, 255}


def test_real_masks_round_trip_exactly_and_are_small(bus_masks):
    msg = mask_set_to_msg(bus_masks, _header())
    decoded = msg_to_mask_set(msg)
    assert np.array_equal(decoded.full_masks(), bus_masks.full_masks())
    assert np.array_equal(decoded.label_image(), bus_masks.label_image())
    mask_bytes = sum(len(instance.mask.data) for instance in msg.instances)
    naive_bytes = len(bus_masks) * bus_masks.height * bus_masks.width
    assert mask_bytes < 0.5 * naive_bytes
