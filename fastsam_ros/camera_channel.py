"""One camera served by the node: its topics, publishers and per-camera state.

A node serves one camera on its own topics ('image', '~/instances', ...) or several,
each under its name ('front/image', '~/front/instances', ...). Every camera keeps its
own latest result, tracker, depth pairing and prompt services; only the model and the
forward pass are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from fastsam_ros.msg import InstanceArray, ObstacleArray
from fastsam_ros.obstacles import DepthError, DepthPairer, Intrinsics
from fastsam_ros.perception import Perception
from fastsam_ros.prompt_service import PromptService, TextBackends
from fastsam_ros.ros_convert import depth_to_metres, intrinsics_from, points_to_cloud, stamp_to_ns
from fastsam_ros.srv import BoxPrompt, PointPrompt, TextPrompt

if TYPE_CHECKING:
    from rclpy.node import Node

    from fastsam_ros.prompt_service import FrameResult


def camera_topic(camera: str, name: str) -> str:
    """'name' for the unnamed single camera, 'camera/name' otherwise."""
    return f"{camera}/{name}" if camera else name


class CameraChannel:
    def __init__(self, node: Node, camera: str, compressed: bool) -> None:
        self.camera = camera
        self.compressed = compressed
        self.image_topic = camera_topic(camera, "image/compressed" if compressed else "image")
        self._node = node

        def private(name: str) -> str:
            return "~/" + camera_topic(camera, name)

        self.instances_pub = node.create_publisher(InstanceArray, private("instances"), 10)
        self.label_pub = node.create_publisher(Image, private("label_image"), 5)
        self.debug_pub = node.create_publisher(Image, private("debug_image"), 5)
        self.selection_pub = node.create_publisher(InstanceArray, private("selection"), 10)
        self.obstacles_pub = node.create_publisher(ObstacleArray, private("obstacles"), 10)
        self.markers_pub = node.create_publisher(MarkerArray, private("markers"), 5)
        self.cloud_pub = node.create_publisher(PointCloud2, private("obstacle_cloud"), 5)
        self._private = private
        self.latest: FrameResult | None = None

    def configure(self, perception: Perception, text_backends: TextBackends, depth_slop_s: float) -> None:
        """Fresh per-camera state around a newly loaded model."""
        self.perception = perception
        self.prompts = PromptService(
            self._node, lambda: self.latest, text_backends, self.selection_pub, self.image_topic
        )
        self.depth = DepthPairer(round(depth_slop_s * 1e9))
        self.camera_info: CameraInfo | None = None
        self.latest = None

    def release(self) -> None:
        for name in ("perception", "prompts", "depth", "camera_info"):
            if hasattr(self, name):
                delattr(self, name)
        self.latest = None

    def start(
        self, on_image: Callable[[Image | CompressedImage, str], None], qos: QoSProfile, prompt_group: CallbackGroup
    ) -> list[Any]:
        """Subscriptions and services; the caller destroys them on stop."""
        node = self._node
        image_type = CompressedImage if self.compressed else Image
        return [
            node.create_subscription(image_type, self.image_topic, lambda msg: on_image(msg, self.camera), qos),
            node.create_subscription(
                Image, camera_topic(self.camera, "depth"), self._on_depth, qos_profile_sensor_data
            ),
            node.create_subscription(
                CameraInfo, camera_topic(self.camera, "camera_info"), self._on_camera_info, qos_profile_sensor_data
            ),
            node.create_service(
                PointPrompt, self._private("prompt_point"), self.prompts.point, callback_group=prompt_group
            ),
            node.create_service(BoxPrompt, self._private("prompt_box"), self.prompts.box, callback_group=prompt_group),
            node.create_service(
                TextPrompt, self._private("prompt_text"), self.prompts.text, callback_group=prompt_group
            ),
        ]

    def wants_obstacles(self) -> bool:
        """Obstacles cost time: compute them only while someone listens."""
        listening = (self.obstacles_pub, self.markers_pub, self.debug_pub)
        return any(publisher.get_subscription_count() > 0 for publisher in listening)

    def publish_cloud(self, cloud: np.ndarray | None, header: Any) -> None:
        """The obstacle points of a frame; without depth or camera_info there is none to publish."""
        if cloud is None:
            self._node.get_logger().warning(
                f"{self._label}~/obstacle_cloud has subscribers but this frame has no usable depth and "
                "camera_info; nothing published",
                throttle_duration_sec=5.0,
            )
            return
        self.cloud_pub.publish(points_to_cloud(cloud, header))

    def _on_depth(self, msg: Image) -> None:
        self.depth.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def depth_for(self, stamp_ns: int, shape: tuple[int, ...]) -> np.ndarray | None:
        """The depth frame paired with this colour frame, in metres, or None with a warning."""
        if not self.depth.has_frames:
            return None
        msg = self.depth.match(stamp_ns)
        log = self._node.get_logger()
        if msg is None:
            log.warning(
                f"{self._label}no depth frame within {self.depth.slop_ns / 1e9} s of the colour frame; "
                "obstacles have no distance",
                throttle_duration_sec=5.0,
            )
            return None
        try:
            depth = depth_to_metres(msg)
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

    def intrinsics_for(self, shape: tuple[int, ...]) -> Intrinsics | None:
        info = self.camera_info
        if info is None:
            if self.depth.has_frames:
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
