"""One camera served by the node: its whole path from message in to every output published.

A node serves one camera on its own topics ('image', '~/instances', ...) or several,
each under its name ('front/image', '~/front/instances', ...). The channel owns that
camera's subscriptions and their handlers, the checks made on arrival, decoding, depth
pairing, the per-camera pipeline (tracker, obstacles), the latest result that prompts
read, the prompt and follow services, the followed selections and every publisher. Only
the model, the mailbox and the worker are shared, and they belong to the node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import CallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.service import Service
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from fastsam_msgs.msg import FollowedArray, InstanceArray, ObstacleArray
from fastsam_msgs.srv import BoxPrompt, FollowBox, FollowPoint, FollowText, PointPrompt, TextPrompt, Unfollow
from fastsam_ros.core.follow import FollowedObject, Follower
from fastsam_ros.core.frame_mailbox import LatestFrameMailbox
from fastsam_ros.core.health import HealthMonitor
from fastsam_ros.core.image_codec import ImageDecodeError
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.memory import release_freed_memory
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.obstacles import DepthError, DepthPairer, Intrinsics, roi_polygon
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.rendering import draw_overlay
from fastsam_ros.core.settings import CameraSettings
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.convert import (
    array_to_image,
    check_before_decoding,
    check_depth_header,
    depth_to_metres,
    followed_pose,
    followed_to_msg,
    image_to_bgr,
    intrinsics_from,
    mask_set_to_msg,
    message_bytes,
    obstacles_to_msg,
    points_to_cloud,
    stamp_to_ns,
)
from fastsam_ros.ros.markers import obstacle_markers
from fastsam_ros.ros.prompt_service import PromptService, SegmentedFrame
from fastsam_ros.ros.qos import SERVICE_QOS

LATEST_ONLY = QoSProfile(
    depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability,
    history=qos_profile_sensor_data.history,
)
"""Sensor-data QoS keeping one sample, for depth and camera_info: only the newest is wanted, and
the transport keeps a buffer as large as the largest message for every sample it may hold.
(Camera frames keep the sensor-data depth of 5, so that a burst reaches the node and its
drops are counted by the mailbox.)"""

BIG_MESSAGE_BYTES = 16 * 2**20
"""After a message this large is let go, freed heap pages go back to the system."""


def camera_topic(camera: str, name: str) -> str:
    """'name' for the unnamed single camera, 'camera/name' otherwise."""
    return f"{camera}/{name}" if camera else name


@dataclass(frozen=True)
class ReceivedFrame:
    """A camera message waiting for the worker, and when it arrived (for the latency figure)."""

    msg: Image | CompressedImage
    received: float


class CameraChannel:
    """Built by configure with the camera's publishers and pipeline; start (activate) subscribes
    and offers the prompt and follow services, stop (deactivate) withdraws them (the selections
    are kept), destroy (cleanup) drops the publishers."""

    def __init__(
        self,
        node: LifecycleNode,
        camera: str,
        compressed: bool,
        health: HealthMonitor,
        perception: Perception,
        text_backends: TextBackends,
        settings: CameraSettings,
        tracker: tuple[str, str],
    ) -> None:
        self.camera = camera
        self.compressed = compressed
        self.image_topic = camera_topic(camera, "image/compressed" if compressed else "image")
        self.perception = perception
        self.settings = settings
        self.latest: SegmentedFrame | None = None
        self._node = node
        self._health = health
        self._depth = DepthPairer(round(settings.depth_slop_s * 1e9))
        self._camera_info: CameraInfo | None = None
        self._mailbox: LatestFrameMailbox[ReceivedFrame] | None = None
        self._subscriptions: list[Subscription] = []
        self._services: list[Service] = []
        self._publishers: list[LifecyclePublisher] = []
        self.instances_pub = self._publisher(InstanceArray, "instances", 10)
        self.label_pub = self._publisher(Image, "label_image", 5)
        self.debug_pub = self._publisher(Image, "debug_image", 5)
        self.selection_pub = self._publisher(InstanceArray, "selection", 10)
        self.obstacles_pub = self._publisher(ObstacleArray, "obstacles", 10)
        self.markers_pub = self._publisher(MarkerArray, "markers", 5)
        self.cloud_pub = self._publisher(PointCloud2, "obstacle_cloud", 5)
        self.followed_pub = self._publisher(FollowedArray, "followed", 10)
        self.followed_pose_pub = self._publisher(PoseStamped, "followed_pose", 10)
        self.follower = Follower()
        self._tracker = tracker
        """Kind and configuration file of the tracker the perception runs."""
        self._prompts = PromptService(
            node,
            lambda: self.latest,
            lambda: self.settings.prompt_limits,
            text_backends,
            self.selection_pub,
            self.image_topic,
            self.follower,
        )

    def _publisher(self, kind: type, name: str, depth: int) -> LifecyclePublisher:
        """A publisher that sends only while the node is active."""
        publisher = self._node.create_lifecycle_publisher(kind, self._private(name), depth)
        self._publishers.append(publisher)
        return publisher

    def _private(self, name: str) -> str:
        return "~/" + camera_topic(self.camera, name)

    def apply(self, settings: CameraSettings) -> None:
        """Run-time parameter changes, from the next message on."""
        self.settings = settings
        self._depth.slop_ns = round(settings.depth_slop_s * 1e9)

    def set_tracker(self, kind: str, config_path: str) -> None:
        """Switch trackers; the selections then drop their track ids (a new tracker hands out
        ids afresh) and are found again by position and colours. Raises TrackerConfigError."""
        self.perception.set_tracker(kind, config_path)
        if (kind, config_path) != self._tracker:
            self._tracker = (kind, config_path)
            self.follower.forget_track_ids()

    def start(self, mailbox: LatestFrameMailbox[ReceivedFrame], qos: QoSProfile, group: CallbackGroup) -> None:
        """Subscribe and offer the services; frames that pass the arrival checks go to the mailbox."""
        node, prompts = self._node, self._prompts
        self._mailbox = mailbox
        image_type = CompressedImage if self.compressed else Image
        self._subscriptions = [
            node.create_subscription(image_type, self.image_topic, self._on_image, qos),
            node.create_subscription(Image, camera_topic(self.camera, "depth"), self._on_depth, LATEST_ONLY),
            node.create_subscription(
                CameraInfo, camera_topic(self.camera, "camera_info"), self._on_camera_info, LATEST_ONLY
            ),
        ]
        self._services = [
            node.create_service(kind, self._private(name), handler, qos_profile=SERVICE_QOS, callback_group=group)
            for kind, name, handler in (
                (PointPrompt, "prompt_point", prompts.point),
                (BoxPrompt, "prompt_box", prompts.box),
                (TextPrompt, "prompt_text", prompts.text),
                (FollowPoint, "follow_point", prompts.follow_point),
                (FollowBox, "follow_box", prompts.follow_box),
                (FollowText, "follow_text", prompts.follow_text),
                (Unfollow, "unfollow", prompts.unfollow),
            )
        ]

    def stop(self) -> None:
        """Unsubscribe and withdraw the services: no frame is taken in, no prompt answered."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        for service in self._services:
            self._node.destroy_service(service)
        self._subscriptions, self._services = [], []
        self._mailbox = None

    def destroy(self) -> None:
        """Drop the publishers (the node's cleanup); the channel is not used again."""
        for publisher in self._publishers:
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers = []
        self.latest = None

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Cheap checks on arrival (header fields, a compressed frame's declared size), then the mailbox."""
        received = time.perf_counter()
        self._health.received()
        mailbox = self._mailbox
        try:
            check_before_decoding(msg, self.settings.max_pixels)
        except ImageDecodeError as error:
            self.refuse(error)
            if message_bytes(msg) > BIG_MESSAGE_BYTES:
                del msg
                release_freed_memory()
            return
        if mailbox is not None and mailbox.put(ReceivedFrame(msg, received), self.camera):
            self._health.dropped()

    def refuse(self, error: Exception) -> None:
        """A bad frame is reported and dropped; it never displaces a good waiting frame."""
        self._health.rejected()
        self._node.get_logger().warning(f"{self._label}frame refused: {error}", throttle_duration_sec=2.0)

    def decode(self, frame: ReceivedFrame) -> np.ndarray:
        """BGR pixels of a frame the worker took; raises ImageDecodeError."""
        return image_to_bgr(frame.msg, self.settings.max_pixels)

    def wants_obstacles(self) -> bool:
        """Obstacles cost time: compute them only while someone listens (the cloud is made of them,
        and followed objects take their 3D position from the obstacles' tracks)."""
        listening = [self.obstacles_pub, self.markers_pub, self.debug_pub, self.cloud_pub]
        if len(self.follower):
            listening += [self.followed_pub, self.followed_pose_pub]
        return any(publisher.get_subscription_count() > 0 for publisher in listening)

    def _on_depth(self, msg: Image) -> None:
        """Depth is kept only while obstacles are wanted, and only once its header is sane."""
        big = message_bytes(msg) > BIG_MESSAGE_BYTES
        try:
            if self.wants_obstacles():
                check_depth_header(msg, self.settings.max_pixels)
                self._depth.add(stamp_to_ns(msg.header.stamp), msg)
                return
        except DepthError as error:
            self._node.get_logger().warning(f"{self._label}depth frame refused: {error}", throttle_duration_sec=5.0)
        if big:
            del msg
            release_freed_memory()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def publish(self, frame: ReceivedFrame, image: np.ndarray, masks: MaskSet) -> float:
        """Track, find obstacles, follow, and publish every output of one segmented frame; its latency in ms."""
        header = frame.msg.header
        want_obstacles = self.wants_obstacles()
        depth = self._depth_for(masks.stamp_ns, image.shape) if want_obstacles else None
        intrinsics = self._intrinsics_for(image.shape) if want_obstacles else None
        want_cloud = self.cloud_pub.get_subscription_count() > 0
        output = self.perception.process_masks(
            masks, image, depth, intrinsics, want_obstacles, want_cloud, self.follower.track_ids()
        )
        masks = output.masks
        processing_ms = (time.perf_counter() - frame.received) * 1e3
        instances = mask_set_to_msg(masks, header, processing_ms)
        instance_msgs = tuple(instances.instances)
        self.latest = SegmentedFrame(masks, image, header, instance_msgs)
        self.instances_pub.publish(instances)
        followed = self.follower.update(masks, image, masks.stamp_ns, output.tracks)
        self.followed_pub.publish(followed_to_msg(header, masks, followed, instance_msgs))
        self._publish_pose(header, followed)
        if self.obstacles_pub.get_subscription_count() > 0:
            self.obstacles_pub.publish(
                obstacles_to_msg(header, masks, output.obstacles, depth is not None, output.tracks)
            )
        if self.markers_pub.get_subscription_count() > 0:
            self.markers_pub.publish(
                obstacle_markers(header, masks, output.obstacles, intrinsics, output.tracks, followed_in_3d(followed))
            )
        if want_cloud:
            self._publish_cloud(output.cloud, header)
        if self.label_pub.get_subscription_count() > 0:
            self.label_pub.publish(array_to_image(masks.label_image(), "mono16", header))
        if self.debug_pub.get_subscription_count() > 0:
            roi = roi_polygon(self.perception.obstacle_settings.roi, masks.width, masks.height)
            labels = followed_labels(masks, followed)
            overlay = draw_overlay(image, masks, obstacles=output.obstacles, roi=roi, followed=labels)
            self.debug_pub.publish(array_to_image(overlay, "bgr8", header))
        return processing_ms

    def _publish_pose(self, header: Any, followed: list[FollowedObject]) -> None:
        """The first selection's pose, when it has a 3D position in this frame."""
        if not followed or self.followed_pose_pub.get_subscription_count() == 0:
            return
        pose = followed_pose(header, followed[0])
        if pose is not None:
            self.followed_pose_pub.publish(pose)

    def _publish_cloud(self, cloud: np.ndarray | None, header: Any) -> None:
        """The obstacle points of a frame; without depth or camera_info there is none to publish."""
        if cloud is None:
            self._node.get_logger().warning(
                f"{self._label}~/obstacle_cloud has subscribers but this frame has no usable depth and "
                "camera_info; nothing published",
                throttle_duration_sec=5.0,
            )
            return
        self.cloud_pub.publish(points_to_cloud(cloud, header))

    def _depth_for(self, stamp_ns: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """The depth frame paired with this colour frame, in metres, or None with a warning."""
        if not self._depth.has_frames:
            return None
        msg = self._depth.match(stamp_ns)
        log = self._node.get_logger()
        if msg is None:
            log.warning(
                f"{self._label}no depth frame within {self._depth.slop_ns / 1e9} s of the colour frame; "
                "obstacles have no distance",
                throttle_duration_sec=5.0,
            )
            return None
        try:
            depth = depth_to_metres(msg, self.settings.max_pixels)
        except DepthError as error:
            log.warning(f"{self._label}depth frame refused: {error}", throttle_duration_sec=5.0)
            return None
        if depth.shape != shape[:2]:
            log.warning(
                f"{self._label}depth {depth.shape[1]}x{depth.shape[0]} is not aligned with the colour frame "
                f"{shape[1]}x{shape[0]}; obstacles have no distance",
                throttle_duration_sec=5.0,
            )
            return None
        if not np.isfinite(depth).any():
            log.warning(
                f"{self._label}depth frame has no valid readings (all zero or NaN); obstacles have no distance",
                throttle_duration_sec=5.0,
            )
        return depth

    def _intrinsics_for(self, shape: tuple[int, ...]) -> Intrinsics | None:
        info = self._camera_info
        if info is None:
            if self._depth.has_frames:
                self._node.get_logger().warning(
                    f"{self._label}depth arrives but no camera_info yet; obstacles have no 3D centroid, box or motion",
                    throttle_duration_sec=5.0,
                )
            return None
        if (info.height, info.width) != shape[:2]:
            self._node.get_logger().warning(
                f"{self._label}camera_info is for {info.width}x{info.height}, the frame is "
                f"{shape[1]}x{shape[0]}; no 3D centroids",
                throttle_duration_sec=5.0,
            )
            return None
        return intrinsics_from(info)

    @property
    def _label(self) -> str:
        return f"camera '{self.camera}': " if self.camera else ""


def follow_label(followed: FollowedObject) -> str:
    """What the debug image and the markers write beside a followed object."""
    return f"follow {followed.name or f'#{followed.selection_id}'}"


def followed_labels(masks: MaskSet, followed: list[FollowedObject]) -> dict[int, str]:
    """Labels of the followed objects seen in this frame, by their index in the frame's instances."""
    labels = {id(item.instance): follow_label(item) for item in followed if item.instance is not None}
    return {index: labels[id(instance)] for index, instance in enumerate(masks.instances) if id(instance) in labels}


def followed_in_3d(followed: list[FollowedObject]) -> list[tuple[str, ObstacleTrack]]:
    """Labels and 3D tracks of the followed objects located in this frame."""
    return [(follow_label(item), item.motion) for item in followed if item.motion is not None]
