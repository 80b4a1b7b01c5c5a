"""Message conversions that need no ROS graph: depth images, obstacles, frames, stamps."""

from __future__ import annotations

import math
import re
import struct

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from fastsam_ros.core.follow import FollowedObject, FollowStatus
from fastsam_ros.core.image_codec import ImageDecodeError
from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.obstacles import DepthError, Intrinsics, Obstacle
from fastsam_ros.ros.convert import (
    array_to_image,
    check_before_decoding,
    check_depth_header,
    depth_to_metres,
    followed_pose,
    followed_to_msg,
    image_to_bgr,
    instance_to_msg,
    intrinsics_from,
    mask_set_to_msg,
    msg_to_instance,
    msg_to_mask_set,
    obstacles_to_msg,
    points_to_cloud,
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


def test_instance_messages_are_numbered_in_frame_order_and_carry_their_mask_area():
    msg = mask_set_to_msg(_tracked_frame(), Header())
    assert [(instance.id, instance.area) for instance in msg.instances] == [(0, 19), (1, 20)]


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
    tracked_low_score=st.booleans(),
)
def test_an_instance_survives_its_message_field_for_field(mask, offset, score, class_id, track_id, tracked_low_score):
    box = (offset[0] + 0.25, offset[1] + 0.5, offset[0] + mask.shape[1] + 0.75, offset[1] + mask.shape[0] + 1.0)
    instance = Instance(box, score, class_id, f"class {class_id}", offset, mask, track_id, tracked_low_score)
    back = msg_to_instance(instance_to_msg(instance, 3))
    assert back.box == box and back.score == score and back.class_id == class_id
    assert back.tracked_low_score == tracked_low_score
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


_DEPTH_BYTES = {"16UC1": 2, "32FC1": 4}


@given(
    encoding=st.sampled_from(["16UC1", "32FC1", "mono16"]),
    height=st.integers(0, 4),
    width=st.integers(0, 4),
    step=st.integers(0, 20),
    size_change=st.sampled_from([0, 0, -1, 1]),
    max_pixels=st.integers(0, 20),
)
@example(encoding="16UC1", height=2, width=4, step=7, size_change=0, max_pixels=20)
@example(encoding="16UC1", height=2, width=4, step=8, size_change=0, max_pixels=8)
@example(encoding="32FC1", height=3, width=3, step=12, size_change=0, max_pixels=8)
def test_a_depth_header_is_refused_exactly_when_its_fields_cannot_describe_its_pixels(
    encoding, height, width, step, size_change, max_pixels
):
    size = max(step * height + size_change, 0)
    msg = Image(encoding=encoding, height=height, width=width, step=step, data=bytes(size))
    if encoding not in _DEPTH_BYTES:
        reason = "unsupported depth encoding 'mono16' (use 16UC1 millimetres or 32FC1 metres)"
    elif height * width > max_pixels:
        reason = f"depth image {width}x{height} exceeds the {max_pixels}-pixel limit (max_pixels)"
    elif height == 0 or width == 0 or step < width * _DEPTH_BYTES[encoding] or size != step * height:
        reason = f"malformed depth image {width}x{height}, step {step}, {size} bytes"
    else:
        check_depth_header(msg, max_pixels)
        return
    with pytest.raises(DepthError) as refused:
        check_depth_header(msg, max_pixels)
    assert str(refused.value) == reason


def test_depth_to_metres_applies_the_pixel_limit_it_is_given():
    msg = _depth_msg(np.full((2, 4), 1000, np.uint16), "16UC1", big_endian=False)
    assert depth_to_metres(msg, max_pixels=8).tolist() == [[1.0] * 4] * 2
    with pytest.raises(DepthError) as refused:
        depth_to_metres(msg, max_pixels=7)
    assert str(refused.value) == "depth image 4x2 exceeds the 7-pixel limit (max_pixels)"


def _small_frames() -> dict[str, Image | CompressedImage]:
    import cv2

    pixels = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    raw = Image(height=3, width=4, encoding="bgr8", step=12, data=pixels.tobytes())
    compressed = CompressedImage(format="png", data=cv2.imencode(".png", pixels)[1].tobytes())
    return {"raw": raw, "compressed": compressed}


@pytest.mark.parametrize("kind", ["raw", "compressed"])
def test_raw_and_compressed_frames_are_held_to_the_pixel_limit_they_are_given(kind):
    msg = _small_frames()[kind]
    check_before_decoding(msg, max_pixels=12)
    assert np.array_equal(image_to_bgr(msg, max_pixels=12), np.arange(36, dtype=np.uint8).reshape(3, 4, 3))
    for refuse in (check_before_decoding, image_to_bgr):
        with pytest.raises(ImageDecodeError) as refused:
            refuse(msg, max_pixels=11)
        assert str(refused.value) == "image 4x3 exceeds the 11-pixel limit (parameter max_pixels)"


def _track(track_id: int, time_to_contact: float | None) -> ObstacleTrack:
    return ObstacleTrack(
        track_id=track_id,
        position=(1.0, -2.0, 3.5),
        velocity=(0.25, 0.5, -0.75),
        position_variance=(0.01, 0.02, 0.03),
        velocity_variance=(0.1, 0.2, 0.3),
        age_s=1.5,
        time_to_contact=time_to_contact,
    )


def _xyz(value) -> tuple[float, float, float]:
    return (value.x, value.y, value.z)


def test_obstacles_carry_their_extent_and_the_motion_of_their_own_track():
    """Track id 0 is a track like any other; -1 means untracked, whatever the dict holds."""
    mask = np.ones((2, 2), bool)
    instances = tuple(
        Instance((0.0, 0.0, 2.0, 2.0), 0.5, 0, "thing", (0, 0), mask, track_id=track_id) for track_id in (0, 17, -1, 5)
    )
    frame = MaskSet(10, 10, instances)
    obstacles = [Obstacle(0, 1.0, 2.0, (0.0, 0.0, 2.0), ((-1.0, -2.0, 3.0), (4.0, 5.0, 6.0)))]
    obstacles += [Obstacle(index, 1.0) for index in (1, 2, 3)]
    tracks = {0: _track(0, 4.0), 17: _track(17, None), -1: _track(-1, 9.0)}
    closing, steady, untracked, unfollowed = obstacles_to_msg(Header(), frame, obstacles, True, tracks).obstacles
    assert closing.has_extent and _xyz(closing.extent_min) == (-1.0, -2.0, 3.0)
    assert _xyz(closing.extent_max) == (4.0, 5.0, 6.0)
    assert not steady.has_extent and _xyz(steady.extent_max) == (0.0, 0.0, 0.0)
    for item in (closing, steady):
        assert item.has_motion and _xyz(item.position) == (1.0, -2.0, 3.5)
        assert _xyz(item.velocity) == (0.25, 0.5, -0.75)
        assert _xyz(item.position_variance) == (0.01, 0.02, 0.03)
        assert _xyz(item.velocity_variance) == (0.1, 0.2, 0.3)
        assert item.age == 1.5
    assert closing.has_time_to_contact and closing.time_to_contact == 4.0
    assert not steady.has_time_to_contact and steady.time_to_contact == 0.0
    for item in (untracked, unfollowed):
        assert not item.has_motion and not item.has_time_to_contact and item.age == 0.0
        assert _xyz(item.position) == (0.0, 0.0, 0.0) and _xyz(item.velocity) == (0.0, 0.0, 0.0)
    assert not any(item.has_motion for item in obstacles_to_msg(Header(), frame, obstacles, True).obstacles)


_coordinates = st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False)] * 3)


@given(position=_coordinates, velocity=_coordinates, position_variance=_coordinates, velocity_variance=_coordinates)
@example(
    position=(1.0, 2.0, 3.0),
    velocity=(4.0, 5.0, 6.0),
    position_variance=(7.0, 8.0, 9.0),
    velocity_variance=(10.0, 11.0, 12.0),
)
def test_each_axis_of_a_track_lands_in_its_own_field(position, velocity, position_variance, velocity_variance):
    track = ObstacleTrack(3, position, velocity, position_variance, velocity_variance, 0.5, None)
    instance = Instance((0.0, 0.0, 1.0, 1.0), 0.5, 0, "thing", (0, 0), np.ones((1, 1), bool), track_id=3)
    (item,) = obstacles_to_msg(Header(), MaskSet(4, 4, (instance,)), [Obstacle(0, 1.0)], False, {3: track}).obstacles
    assert _xyz(item.position) == position and _xyz(item.velocity) == velocity
    assert _xyz(item.position_variance) == position_variance
    assert _xyz(item.velocity_variance) == velocity_variance


def test_a_cloud_of_two_points_has_the_documented_byte_layout():
    header = Header(stamp=Time(sec=1000, nanosec=500), frame_id="camera_optical")
    msg = points_to_cloud(np.array([[1.0, -2.0, 0.5], [3.25, np.nan, 8.0]]), header)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("camera_optical", 1000, 500)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
    ]
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_bigendian) == (1, 2, 12, 24, False)
    assert bytes(msg.data) == struct.pack("<6f", 1.0, -2.0, 0.5, 3.25, math.nan, 8.0)
    assert not msg.is_dense, "a NaN coordinate is an invalid point"


@pytest.mark.parametrize("shape", [(3, 4), (12,), (2, 3, 1), (4, 2)])
def test_an_array_that_is_not_n_by_3_is_refused_not_reshaped(shape):
    message = f"a cloud needs an (N, 3) array of points, got shape {shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        points_to_cloud(np.zeros(shape), Header())


def test_every_cloud_has_field_descriptions_of_its_own():
    """A receiver that edits one message's fields must not change the next cloud."""
    first = points_to_cloud(np.zeros((1, 3)), Header())
    first.fields[0].name = "changed"
    first.fields.append(first.fields[0])
    second = points_to_cloud(np.zeros((1, 3)), Header())
    assert [f.name for f in second.fields] == ["x", "y", "z"]


def _cloud_points(msg) -> np.ndarray:
    """The points read back from the message's own field table, as a PointCloud2 reader does."""
    order = ">" if msg.is_bigendian else "<"
    layout = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [order + "f4"] * len(msg.fields),
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    records = np.frombuffer(bytes(msg.data), dtype=layout, count=msg.width * msg.height)
    return np.stack([records["x"], records["y"], records["z"]], axis=-1).astype(np.float64)


@given(
    points=arrays(np.float64, st.tuples(st.integers(0, 6), st.just(3)), elements=st.floats(width=32)),
    dtype=st.sampled_from(["<f8", ">f8", "<f4", ">f4"]),
    fortran=st.booleans(),
    stamp=st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999)),
)
@example(points=np.array([[1.0, 2.0, 3.0]]), dtype=">f8", fortran=False, stamp=(1, 2))
@example(points=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), dtype="<f8", fortran=True, stamp=(3, 4))
def test_any_array_of_points_becomes_an_unorganised_little_endian_float32_cloud(points, dtype, fortran, stamp):
    given_points = np.asfortranarray(points, dtype) if fortran else np.ascontiguousarray(points, dtype)
    header = Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id="optical")
    msg = points_to_cloud(given_points, header)
    count = len(points)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("optical", *stamp)
    assert (msg.height, msg.width, msg.point_step) == (1, count, 12)
    assert msg.row_step == len(msg.data) == 12 * count
    assert msg.is_bigendian is False, "little-endian, and saying so"
    assert np.array_equal(_cloud_points(msg), points, equal_nan=True)
    assert msg.is_dense is all(math.isfinite(value) for value in points.flat)


def _followed_at(position: tuple[float, float, float] | None) -> FollowedObject:
    motion = (
        None if position is None else ObstacleTrack(4, position, (0.0, 0.0, 0.0), (0.0,) * 3, (0.0,) * 3, 1.0, None)
    )
    return FollowedObject(1, "x", FollowStatus.TRACKING, 0, 4, None, 0, (0.0, 0.0, 1.0, 1.0), motion)


@given(st.tuples(*[st.floats(-20, 20, allow_nan=False) for _ in range(3)]))
@example((1.0, 0.0, 0.0))
@example((-1.0, 0.0, 0.0))
@example((0.0, 0.0, 0.0))
@example((0.3, -0.2, 2.5))
def test_the_followed_pose_sits_on_the_object_and_its_x_axis_points_at_it(position):
    pose = followed_pose(Header(frame_id="cam"), _followed_at(position))
    assert pose.header.frame_id == "cam"
    assert (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) == pytest.approx(position)
    q = pose.pose.orientation
    w, v = q.w, np.array([q.x, q.y, q.z])
    assert w * w + v @ v == pytest.approx(1.0)
    x_axis = np.array([1.0, 0.0, 0.0])
    rotated = x_axis + 2 * w * np.cross(v, x_axis) + 2 * np.cross(v, np.cross(v, x_axis))
    norm = float(np.linalg.norm(position))
    expected = np.asarray(position) / norm if norm > 0 else x_axis
    assert rotated == pytest.approx(expected, abs=1e-6)


def test_followed_objects_keep_their_order_and_every_field_and_a_seen_one_reuses_its_instance_message():
    frame = _tracked_frame()
    header = Header(stamp=stamp_from_ns(9_000_000_007), frame_id="camera")
    instance_msgs = tuple(mask_set_to_msg(frame, header).instances)
    motion = ObstacleTrack(17, (0.5, -1.25, 3.0), (0.25, 0.125, -2.0), (0.0,) * 3, (0.0,) * 3, 2.0, None)
    followed = [
        FollowedObject(
            7,
            "bus",
            FollowStatus.TRACKING,
            2_500_000_001,
            17,
            frame.instances[1],
            9_000_000_007,
            (10.0, 0.0, 15.0, 4.0),
            motion,
        ),
        FollowedObject(3, "", FollowStatus.OCCLUDED, 8_000_000_003, 9, None, 7_999_999_999, (1.25, 2.5, 3.75, 5.0)),
        FollowedObject(4, "cup", FollowStatus.LOST, 1_000_000_000, -1, None, 999_999_999, (0.0, 1.0, 2.0, 3.0)),
        FollowedObject(
            5,
            "person",
            FollowStatus.REACQUIRED,
            9_000_000_007,
            4,
            frame.instances[0],
            9_000_000_007,
            (1.5, 2.5, 6.0, 6.5),
        ),
    ]
    msg = followed_to_msg(header, frame, followed, instance_msgs)
    assert (stamp_to_ns(msg.header.stamp), msg.header.frame_id) == (9_000_000_007, "camera")
    assert [(o.selection_id, o.name, o.track_id, o.status) for o in msg.objects] == [
        (7, "bus", 17, msg.objects[0].TRACKING),
        (3, "", 9, msg.objects[0].OCCLUDED),
        (4, "cup", -1, msg.objects[0].LOST),
        (5, "person", 4, msg.objects[0].REACQUIRED),
    ]
    assert [(stamp_to_ns(o.since), stamp_to_ns(o.last_seen)) for o in msg.objects] == [
        (2_500_000_001, 9_000_000_007),
        (8_000_000_003, 7_999_999_999),
        (1_000_000_000, 999_999_999),
        (9_000_000_007, 9_000_000_007),
    ]
    bus, occluded, lost, person = msg.objects
    assert bus.instance == instance_msgs[1] and person.instance == instance_msgs[0]
    assert bus.has_position and not occluded.has_position and not person.has_position
    assert (bus.position.x, bus.position.y, bus.position.z) == (0.5, -1.25, 3.0)
    assert (bus.velocity.x, bus.velocity.y, bus.velocity.z) == (0.25, 0.125, -2.0)
    for unseen, box in ((occluded, (1.25, 2.5, 3.75, 5.0)), (lost, (0.0, 1.0, 2.0, 3.0))):
        assert unseen.instance.track_id == unseen.track_id
        assert (unseen.instance.box.x1, unseen.instance.box.y1, unseen.instance.box.x2, unseen.instance.box.y2) == box
        assert (unseen.instance.mask_width, unseen.instance.mask_height, len(unseen.instance.mask_runs)) == (0, 0, 0)
    assert not followed_to_msg(header, frame, [], instance_msgs).objects


def test_no_pose_without_a_3d_position():
    assert followed_pose(Header(), _followed_at(None)) is None
