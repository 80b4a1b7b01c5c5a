"""Conversions between ROS messages and the core's arrays and MaskSets."""

from __future__ import annotations

import math
from array import array

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from fastsam_msgs.msg import BoundingBox, FollowedArray, InstanceArray, ObstacleArray
from fastsam_msgs.msg import FollowedObject as FollowedObjectMsg
from fastsam_msgs.msg import Instance as InstanceMsg
from fastsam_msgs.msg import Obstacle as ObstacleMsg
from fastsam_ros.core.follow import FollowedObject, FollowStatus
from fastsam_ros.core.image_codec import (
    MAX_PIXELS,
    check_raw,
    compressed_size,
    decode_compressed,
    decode_raw,
)
from fastsam_ros.core.mask_encoding import decode_runs, encode_runs
from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.obstacles import DepthError, Intrinsics, Obstacle, depth_in_metres, unsupported_depth_encoding

_DEPTH_DTYPES = {"16UC1": np.dtype("<u2"), "32FC1": np.dtype("<f4")}


def stamp_to_ns(stamp: Time) -> int:
    """A message stamp as integer nanoseconds, the core's time unit."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def stamp_from_ns(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def image_to_bgr(msg: Image | CompressedImage, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """BGR pixels of a raw or compressed image; raises ImageDecodeError."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.data, max_pixels)
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, max_pixels)


def check_before_decoding(msg: Image | CompressedImage, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a frame before any decoding or copy: a raw frame from its fields, a compressed one
    from the size its own header declares; raises ImageDecodeError."""
    if isinstance(msg, CompressedImage):
        compressed_size(msg.data, max_pixels)
        return
    check_raw(msg.encoding, msg.height, msg.width, msg.step, len(msg.data), max_pixels)


def message_bytes(msg: Image | CompressedImage) -> int:
    return len(msg.data)


def check_depth_header(msg: Image, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a depth frame from its fields alone; raises DepthError."""
    dtype = _DEPTH_DTYPES.get(msg.encoding)
    if dtype is None:
        raise unsupported_depth_encoding(msg.encoding)
    if msg.height * msg.width > max_pixels:
        raise DepthError(f"depth image {msg.width}x{msg.height} exceeds the {max_pixels}-pixel limit (max_pixels)")
    row_bytes = msg.width * dtype.itemsize
    if msg.height == 0 or msg.width == 0 or msg.step < row_bytes or len(msg.data) != msg.step * msg.height:
        raise DepthError(f"malformed depth image {msg.width}x{msg.height}, step {msg.step}, {len(msg.data)} bytes")


def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image holding the array's pixels densely: a view into a larger array has the parent's row stride."""
    dense = np.ascontiguousarray(array)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = dense.shape[:2]
    msg.encoding = encoding
    msg.step = dense.strides[0]
    msg.data = dense.tobytes()
    return msg


def instance_to_msg(instance: Instance, index: int) -> InstanceMsg:
    msg = InstanceMsg()
    msg.id = index
    msg.track_id = instance.track_id
    msg.score = float(instance.score)
    msg.tracked_low_score = instance.tracked_low_score
    msg.class_id = instance.class_id
    msg.class_name = instance.class_name
    msg.box = BoundingBox(x1=instance.box[0], y1=instance.box[1], x2=instance.box[2], y2=instance.box[3])
    msg.area = instance.area
    msg.mask_x, msg.mask_y = instance.mask_offset
    msg.mask_height, msg.mask_width = instance.mask.shape
    # An array.array of the field's own type is taken as is; a list would be checked item by item.
    msg.mask_runs = array("I", encode_runs(instance.mask).tobytes())
    return msg


def mask_set_to_msg(masks: MaskSet, header: Header, processing_ms: float = 0.0) -> InstanceArray:
    msg = InstanceArray()
    msg.header = header
    msg.width, msg.height = masks.width, masks.height
    msg.processing_ms = float(processing_ms)
    msg.instances = [instance_to_msg(instance, index) for index, instance in enumerate(masks.instances)]
    return msg


def msg_to_instance(msg: InstanceMsg) -> Instance:
    """Inverse of instance_to_msg: the mask comes back bit for bit; raises MaskEncodingError."""
    mask = decode_runs(np.frombuffer(msg.mask_runs, dtype=np.uint32), msg.mask_height, msg.mask_width)
    return Instance(
        box=(msg.box.x1, msg.box.y1, msg.box.x2, msg.box.y2),
        score=msg.score,
        class_id=msg.class_id,
        class_name=msg.class_name,
        mask_offset=(msg.mask_x, msg.mask_y),
        mask=mask,
        track_id=msg.track_id,
        tracked_low_score=msg.tracked_low_score,
    )


def msg_to_mask_set(msg: InstanceArray) -> MaskSet:
    return MaskSet(
        height=msg.height,
        width=msg.width,
        instances=tuple(msg_to_instance(instance) for instance in msg.instances),
        stamp_ns=stamp_to_ns(msg.header.stamp),
        frame_id=msg.header.frame_id,
    )


def depth_to_metres(msg: Image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """float32 metres (NaN = no reading) from a 16UC1 (mm) or 32FC1 (m) image."""
    check_depth_header(msg, max_pixels)
    dtype = _DEPTH_DTYPES[msg.encoding]
    row_bytes = msg.width * dtype.itemsize
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = rows.copy().view(dtype.newbyteorder(">" if msg.is_bigendian else "<")).reshape(msg.height, msg.width)
    return depth_in_metres(pixels, msg.encoding)


def intrinsics_from(msg: CameraInfo) -> Intrinsics | None:
    fx, fy, cx, cy = msg.k[0], msg.k[4], msg.k[2], msg.k[5]
    return Intrinsics(fx, fy, cx, cy) if fx > 0 and fy > 0 else None


def obstacles_to_msg(
    header: Header,
    masks: MaskSet,
    obstacles: list[Obstacle],
    depth_paired: bool,
    tracks: dict[int, ObstacleTrack] | None = None,
) -> ObstacleArray:
    """One frame's obstacles; ``tracks`` (by track id) adds their filtered 3D motion."""
    tracks = tracks or {}
    msg = ObstacleArray(header=header, depth_paired=depth_paired)
    for obstacle in obstacles:
        instance = masks[obstacle.index]
        item = ObstacleMsg(
            instance_id=obstacle.index,
            track_id=instance.track_id,
            class_name=instance.class_name,
            score=float(instance.score),
            box=BoundingBox(x1=instance.box[0], y1=instance.box[1], x2=instance.box[2], y2=instance.box[3]),
            area=instance.area,
            roi_overlap=float(obstacle.overlap),
        )
        if obstacle.distance is not None:
            item.has_distance, item.distance = True, float(obstacle.distance)
        if obstacle.centroid is not None:
            item.has_centroid, item.centroid = True, _point(obstacle.centroid)
        if obstacle.extent is not None:
            item.has_extent = True
            item.extent_min, item.extent_max = _point(obstacle.extent[0]), _point(obstacle.extent[1])
        track = tracks.get(instance.track_id) if instance.track_id >= 0 else None
        if track is not None:
            item.has_motion = True
            item.position, item.velocity = _point(track.position), _vector(track.velocity)
            item.position_variance = _vector(track.position_variance)
            item.velocity_variance = _vector(track.velocity_variance)
            item.age = float(track.age_s)
            if track.time_to_contact is not None:
                item.has_time_to_contact, item.time_to_contact = True, float(track.time_to_contact)
        msg.obstacles.append(item)
    return msg


FOLLOW_STATUS = {
    FollowStatus.TRACKING: FollowedObjectMsg.TRACKING,
    FollowStatus.OCCLUDED: FollowedObjectMsg.OCCLUDED,
    FollowStatus.LOST: FollowedObjectMsg.LOST,
    FollowStatus.REACQUIRED: FollowedObjectMsg.REACQUIRED,
}


def followed_to_msg(
    header: Header, masks: MaskSet, followed: list[FollowedObject], instance_msgs: tuple[InstanceMsg, ...]
) -> FollowedArray:
    """One frame's followed selections; a seen object reuses its message from ~/instances (same id and mask)."""
    index_of = {id(instance): index for index, instance in enumerate(masks.instances)}
    msg = FollowedArray(header=header)
    for item in followed:
        entry = FollowedObjectMsg(
            selection_id=item.selection_id,
            name=item.name,
            track_id=item.track_id,
            status=FOLLOW_STATUS[item.status],
            since=stamp_from_ns(item.since_ns),
            last_seen=stamp_from_ns(item.last_seen_ns),
        )
        index = index_of.get(id(item.instance))
        if index is not None:
            entry.instance = instance_msgs[index]
        else:
            x1, y1, x2, y2 = item.last_box
            entry.instance = InstanceMsg(track_id=item.track_id, box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2))
        if item.motion is not None:
            entry.has_position = True
            entry.position, entry.velocity = _point(item.motion.position), _vector(item.motion.velocity)
        msg.objects.append(entry)
    return msg


def followed_pose(header: Header, followed: FollowedObject) -> PoseStamped | None:
    """Where a followed object is, in the camera frame, or None without a 3D position this frame.

    The pose's x axis points from the camera to the object, so that a goal made of it (Nav2's
    following, a simple controller) faces the object.
    """
    if followed.motion is None:
        return None
    position = np.asarray(followed.motion.position, dtype=np.float64)
    return PoseStamped(
        header=header, pose=Pose(position=_point(followed.motion.position), orientation=_facing(position))
    )


def _facing(direction: np.ndarray) -> Quaternion:
    """The rotation taking the x axis onto ``direction``: half-way quaternion (1 + x.d, x cross d)."""
    norm = float(np.linalg.norm(direction))
    if norm == 0.0:
        return Quaternion(w=1.0)
    dx, dy, dz = direction / norm
    if dx < -1.0 + 1e-9:
        return Quaternion(z=1.0, w=0.0)  # straight behind: half a turn about z
    w, y, z = 1.0 + dx, -dz, dy
    scale = math.sqrt(w * w + y * y + z * z)
    return Quaternion(x=0.0, y=y / scale, z=z / scale, w=w / scale)


def _point(xyz: tuple[float, float, float]) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _vector(xyz: tuple[float, float, float]) -> Vector3:
    return Vector3(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _xyz_fields() -> list[PointField]:
    """Fresh field descriptions for every cloud: a receiver may change one message's own."""
    return [PointField(name=axis, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, axis in enumerate("xyz")]


def points_to_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised (height 1) PointCloud2 of float32 x, y, z from an (N, 3) array, in the header's frame."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"a cloud needs an (N, 3) array of points, got shape {points.shape}")
    data = np.ascontiguousarray(points, dtype="<f4")
    return PointCloud2(
        header=header,
        height=1,
        width=len(data),
        fields=_xyz_fields(),
        is_bigendian=False,
        point_step=12,
        row_step=12 * len(data),
        data=data.tobytes(),
        is_dense=bool(np.isfinite(data).all()),
    )
