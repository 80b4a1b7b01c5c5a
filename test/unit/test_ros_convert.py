"""Message conversions that need no ROS graph: depth images, obstacles, frames, stamps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from fastsam_ros.image_codec import ImageDecodeError
from fastsam_ros.mask_set import Instance, MaskSet
from fastsam_ros.obstacles import DepthError, Intrinsics, Obstacle
from fastsam_ros.ros_convert import (
    array_to_image,
    check_before_decoding,
    depth_to_metres,
    image_to_bgr,
    instance_to_msg,
    intrinsics_from,
    mask_set_to_msg,
    msg_to_instance,
    msg_to_mask_set,
    obstacles_to_msg,
    stamp_from_ns,
    stamp_to_ns,
)


def _depth_msg(values: np.ndarray, encoding: str, big_endian: bool, padding: int = 0) -> Image:
    dtype = values.dtype.newbyteorder(">" if big_endian else "<")
    rows = values.astype(dtype).view(np.uint8).reshape(values.shape[0], -1)
    padded = np.zeros((rows.shape[0], rows.shape[1] + padding), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(
        height=values.shape[0],
        width=values.shape[1],
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=padded.shape[1],
        data=padded.tobytes(),
    )


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("padding", [0, 6])
def test_16uc1_millimetres_of_either_byte_order_become_metres(big_endian, padding):
    millimetres = np.array([[0, 1, 255, 256], [1500, 4097, 65535, 300]], np.uint16)
    metres = depth_to_metres(_depth_msg(millimetres, "16UC1", big_endian, padding))
    assert metres.dtype == np.float32 and metres.shape == (2, 4)
    assert np.isnan(metres[0, 0]), "0 mm is no reading"
    assert np.allclose(metres[~np.isnan(metres)], millimetres[millimetres > 0] / 1000.0)


@pytest.mark.parametrize("big_endian", [False, True])
def test_32fc1_metres_of_either_byte_order(big_endian):
    values = np.array([[0.5, 1.25, -1.0], [np.inf, 7.75, 0.0]], np.float32)
    metres = depth_to_metres(_depth_msg(values, "32FC1", big_endian))
    assert metres[0, :2].tolist() == [0.5, 1.25] and metres[1, 1] == 7.75
    assert np.isnan(metres[0, 2]) and np.isnan(metres[1, 0]) and np.isnan(metres[1, 2])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"encoding": "mono16"}, "unsupported depth encoding"),
        ({"step": 7}, "malformed"),
        ({"height": 0}, "malformed"),
        ({"width": 0}, "malformed"),
        ({"data": bytes(15)}, "malformed"),
    ],
)
def test_malformed_depth_is_refused(change, reason):
    msg = _depth_msg(np.ones((2, 4), np.uint16), "16UC1", False)
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(DepthError, match=reason):
        depth_to_metres(msg)


def _tracked_frame() -> MaskSet:
    mask = np.ones((4, 5), bool)
    mask[0, 0] = False
    instances = (
        Instance((1.5, 2.5, 6.0, 6.5), 0.75, 0, "person", (1, 2), mask, track_id=17),
        Instance((10.0, 0.0, 15.0, 4.0), 0.5, 5, "bus", (10, 0), np.ones((4, 5), bool), track_id=-1),
    )
    return MaskSet(20, 30, instances)


def test_obstacles_carry_their_instance_fields_and_track_id():
    frame = _tracked_frame()
    header = Header(stamp=stamp_from_ns(5_000_000_123), frame_id="camera")
    obstacles = [Obstacle(0, 0.25, 1.5, (0.1, -0.2, 1.5)), Obstacle(1, 1.0)]
    msg = obstacles_to_msg(header, frame, obstacles, depth_paired=True)
    assert msg.header.frame_id == "camera" and stamp_to_ns(msg.header.stamp) == 5_000_000_123 and msg.depth_paired
    person, bus = msg.obstacles
    assert (person.instance_id, person.track_id, person.class_name, person.area) == (0, 17, "person", 19)
    assert person.score == 0.75 and person.roi_overlap == 0.25
    assert (person.box.x1, person.box.y1, person.box.x2, person.box.y2) == (1.5, 2.5, 6.0, 6.5)
    assert person.has_distance and person.distance == 1.5
    assert person.has_centroid and (person.centroid.x, person.centroid.y, person.centroid.z) == pytest.approx(
        (0.1, -0.2, 1.5)
    )
    assert (bus.instance_id, bus.track_id, bus.class_name) == (1, -1, "bus")
    assert not bus.has_distance and not bus.has_centroid
    assert not obstacles_to_msg(header, frame, [], depth_paired=False).depth_paired


def test_instances_carry_their_track_id():
    frame = _tracked_frame()
    assert [instance_to_msg(instance, i).track_id for i, instance in enumerate(frame.instances)] == [17, -1]


@given(st.integers(0, 2**63 - 1))
def test_stamps_round_trip_in_nanoseconds(ns):
    stamp = stamp_from_ns(ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert stamp_to_ns(stamp) == ns


def test_intrinsics_from_camera_info():
    info = CameraInfo(k=[900.0, 0.0, 405.0, 0.0, 910.0, 540.0, 0.0, 0.0, 1.0])
    assert intrinsics_from(info) == Intrinsics(fx=900.0, fy=910.0, cx=405.0, cy=540.0)
    assert intrinsics_from(CameraInfo()) is None, "an all-zero K means uncalibrated"
    assert intrinsics_from(CameraInfo(k=[900.0, 0, 405.0, 0, 0.0, 540.0, 0, 0, 1.0])) is None
    assert intrinsics_from(CameraInfo(k=[0.0, 0, 405.0, 0, 900.0, 540.0, 0, 0, 1.0])) is None
    assert intrinsics_from(CameraInfo(k=[1.0, 0, 0.5, 0, 1.0, 0.5, 0, 0, 1.0])) == Intrinsics(1.0, 1.0, 0.5, 0.5)


def test_raw_and_compressed_frames_decode_and_headers_are_checked(zidane):
    import cv2

    header = Header(frame_id="camera")
    raw = array_to_image(zidane, "bgr8", header)
    assert (raw.height, raw.width, raw.step, raw.header.frame_id) == (720, 1280, 1280 * 3, "camera")
    check_before_decoding(raw)
    assert np.array_equal(image_to_bgr(raw), zidane)
    _, png = cv2.imencode(".png", zidane)
    compressed = CompressedImage(format="png", data=png.tobytes())
    check_before_decoding(compressed)
    assert np.array_equal(image_to_bgr(compressed), zidane)
    with pytest.raises(ImageDecodeError, match=r"^compressed image has no data$"):
        check_before_decoding(CompressedImage(format="png"))
    raw.step = 100
    with pytest.raises(ImageDecodeError, match="shorter than a row"):
        check_before_decoding(raw)


def test_an_array_becomes_an_image_of_its_size():
    crop = np.ascontiguousarray(np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)[:, 2:6])
    msg = array_to_image(crop, "rgb8")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 4, 12, "rgb8")
    assert bytes(msg.data) == crop.tobytes()


@given(
    mask=arrays(bool, st.tuples(st.integers(0, 7), st.integers(0, 7))),
    offset=st.tuples(st.integers(0, 50), st.integers(0, 50)),
    score=st.floats(0.0, 1.0, width=32),
    class_id=st.integers(0, 79),
    track_id=st.integers(-1, 10_000),
)
def test_an_instance_survives_its_message_field_for_field(mask, offset, score, class_id, track_id):
    box = (offset[0] + 0.25, offset[1] + 0.5, offset[0] + mask.shape[1] + 0.75, offset[1] + mask.shape[0] + 1.0)
    instance = Instance(box, score, class_id, f"class {class_id}", offset, mask, track_id)
    back = msg_to_instance(instance_to_msg(instance, 3))
    assert back.box == box and back.score == score and back.class_id == class_id
    assert back.class_name == f"class {class_id}" and back.mask_offset == offset and back.track_id == track_id
    assert back.mask.shape == mask.shape and np.array_equal(back.mask, mask) and back.area == instance.area


def test_a_frame_survives_its_message_with_stamp_and_frame_id():
    frame = _tracked_frame()
    header = Header(stamp=stamp_from_ns(7_000_000_042), frame_id="front")
    back = msg_to_mask_set(mask_set_to_msg(frame, header, processing_ms=3.5))
    assert (back.height, back.width, back.stamp_ns, back.frame_id) == (20, 30, 7_000_000_042, "front")
    assert [i.track_id for i in back.instances] == [17, -1]
    assert np.array_equal(back.full_masks(), frame.full_masks())


def test_a_single_row_depth_image_and_a_frame_without_timing():
    metres = depth_to_metres(_depth_msg(np.array([[1000, 2500]], np.uint16), "16UC1", big_endian=False))
    assert metres.tolist() == [[1.0, 2.5]]
    assert mask_set_to_msg(_tracked_frame(), Header()).processing_ms == 0.0


def test_a_view_into_a_larger_array_becomes_a_dense_image():
    """A crop of a frame is not contiguous; the message's step must describe the bytes it carries."""
    frame = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crop = frame[:, 2:6]
    msg = array_to_image(crop, "bgr8")
    assert (msg.height, msg.width, msg.step) == (6, 4, 12)
    assert np.array_equal(image_to_bgr(msg), crop)
