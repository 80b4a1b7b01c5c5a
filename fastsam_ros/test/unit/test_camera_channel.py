"""One camera's channel in this process: what each of its publishers sends for a segmented frame,
and what its arrival checks and run-time settings do.

A real lifecycle node holds the channel; its outputs go over its own lifecycle publishers to
subscriptions in the same rclpy context. Frames carry the bus photo's recorded segmentation
(the network is not the point here), a flat depth frame 5 m away and a pinhole camera_info;
the channel's tracker (ByteTrack), obstacles and follower run for real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest
from geometry_msgs.msg import Point, PoseStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_msgs.msg import FollowedArray, FollowedObject, InstanceArray, ObstacleArray
from fastsam_msgs.srv import FollowPoint, PointPrompt, TextPrompt
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
from fastsam_ros.ros.qos import SERVICE_QOS

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
            Perception("bytetrack"),
            text_backends,
            SETTINGS,
            ("bytetrack", ""),
        )
        self.rear = CameraChannel(
            self.node, "rear", False, self.health, Perception(), text_backends, SETTINGS, ("none", "")
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
        follow = FollowPoint.Request(points=[Point(x=300.0, y=600.0)], labels=[1], name="walker")
        assert rig.front._prompts.follow_point(follow, FollowPoint.Response()).success
        assert len(rig.front.follower) == 1, "the service follows with the channel's own follower"
        text = rig.front._prompts.text(TextPrompt.Request(texts=["bus"], top_k=1), TextPrompt.Response())
        assert text.success and [i.class_name for i in text.instances] == ["bus"], "with the node's text backends"
    finally:
        rig.front.apply(SETTINGS)
        rig.front.follower.unfollow(None)


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
        rig.publish(9_100_000_000)
        rig.front.set_tracker("botsort", "")
        assert rig.front.follower.track_ids() == {rig.front.latest.masks[PERSON_MIDDLE].track_id}, "kept: no switch"
    finally:
        rig.front.set_tracker("bytetrack", "")
        rig.front.follower.unfollow(None)


PUBLISHED = {
    "instances": (InstanceArray, 10),
    "label_image": (Image, 5),
    "debug_image": (Image, 5),
    "selection": (InstanceArray, 10),
    "obstacles": (ObstacleArray, 10),
    "markers": (MarkerArray, 5),
    "obstacle_cloud": (PointCloud2, 5),
    "followed": (FollowedArray, 10),
    "followed_pose": (PoseStamped, 10),
}
"""Every output of a camera and its history depth: images and clouds keep fewer, being large."""
SERVICES = ("prompt_point", "prompt_box", "prompt_text", "follow_point", "follow_box", "follow_text", "unfollow")


@contextlib.contextmanager
def _own_channel(
    ros_graph, text_backends, camera: str, compressed: bool
) -> Iterator[tuple[LifecycleNode, CameraChannel]]:
    """A channel on a node of its own, destroyed with the node when the test leaves."""
    node = LifecycleNode(f"wiring_{camera or 'single'}", namespace=ros_graph.namespace, context=ros_graph.context)
    try:
        yield (
            node,
            CameraChannel(
                node, camera, compressed, HealthMonitor(), Perception(), text_backends, SETTINGS, ("none", "")
            ),
        )
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("camera", "compressed"), [("front", True), ("", False)])
def test_a_channel_takes_and_offers_its_topics_and_services_under_its_camera_name(
    ros_graph, text_backends, camera, compressed
):
    with _own_channel(ros_graph, text_backends, camera, compressed) as (node, channel):
        prefix = camera + "/" if camera else ""
        inputs, outputs = f"{ros_graph.namespace}/{prefix}", f"{node.get_fully_qualified_name()}/{prefix}"
        published = {p.topic_name: (p.msg_type, p.qos_profile.depth) for p in node.publishers}
        assert {name: published.get(outputs + name) for name in PUBLISHED} == PUBLISHED

        def services() -> set[str]:
            return {node.resolve_service_name(s.srv_name) for s in node.services}

        node_services = services()
        mailbox: LatestFrameMailbox[ReceivedFrame] = LatestFrameMailbox()
        group = ReentrantCallbackGroup()
        channel.start(mailbox, qos_profile_sensor_data, group)
        image = CompressedImage if compressed else Image
        assert {s.topic_name: (s.msg_type, s.qos_profile.depth) for s in node.subscriptions} == {
            inputs + ("image/compressed" if compressed else "image"): (image, qos_profile_sensor_data.depth),
            inputs + "depth": (Image, 1),
            inputs + "camera_info": (CameraInfo, 1),
        }
        assert services() - node_services == {outputs + name for name in SERVICES}
        offered = [s for s in node.services if node.resolve_service_name(s.srv_name) not in node_services]
        assert all(s.callback_group is group and s.qos_profile == SERVICE_QOS for s in offered)
        [point] = [s for s in offered if s.srv_name.endswith("/prompt_point")]
        answer = point.callback(PointPrompt.Request(points=[Point(x=1.0, y=1.0)], labels=[1]), PointPrompt.Response())
        assert not answer.success and f"publishing on '{channel.image_topic}'" in answer.message
        before = time.perf_counter()
        frame = array_to_image(np.zeros((48, 64, 3), np.uint8), "bgr8", _header(1))
        channel._on_image(frame)
        [taken] = mailbox.take_all(timeout=1.0).values()
        assert taken.msg is frame and before <= taken.received <= time.perf_counter()
        channel.stop()
        assert list(node.subscriptions) == [] and services() == node_services
        channel._on_image(frame)
        assert mailbox.take_all(timeout=0.05) == {}, "a stopped channel takes no frame in"
        channel.destroy()
        assert not {p.topic_name for p in node.publishers} & {outputs + name for name in PUBLISHED}
        assert channel.latest is None


def test_a_channel_pairs_depth_within_the_slop_it_was_built_with_and_refuses_it_over_its_pixel_limit(
    ros_graph, text_backends, capfd
):
    with _own_channel(ros_graph, text_backends, "side", False) as (node, channel):
        ros_graph.listen(
            ObstacleArray,
            f"{node.get_fully_qualified_name()}/side/obstacles",
            channel.obstacles_pub.get_subscription_count,
        )
        shape = (48, 64)
        channel._on_depth(_depth(1_040_000_000, shape))
        assert channel._depth.match(1_000_000_000) is not None, "40 ms apart, within the 50 ms slop"
        channel._on_depth(_depth(2_060_000_000, shape))
        assert channel._depth.match(2_000_000_000) is None, "60 ms apart, beyond it"
        capfd.readouterr()
        channel.apply(dataclasses.replace(SETTINGS, max_pixels=64 * 48 - 1))
        for stamp in (3_000_000_000, 3_010_000_000):
            channel._on_depth(_depth(stamp, shape))
        assert channel._depth.match(3_000_000_000) is None, "over the camera's pixel limit: refused"
        logged = capfd.readouterr().err
        refusal = "camera 'side': depth frame refused: depth image 64x48 exceeds the 3071-pixel limit (max_pixels)"
        assert logged.count(refusal) == 1, logged


def test_refused_frames_are_counted_and_logged_with_their_reason_throttled(ros_graph, text_backends, capfd):
    with _own_channel(ros_graph, text_backends, "refusing", False) as (_node, channel):
        bad = array_to_image(np.zeros((48, 64, 3), np.uint8), "bgr8", _header(1))
        bad.encoding = "16UC1"
        channel._on_image(bad)
        channel._on_image(bad)
        assert channel._health.totals["rejected"] == 2
        logged = capfd.readouterr().err
        assert logged.count("camera 'refusing': frame refused: unsupported encoding '16UC1'") == 1, "throttled"


def test_each_depth_problem_is_logged_once_with_what_is_wrong(ros_graph, text_backends, bus_masks, bus, capfd):
    """The warnings docs/RELIABILITY.md promises, each throttled: a second frame with the same problem logs nothing."""
    with _own_channel(ros_graph, text_backends, "low", False) as (node, channel):
        node.trigger_configure()
        node.trigger_activate()
        height, width = bus.shape[:2]
        prefix = f"{node.get_fully_qualified_name()}/low/"
        ros_graph.listen(ObstacleArray, prefix + "obstacles", channel.obstacles_pub.get_subscription_count)
        ros_graph.listen(PointCloud2, prefix + "obstacle_cloud", channel.cloud_pub.get_subscription_count)

        def logged_for(stamps: tuple[int, ...], depth: Image | None = None) -> str:
            """What publishing these frames logged (with this depth frame paired first)."""
            capfd.readouterr()
            if depth is not None:
                channel._on_depth(depth)
            for stamp in stamps:
                msg = array_to_image(bus, "bgr8", _header(stamp))
                frame = ReceivedFrame(msg, time.perf_counter())
                channel.publish(frame, channel.decode(frame), dataclasses.replace(bus_masks, stamp_ns=stamp))
            return capfd.readouterr().err

        cloud = "camera 'low': ~/obstacle_cloud has subscribers but this frame has no usable depth and camera_info"
        early = logged_for((1_000_000_000, 1_001_000_000), _depth(1_200_000_000, (height, width)))
        assert (
            early.count("camera 'low': no depth frame within 0.05 s of the colour frame; obstacles have no distance")
            == 1
        )
        assert early.count("camera 'low': depth arrives but no camera_info yet; obstacles have no 3D centroid") == 1
        assert early.count(cloud + "; nothing published") == 1, early
        channel._on_camera_info(_camera_info(width // 2, height))
        half = logged_for((2_000_000_000, 2_001_000_000), _depth(2_000_000_000, (height // 2, width // 2)))
        assert half.count(f"camera 'low': depth {width // 2}x{height // 2} is not aligned with the colour frame ") == 1
        assert half.count(f"frame {width}x{height}; obstacles have no distance") == 1
        assert half.count(f"camera 'low': camera_info is for {width // 2}x{height}, the frame is {width}x{height}") == 1
        empty = logged_for((3_000_000_000, 3_001_000_000), _depth(3_000_000_000, (height, width), float("nan")))
        assert empty.count("camera 'low': depth frame has no valid readings (all zero or NaN); obstacles have no") == 1
        channel._on_camera_info(_camera_info(width, height))
        assert logged_for((3_002_000_000,), _depth(3_002_000_000, (height, width))) == "", "nothing wrong, no warning"
        msg = array_to_image(bus, "bgr8", _header(3_003_000_000))
        frame = ReceivedFrame(msg, time.perf_counter())
        image = channel.decode(frame)
        channel.apply(dataclasses.replace(SETTINGS, max_pixels=width * height - 1))  # lowered after the depth arrived
        try:
            channel.publish(frame, image, dataclasses.replace(bus_masks, stamp_ns=3_003_000_000))
        finally:
            channel.apply(SETTINGS)
        refused = (
            f"camera 'low': depth frame refused: depth image {width}x{height} exceeds the {width * height - 1}-pixel"
        )
        assert capfd.readouterr().err.count(refused) == 1


def test_the_latency_published_runs_from_the_frames_arrival(rig):
    """`processing_ms` counts from when the message arrived, not from when the worker took it."""
    msg = array_to_image(rig.bus, "bgr8", _header(10_000_000_000))
    frame = ReceivedFrame(msg, time.perf_counter() - 0.5)
    masks = dataclasses.replace(rig.bus_masks, stamp_ns=10_000_000_000, frame_id="front_optical")
    latency_ms = rig.front.publish(frame, rig.front.decode(frame), masks)
    assert 500.0 <= latency_ms <= (time.perf_counter() - frame.received) * 1e3
