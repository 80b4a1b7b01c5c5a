"""One camera's channel in this process: what each of its publishers sends for a segmented frame,
and what its arrival checks and run-time settings do.

A real lifecycle node holds the channel; its outputs go over its own lifecycle publishers to
subscriptions in the same rclpy context. Frames carry the bus photo's recorded segmentation
(the network is not the point here), a flat depth frame 5 m away and a pinhole camera_info;
the channel's tracker (ByteTrack), obstacles and follower run for real.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from geometry_msgs.msg import Point, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_msgs.msg import FollowedArray, FollowedObject, InstanceArray, ObstacleArray
from fastsam_msgs.srv import PointPrompt
from fastsam_ros.core.frame_mailbox import LatestFrameMailbox
from fastsam_ros.core.health import HealthMonitor
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.obstacles import Intrinsics, find_obstacles, obstacle_cloud, roi_mask, roi_polygon
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.prompts import PromptLimits
from fastsam_ros.core.rendering import draw_overlay
from fastsam_ros.core.settings import CameraSettings
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.camera_channel import CameraChannel, ReceivedFrame, followed_labels
from fastsam_ros.ros.convert import array_to_image, mask_set_to_msg, stamp_from_ns

DEPTH_M = 5.0
INTRINSICS = Intrinsics(fx=600.0, fy=550.0, cx=405.0, cy=540.0)
SETTINGS = CameraSettings(max_pixels=7680 * 4320, depth_slop_s=0.05, prompt_limits=PromptLimits())
PERSON_MIDDLE = 3
"""The person between the other two in the bus photo, inside the obstacle region."""
OUTPUTS = {
    "instances": InstanceArray,
    "obstacles": ObstacleArray,
    "markers": MarkerArray,
    "label_image": Image,
    "debug_image": Image,
    "obstacle_cloud": PointCloud2,
    "followed": FollowedArray,
    "followed_pose": PoseStamped,
}


def _header(stamp_ns: int) -> Header:
    return Header(stamp=stamp_from_ns(stamp_ns), frame_id="front_optical")


def _depth(stamp_ns: int, shape: tuple[int, int], metres: float = DEPTH_M) -> Image:
    return array_to_image(np.full(shape, metres, np.float32), "32FC1", _header(stamp_ns))


def _camera_info(width: int, height: int) -> CameraInfo:
    k = [INTRINSICS.fx, 0.0, INTRINSICS.cx, 0.0, INTRINSICS.fy, INTRINSICS.cy, 0.0, 0.0, 1.0]
    return CameraInfo(header=_header(0), width=width, height=height, k=k)


class Rig:
    """A lifecycle node with two cameras: 'front', every output listened to, and 'rear', only its instances."""

    def __init__(self, ros_graph, text_backends: TextBackends, bus_masks: MaskSet, bus: np.ndarray) -> None:
        self.graph, self.bus_masks, self.bus = ros_graph, bus_masks, bus
        self.node = LifecycleNode("channel_test", namespace=ros_graph.namespace, context=ros_graph.context)
        self.health = HealthMonitor()
        # Segmentation happens in the node's batch: a channel runs only what follows it, so its
        # perception needs no engine.
        self.front = CameraChannel(
            self.node,
            "front",
            False,
            self.health,
            Perception(None, "bytetrack"),
            text_backends,
            SETTINGS,
            ("bytetrack", ""),
        )
        self.rear = CameraChannel(
            self.node, "rear", False, self.health, Perception(None), text_backends, SETTINGS, ("none", "")
        )
        self.node.trigger_configure()
        self.node.trigger_activate()
        ros_graph.add(self.node)
        self.mailbox: LatestFrameMailbox[ReceivedFrame] = LatestFrameMailbox()
        for channel in (self.front, self.rear):
            channel.start(self.mailbox, qos_profile_sensor_data, ReentrantCallbackGroup())
        self.received = {
            name: ros_graph.listen(
                kind,
                f"{ros_graph.namespace}/channel_test/front/{name}",
                getattr(self.front, _publisher(name)).get_subscription_count,
            )
            for name, kind in OUTPUTS.items()
        }
        self.rear_instances = ros_graph.listen(
            InstanceArray,
            f"{ros_graph.namespace}/channel_test/rear/instances",
            self.rear.instances_pub.get_subscription_count,
        )

    def frame(self, stamp_ns: int, camera: CameraChannel | None = None) -> tuple[ReceivedFrame, np.ndarray, MaskSet]:
        """The bus photo as a camera message of this stamp, decoded, with its segmentation."""
        camera = camera or self.front
        msg = array_to_image(self.bus, "bgr8", _header(stamp_ns))
        frame = ReceivedFrame(msg, time.perf_counter())
        masks = dataclasses.replace(self.bus_masks, stamp_ns=stamp_ns, frame_id="front_optical")
        return frame, camera.decode(frame), masks

    def publish(self, stamp_ns: int, wait_for: tuple[str, ...] = ("instances", "followed")) -> float:
        """Publish a frame of this stamp and wait until each output in wait_for has sent that frame."""
        latency_ms = self.front.publish(*self.frame(stamp_ns))
        stamp = (stamp_ns // 10**9, stamp_ns % 10**9, "front_optical")
        for name in wait_for:
            self.graph.spin_until(
                lambda name=name: self.received[name] and _stamp(self.received[name][-1]) == stamp, f"~/front/{name}"
            )
        return latency_ms

    def last(self, name: str):
        return self.received[name][-1]

    def close(self) -> None:
        for channel in (self.front, self.rear):
            channel.stop()
            channel.destroy()
        self.graph.executor.remove_node(self.node)
        self.node.destroy_node()


def _publisher(name: str) -> str:
    """The channel's attribute holding the publisher of an output."""
    return {"label_image": "label_pub", "debug_image": "debug_pub", "obstacle_cloud": "cloud_pub"}.get(
        name, f"{name}_pub"
    )


@pytest.fixture(scope="module")
def text_backends(loaded_model) -> TextBackends:
    values = {"text_backend": "class_names", "runtime": "onnxruntime", "clip_model": "", "clip_pretrained": ""}
    backends = TextBackends(loaded_model.class_names, values, None)
    backends.wait_loaded()
    return backends


@pytest.fixture(scope="module")
def rig(ros_graph, text_backends, bus_masks, bus):
    made = Rig(ros_graph, text_backends, bus_masks, bus)
    yield made
    made.close()


def _stamp(msg) -> tuple[int, int, str]:
    if isinstance(msg, MarkerArray):
        assert len({(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for m in msg.markers}) == 1
        msg = msg.markers[0]
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


def _expected_obstacles(rig: Rig, depth: bool = True):
    masks = rig.front.latest.masks
    settings = rig.front.perception.obstacle_settings
    roi = roi_mask(settings.roi, masks.width, masks.height)
    metres = np.full((masks.height, masks.width), DEPTH_M, np.float32) if depth else None
    return find_obstacles(masks, settings, roi, metres, INTRINSICS if depth else None)


def test_a_frame_without_depth_publishes_its_instances_and_followed_with_its_header(rig):
    latency_ms = rig.publish(1_000_000_123)
    instances = rig.last("instances")
    assert _stamp(instances) == (1, 123, "front_optical")
    assert (instances.width, instances.height) == (810, 1080)
    assert instances.processing_ms == pytest.approx(latency_ms, rel=1e-6) and latency_ms > 0
    latest = rig.front.latest
    assert _stamp(latest) == (1, 123, "front_optical") and latest.masks.stamp_ns == 1_000_000_123
    assert list(instances.instances) == list(mask_set_to_msg(latest.masks, latest.header).instances)
    assert list(latest.instance_msgs) == list(instances.instances)
    assert len(instances.instances) == len(rig.bus_masks)
    assert [m.track_id for m in instances.instances] == [t.track_id for t in latest.masks.instances]
    assert all(m.track_id >= 1 for m in instances.instances), "the channel's tracker numbered them"
    assert np.array_equal(latest.image, rig.bus)
    followed = rig.last("followed")
    assert _stamp(followed) == (1, 123, "front_optical") and list(followed.objects) == []
    assert rig.rear.latest is None and rig.rear_instances == [], "each camera publishes on its own topics"


def test_every_listened_output_carries_the_frame_header_and_its_content(rig):
    shape = rig.bus.shape[:2]
    rig.front._on_camera_info(_camera_info(shape[1], shape[0]))
    stamp = 2_000_000_000
    rig.front._on_depth(_depth(stamp + 10_000_000, shape))
    outputs = ("instances", "obstacles", "markers", "label_image", "debug_image", "obstacle_cloud")
    rig.publish(stamp, outputs)
    for name in outputs:
        assert _stamp(rig.last(name)) == (2, 0, "front_optical"), name
    masks = rig.front.latest.masks
    expected = _expected_obstacles(rig)
    assert any(o.index == PERSON_MIDDLE for o in expected)
    obstacles = rig.last("obstacles")
    assert obstacles.depth_paired
    assert [o.instance_id for o in obstacles.obstacles] == [o.index for o in expected]
    assert [o.distance for o in obstacles.obstacles] == pytest.approx([DEPTH_M] * len(expected))
    assert [(o.centroid.x, o.centroid.y, o.centroid.z) for o in obstacles.obstacles] == [
        pytest.approx(o.centroid, rel=1e-5) for o in expected
    ]
    markers = rig.last("markers").markers
    assert markers[0].action == Marker.DELETEALL
    assert sorted(m.id for m in markers if m.ns == "obstacles") == list(range(len(expected)))
    label = rig.last("label_image")
    assert (label.encoding, label.width, label.height) == ("mono16", 810, 1080)
    labels = np.frombuffer(label.data, np.uint16).reshape(1080, 810)
    assert np.array_equal(labels, masks.label_image())
    debug = rig.last("debug_image")
    assert (debug.encoding, debug.width, debug.height) == ("bgr8", 810, 1080)
    settings = rig.front.perception.obstacle_settings
    overlay = draw_overlay(
        rig.bus, masks, obstacles=expected, roi=roi_polygon(settings.roi, masks.width, masks.height), followed={}
    )
    assert np.array_equal(np.frombuffer(debug.data, np.uint8).reshape(overlay.shape), overlay)
    cloud = rig.last("obstacle_cloud")
    depth = np.full(shape, DEPTH_M, np.float32)
    points = obstacle_cloud(masks, expected, depth, INTRINSICS, settings.cloud_decimation, settings.cloud_max_range)
    assert cloud.width * cloud.height == len(points) > 0
    assert np.allclose(np.frombuffer(cloud.data, np.float32).reshape(-1, 3), points)


def test_a_depth_frame_beyond_the_slop_is_not_paired_until_the_slop_grows(rig):
    shape = rig.bus.shape[:2]
    rig.front._on_camera_info(_camera_info(shape[1], shape[0]))
    stamp = 3_000_000_000
    rig.front._on_depth(_depth(stamp + 200_000_000, shape))
    rig.publish(stamp, ("obstacles",))
    unpaired = rig.last("obstacles")
    assert not unpaired.depth_paired and not any(o.has_distance for o in unpaired.obstacles)
    assert [o.instance_id for o in unpaired.obstacles] == [o.index for o in _expected_obstacles(rig, depth=False)]
    rig.front.apply(dataclasses.replace(SETTINGS, depth_slop_s=0.25))
    try:
        rig.publish(stamp + 1_000_000, ("obstacles",))
        assert rig.last("obstacles").depth_paired
    finally:
        rig.front.apply(SETTINGS)


def test_misaligned_depth_or_camera_info_gives_no_distance_or_no_3d(rig):
    height, width = rig.bus.shape[:2]
    stamp = 4_000_000_000
    rig.front._on_camera_info(_camera_info(width, height))
    rig.front._on_depth(_depth(stamp, (height // 2, width // 2)))
    rig.publish(stamp, ("obstacles",))
    assert not rig.last("obstacles").depth_paired
    rig.front._on_camera_info(_camera_info(width // 2, height // 2))
    rig.front._on_depth(_depth(stamp + 1, (height, width)))
    rig.publish(stamp + 1, ("obstacles", "markers"))
    obstacles = rig.last("obstacles")
    assert obstacles.depth_paired and all(o.has_distance and not o.has_centroid for o in obstacles.obstacles)
    assert [m.action for m in rig.last("markers").markers] == [Marker.DELETEALL], "no intrinsics, no 3D markers"


def test_a_followed_object_is_published_with_its_instance_position_and_pose(rig):
    height, width = rig.bus.shape[:2]
    rig.front._on_camera_info(_camera_info(width, height))
    rig.publish(4_900_000_000)
    masks = rig.front.latest.masks
    selection = rig.front.follower.follow(masks, PERSON_MIDDLE, rig.bus, "walker")
    try:
        for stamp in (5_000_000_000, 5_100_000_000):
            rig.front._on_depth(_depth(stamp, (height, width)))
            rig.publish(stamp, ("followed", "followed_pose", "markers", "debug_image"))
        followed = rig.last("followed")
        assert _stamp(followed) == (5, 100_000_000, "front_optical")
        [entry] = followed.objects
        assert (entry.selection_id, entry.name, entry.status) == (selection, "walker", FollowedObject.TRACKING)
        latest = rig.front.latest
        assert entry.instance == latest.instance_msgs[PERSON_MIDDLE]
        assert entry.track_id == latest.masks[PERSON_MIDDLE].track_id >= 1
        assert entry.has_position and entry.position.z == pytest.approx(DEPTH_M, abs=0.05)
        pose = rig.last("followed_pose")
        assert _stamp(pose) == (5, 100_000_000, "front_optical")
        position = pose.pose.position
        assert (position.x, position.y, position.z) == (entry.position.x, entry.position.y, entry.position.z)
        spheres = [m for m in rig.last("markers").markers if m.ns == "followed"]
        assert [(m.pose.position.x, m.pose.position.z) for m in spheres] == [(position.x, position.z)]
        texts = [m.text for m in rig.last("markers").markers if m.ns == "followed_labels"]
        assert texts == ["follow walker"]
        shown = followed_labels(latest.masks, rig.front.follower.update(latest.masks, rig.bus, 5_200_000_000, {}))
        assert shown == {PERSON_MIDDLE: "follow walker"}
    finally:
        rig.front.follower.unfollow(None)


def test_obstacles_are_computed_only_while_someone_listens_to_what_needs_them(rig):
    rear = rig.rear
    assert not rear.wants_obstacles(), "nobody listens to the rear camera's obstacles"
    received = rig.graph.listen(
        FollowedArray, f"{rig.graph.namespace}/channel_test/rear/followed", rear.followed_pub.get_subscription_count
    )
    assert not rear.wants_obstacles(), "~/followed alone needs no obstacles while nothing is followed"
    rear.publish(*rig.frame(6_000_000_000, rear))
    rear.follower.follow(rear.latest.masks, PERSON_MIDDLE, rig.bus)
    try:
        assert rear.wants_obstacles(), "a followed object takes its 3D position from the obstacles"
    finally:
        rear.follower.unfollow(None)
    rig.graph.spin_until(lambda: received and rig.rear_instances, "the rear camera's outputs")
    assert _stamp(rig.rear_instances[-1]) == (6, 0, "front_optical")
    assert not rear.wants_obstacles()
    rig.graph.listen(
        Image, f"{rig.graph.namespace}/channel_test/rear/debug_image", rear.debug_pub.get_subscription_count
    )
    assert rear.wants_obstacles(), "the debug image draws the obstacles"


def test_frames_over_the_pixel_limit_are_refused_on_arrival_from_the_next_message_on(rig):
    small = array_to_image(np.zeros((48, 64, 3), np.uint8), "bgr8", _header(7_000_000_000))
    refused = rig.health.totals["rejected"]
    rig.front._on_image(small)
    assert set(rig.mailbox.take_all(timeout=1.0)) == {"front"}
    rig.front.apply(dataclasses.replace(SETTINGS, max_pixels=64 * 48 - 1))
    try:
        rig.front._on_image(small)
        assert rig.health.totals["rejected"] == refused + 1
        assert rig.mailbox.take_all(timeout=0.05) == {}
        assert rig.rear.settings.max_pixels == SETTINGS.max_pixels, "each camera has its own settings"
    finally:
        rig.front.apply(SETTINGS)


def test_the_prompt_limits_of_the_current_settings_apply(rig):
    rig.publish(8_000_000_000)
    request = PointPrompt.Request(points=[Point(x=300.0, y=600.0), Point(x=310.0, y=600.0)], labels=[1, 1])
    assert rig.front._prompts.point(request, PointPrompt.Response()).success
    rig.front.apply(dataclasses.replace(SETTINGS, prompt_limits=PromptLimits(max_points=1)))
    try:
        response = rig.front._prompts.point(request, PointPrompt.Response())
        assert not response.success and "max_prompt_points" in response.message
    finally:
        rig.front.apply(SETTINGS)


def test_switching_trackers_drops_the_selections_track_ids_and_keeping_one_does_not(rig):
    rig.publish(9_000_000_000)
    masks = rig.front.latest.masks
    rig.front.follower.follow(masks, PERSON_MIDDLE, rig.bus)
    try:
        track_id = masks[PERSON_MIDDLE].track_id
        rig.front.set_tracker("bytetrack", "")
        assert rig.front.follower.track_ids() == {track_id}
        rig.front.set_tracker("botsort", "")
        assert rig.front.follower.track_ids() == frozenset()
    finally:
        rig.front.set_tracker("bytetrack", "")
        rig.front.follower.unfollow(None)
