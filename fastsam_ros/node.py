"""The fastsam ROS 2 node: a thin shell around the segmentation engine.

Threads: the executor runs the camera callbacks (which only drop the message into the
camera's one-slot mailbox) and the prompt services (their own callback group); one
worker thread runs inference on the newest frame of every camera, in one batch, and
publishes each camera's results on its own topics. Prompts read their camera's latest
result through a single reference, so each sees one coherent frame.
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fastsam_ros import config
from fastsam_ros.camera_channel import CameraChannel
from fastsam_ros.engine import EngineSettings, SegmentationEngine
from fastsam_ros.frame_mailbox import LatestFrameMailbox
from fastsam_ros.health import HealthLimits, HealthMonitor
from fastsam_ros.image_codec import ImageDecodeError
from fastsam_ros.mask_set import MaskSet
from fastsam_ros.model_errors import ModelLoadError
from fastsam_ros.model_loading import load_model
from fastsam_ros.obstacles import ObstacleSettings, roi_polygon
from fastsam_ros.perception import Perception
from fastsam_ros.prompt_service import FrameResult, TextBackends
from fastsam_ros.rendering import draw_overlay
from fastsam_ros.ros_convert import (
    array_to_image,
    check_header,
    image_to_bgr,
    mask_set_to_msg,
    obstacles_to_msg,
    stamp_to_ns,
)
from fastsam_ros.ros_markers import obstacle_markers
from fastsam_ros.tracking import TrackerConfigError

RUNTIME_ENGINE_PARAMETERS = ("imgsz", "conf", "iou", "max_det", "retina_masks")
OBSTACLE_PARAMETERS = {
    "obstacle_roi": "roi",
    "obstacle_min_area": "min_area",
    "obstacle_min_overlap": "min_overlap",
    "max_distance": "max_distance",
    "obstacle_cloud_decimation": "cloud_decimation",
    "obstacle_cloud_max_range": "cloud_max_range",
}


class ConfigError(ValueError):
    """Start-up parameters are invalid."""


@dataclass(frozen=True)
class _Frame:
    msg: Image | CompressedImage
    received: float


class FastSamBehaviour:
    """What the fastsam node does, shared by the plain and the lifecycle node.

    configure: validate parameters, load the model, create publishers.
    start: subscribe, offer the services, run the inference thread.
    stop: the reverse of start; no frame is taken in, nothing is computed.
    release: drop the model (and its GPU memory).
    """

    def _configure(self: Any) -> None:
        reasons = config.validate(self.values)
        if reasons:
            raise ConfigError("; ".join(reasons))
        log = self.get_logger()
        log.info(f"loading model '{self.values['model']}' (device {self.values['device']}) ...")
        started = time.perf_counter()
        loaded = load_model(self.values["model"], self.values["device"], self.values["half"], self.values["runtime"])
        if loaded.fallback:
            log.warning(loaded.fallback)
        engine = SegmentationEngine(loaded, self._engine_settings(self.values))
        engine.segment(np.zeros((64, 64, 3), dtype=np.uint8))
        obstacles = ObstacleSettings(
            **{field: self._obstacle_value(name) for name, field in OBSTACLE_PARAMETERS.items()}
        )
        cameras = self.values["cameras"]
        try:
            perceptions = [
                Perception(engine, self.values["tracker"], self.values["tracker_config"], obstacles) for _ in cameras
            ]
        except TrackerConfigError as error:
            raise ConfigError(f"tracker: {error}") from error
        self.engine = engine
        classes = f"{len(loaded.class_names)} classes" if loaded.has_classes else "class-agnostic"
        log.info(
            f"model ready in {time.perf_counter() - started:.1f} s: {loaded.source} on {loaded.device} "
            f"({loaded.runtime}), {classes}"
        )
        self.health = HealthMonitor(
            HealthLimits(self.values["diagnostics_max_latency_ms"], self.values["diagnostics_max_drop_ratio"])
        )
        self.text_backends = TextBackends(loaded.class_names, self.values, loaded.device, log.info)
        if not hasattr(self, "channels"):
            compressed = self.values["input"] == "compressed"
            self.channels = {camera: CameraChannel(self, camera, compressed) for camera in cameras}
            self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.add_on_set_parameters_callback(self._on_set_parameters)
        for channel, perception in zip(self.channels.values(), perceptions, strict=True):
            channel.configure(perception, self.text_backends, self.values["depth_slop"])
        if len(cameras) > 1:
            topics = ", ".join(channel.image_topic for channel in self.channels.values())
            log.info(f"serving {len(cameras)} cameras in one batch: {topics}")
        self._entities: list = []

    def _start(self: Any) -> None:
        self._mailbox: LatestFrameMailbox[_Frame] = LatestFrameMailbox()
        self._drops_logged = 0
        qos = qos_profile_sensor_data if self.values["image_qos"] == "sensor_data" else QoSProfile(depth=1)
        prompt_group = ReentrantCallbackGroup()
        timer_group = MutuallyExclusiveCallbackGroup()
        self._entities = []
        for channel in self.channels.values():
            self._entities += channel.start(self._on_image, qos, prompt_group)
        self._entities += [
            self.create_timer(self.values["drop_log_period"], self._log_drops, callback_group=timer_group),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=timer_group),
        ]
        self._worker = threading.Thread(target=self._run_worker, name="fastsam_inference", daemon=True)
        self._worker.start()

    def _stop(self: Any) -> None:
        for entity in getattr(self, "_entities", []):
            if isinstance(entity, Subscription):
                self.destroy_subscription(entity)
            elif isinstance(entity, Service):
                self.destroy_service(entity)
            else:
                self.destroy_timer(entity)
        self._entities = []
        if hasattr(self, "_mailbox"):
            self._mailbox.close()
            self._worker.join(timeout=10.0)

    def _release(self: Any) -> None:
        if hasattr(self, "text_backends"):
            self.text_backends.wait_loaded(timeout=60.0)
        device = self.engine.loaded.device if hasattr(self, "engine") else None
        for channel in getattr(self, "channels", {}).values():
            channel.release()
        for name in ("engine", "text_backends"):
            if hasattr(self, name):
                delattr(self, name)
        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self: Any) -> None:
        """Stop threads and background loads; call before the ROS context goes down."""
        self._stop()
        self._release()

    def _publish_diagnostics(self: Any) -> None:
        loaded = self.engine.loaded
        extra = {
            "device": str(loaded.device),
            "runtime": loaded.runtime,
            "model": loaded.source,
            "cameras": str(len(self.channels)),
        }
        report = self.health.report(extra=extra)
        status = DiagnosticStatus(
            level=bytes([report.level]),
            name=f"{self.get_name()}: segmentation",
            message=report.message,
            hardware_id=str(loaded.device),
            values=[KeyValue(key=key, value=value) for key, value in report.values.items()],
        )
        self.diagnostics_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )

    def _declare_parameters(self: Any) -> dict[str, Any]:
        values = {}
        for spec in config.PARAMETERS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
            values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
        return values

    def _obstacle_value(self, name: str) -> Any:
        value = self.values[name]
        return tuple(value) if name == "obstacle_roi" else value

    @staticmethod
    def _engine_settings(values: dict[str, Any]) -> EngineSettings:
        return EngineSettings(**{name: values[name] for name in RUNTIME_ENGINE_PARAMETERS})

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        reasons = config.validate(changes)
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        if not hasattr(self, "engine"):
            # A cleaned-up lifecycle node: nothing runs; the values apply at configure.
            self.values.update(changes)
            return SetParametersResult(successful=True)
        if "tracker" in changes or "tracker_config" in changes:
            kind = changes.get("tracker", self.values["tracker"])
            try:
                for channel in self.channels.values():
                    channel.perception.set_tracker(kind, changes.get("tracker_config", self.values["tracker_config"]))
            except TrackerConfigError as error:
                return SetParametersResult(successful=False, reason=f"tracker: {error}")
        self.values.update(changes)
        engine_changes = {k: v for k, v in changes.items() if k in RUNTIME_ENGINE_PARAMETERS}
        if engine_changes:
            self.engine.settings = dataclasses.replace(self.engine.settings, **engine_changes)
        obstacle_changes = {
            OBSTACLE_PARAMETERS[k]: self._obstacle_value(k) for k in changes if k in OBSTACLE_PARAMETERS
        }
        for channel in self.channels.values():
            if obstacle_changes:
                channel.perception.set_obstacle_settings(**obstacle_changes)
            if "depth_slop" in changes:
                channel.depth.slop_ns = round(changes["depth_slop"] * 1e9)
        if {"diagnostics_max_latency_ms", "diagnostics_max_drop_ratio"} & set(changes):
            self.health.limits = dataclasses.replace(
                self.health.limits,
                max_latency_ms=self.values["diagnostics_max_latency_ms"],
                max_drop_ratio=self.values["diagnostics_max_drop_ratio"],
            )
        return SetParametersResult(successful=True)

    def _on_image(self, msg: Image | CompressedImage, camera: str) -> None:
        received = time.perf_counter()
        self.health.received()
        try:
            check_header(msg)
        except ImageDecodeError as error:
            self._refuse(error, camera)
            return
        if self._mailbox.put(_Frame(msg, received), camera):
            self.health.dropped()

    def _refuse(self, error: ImageDecodeError, camera: str) -> None:
        """A bad frame is reported and dropped; it never displaces a good waiting frame."""
        self.health.rejected()
        source = f" from camera '{camera}'" if camera else ""
        self.get_logger().warning(f"frame{source} refused: {error}", throttle_duration_sec=2.0)

    def _log_drops(self) -> None:
        dropped = self._mailbox.dropped
        if dropped > self._drops_logged:
            self.get_logger().info(
                f"dropped {dropped - self._drops_logged} frame(s) in the last {self.values['drop_log_period']:.0f} s "
                f"({dropped} in total): frames arrive faster than inference, the newest one is kept"
            )
            self._drops_logged = dropped

    def _run_worker(self) -> None:
        while not self._mailbox.closed:
            frames = self._mailbox.take_all(timeout=0.5)
            if frames:
                self._process(frames)

    def _process(self, frames: dict[str, _Frame]) -> None:
        """Every camera's newest frame through one forward pass, then each on its own topics."""
        batch = []
        for camera, frame in frames.items():
            try:
                batch.append((self.channels[camera], frame, image_to_bgr(frame.msg)))
            except ImageDecodeError as error:
                self._refuse(error, camera)
        if not batch:
            return
        headers = [frame.msg.header for _, frame, _ in batch]
        try:
            mask_sets = self.engine.segment_batch(
                [image for _, _, image in batch],
                [stamp_to_ns(header.stamp) for header in headers],
                [header.frame_id for header in headers],
            )
        except Exception as error:  # keep serving: one bad frame must not stop the node
            self._failed(error, len(batch))
            return
        self.health.forward_pass(len(batch))
        for (channel, frame, image), masks in zip(batch, mask_sets, strict=True):
            try:
                self._publish(channel, frame, image, masks)
            except Exception as error:  # keep serving, and publish the other cameras' frames
                self._failed(error, 1)

    def _failed(self, error: Exception, frames: int) -> None:
        for _ in range(frames):
            self.health.rejected()
        self.get_logger().error(f"segmentation failed: {error!r}", throttle_duration_sec=2.0)

    def _publish(self, channel: CameraChannel, frame: _Frame, image: np.ndarray, masks: MaskSet) -> None:
        header = frame.msg.header
        depth = channel.depth_for(masks.stamp_ns, image.shape)
        intrinsics = channel.intrinsics_for(image.shape)
        want_cloud = channel.cloud_pub.get_subscription_count() > 0
        output = channel.perception.process_masks(
            masks, image, depth, intrinsics, channel.wants_obstacles(), want_cloud
        )
        masks = output.masks
        channel.latest = FrameResult(masks, image, header)
        processing_ms = (time.perf_counter() - frame.received) * 1e3
        self.health.processed(processing_ms)
        channel.instances_pub.publish(mask_set_to_msg(masks, header, processing_ms))
        if channel.obstacles_pub.get_subscription_count() > 0:
            channel.obstacles_pub.publish(
                obstacles_to_msg(header, masks, output.obstacles, depth is not None, output.tracks)
            )
        if channel.markers_pub.get_subscription_count() > 0:
            channel.markers_pub.publish(obstacle_markers(header, masks, output.obstacles, intrinsics, output.tracks))
        if want_cloud:
            channel.publish_cloud(output.cloud, header)
        if channel.label_pub.get_subscription_count() > 0:
            channel.label_pub.publish(array_to_image(masks.label_image(), "mono16", header))
        if channel.debug_pub.get_subscription_count() > 0:
            roi = roi_polygon(channel.perception.obstacle_settings.roi, masks.width, masks.height)
            overlay = draw_overlay(image, masks, obstacles=output.obstacles, roi=roi)
            channel.debug_pub.publish(array_to_image(overlay, "bgr8", header))


class FastSamNode(FastSamBehaviour, Node):
    """The node, configured and running from construction on."""

    def __init__(self, node_name: str = "fastsam", **kwargs: Any) -> None:
        Node.__init__(self, node_name, **kwargs)
        self.values = self._declare_parameters()
        self._configure()
        self._start()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def init_ros(args: list[str] | None) -> None:
    """rclpy without its signal handlers.

    rclpy's own handler would shut the context down under the worker thread's feet;
    here SIGINT and SIGTERM unwind the executor, the node stops its threads, and only
    then does the context go down.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def run_node(node: FastSamBehaviour) -> int:
    """Spin until Ctrl-C or SIGTERM, then stop the node's threads and shut down.

    Spinning goes in 0.25 s slices: Python runs signal handlers only between them, and
    a node with no timers (an unconfigured lifecycle node) would otherwise wait in rcl
    forever.
    """
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    init_ros(args)
    try:
        node = FastSamNode()
    except (ConfigError, ModelLoadError) as error:
        print(f"fastsam_node: error: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    return run_node(node)


if __name__ == "__main__":
    sys.exit(main())
