"""The fastsam ROS 2 node: a thin shell around the segmentation engine.

Threads: the executor runs the camera callback (which only drops the message into a
one-slot mailbox) and the prompt services (their own callback group); one worker
thread runs inference on the newest frame and publishes. Prompts read the latest
result through a single reference, so each sees one coherent frame.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fastsam_ros import config
from fastsam_ros.engine import EngineSettings, SegmentationEngine
from fastsam_ros.frame_mailbox import LatestFrameMailbox
from fastsam_ros.image_codec import ImageDecodeError
from fastsam_ros.mask_set import MaskSet
from fastsam_ros.model_loading import ModelLoadError, load_model
from fastsam_ros.msg import InstanceArray
from fastsam_ros.prompt_service import PromptService
from fastsam_ros.rendering import draw_overlay
from fastsam_ros.ros_convert import array_to_image, check_header, image_to_bgr, mask_set_to_msg
from fastsam_ros.srv import BoxPrompt, PointPrompt, TextPrompt

RUNTIME_ENGINE_PARAMETERS = ("imgsz", "conf", "iou", "max_det", "retina_masks")


class ConfigError(ValueError):
    """Start-up parameters are invalid."""


@dataclass(frozen=True)
class FrameResult:
    """What prompts need of the latest frame: its masks, pixels and header."""

    masks: MaskSet
    image: np.ndarray
    header: Header


@dataclass(frozen=True)
class _Frame:
    msg: Image | CompressedImage
    received: float


class FastSamNode(Node):
    def __init__(self, node_name: str = "fastsam", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.values = self._declare_parameters()
        reasons = config.validate(self.values)
        if reasons:
            raise ConfigError("; ".join(reasons))
        log = self.get_logger()
        log.info(f"loading model '{self.values['model']}' (device {self.values['device']}) ...")
        started = time.perf_counter()
        loaded = load_model(self.values["model"], self.values["device"], self.values["half"])
        self.engine = SegmentationEngine(loaded, self._engine_settings(self.values))
        self.engine.segment(np.zeros((64, 64, 3), dtype=np.uint8))
        classes = f"{len(loaded.class_names)} classes" if loaded.has_classes else "class-agnostic"
        log.info(f"model ready in {time.perf_counter() - started:.1f} s: {loaded.source} on {loaded.device}, {classes}")

        self.latest: FrameResult | None = None
        self.frames_processed = 0
        self.frames_rejected = 0
        self._mailbox: LatestFrameMailbox[_Frame] = LatestFrameMailbox()
        self._drops_logged = 0

        self.instances_pub = self.create_publisher(InstanceArray, "~/instances", 10)
        self.label_pub = self.create_publisher(Image, "~/label_image", 5)
        self.debug_pub = self.create_publisher(Image, "~/debug_image", 5)
        self.selection_pub = self.create_publisher(InstanceArray, "~/selection", 10)

        qos = qos_profile_sensor_data if self.values["image_qos"] == "sensor_data" else QoSProfile(depth=1)
        if self.values["input"] == "compressed":
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos)
        else:
            self.create_subscription(Image, "image", self._on_image, qos)

        self.prompts = PromptService(self, lambda: self.latest, loaded.class_names, self.values, loaded.device)
        prompt_group = ReentrantCallbackGroup()
        self.create_service(PointPrompt, "~/prompt_point", self.prompts.point, callback_group=prompt_group)
        self.create_service(BoxPrompt, "~/prompt_box", self.prompts.box, callback_group=prompt_group)
        self.create_service(TextPrompt, "~/prompt_text", self.prompts.text, callback_group=prompt_group)

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(
            self.values["drop_log_period"], self._log_drops, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self._worker = threading.Thread(target=self._run_worker, name="fastsam_inference", daemon=True)
        self._worker.start()

    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for spec in config.PARAMETERS:
            descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
            values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
        return values

    @staticmethod
    def _engine_settings(values: dict[str, Any]) -> EngineSettings:
        return EngineSettings(**{name: values[name] for name in RUNTIME_ENGINE_PARAMETERS})

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        reasons = config.validate(changes)
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        self.values.update(changes)
        engine_changes = {k: v for k, v in changes.items() if k in RUNTIME_ENGINE_PARAMETERS}
        if engine_changes:
            self.engine.settings = dataclasses.replace(self.engine.settings, **engine_changes)
        return SetParametersResult(successful=True)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        received = time.perf_counter()
        try:
            check_header(msg)
        except ImageDecodeError as error:
            self._refuse(error)
            return
        self._mailbox.put(_Frame(msg, received))

    def _refuse(self, error: ImageDecodeError) -> None:
        """A bad frame is reported and dropped; it never displaces a good waiting frame."""
        self.frames_rejected += 1
        self.get_logger().warning(f"frame refused: {error}", throttle_duration_sec=2.0)

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
            frame = self._mailbox.take(timeout=0.5)
            if frame is not None:
                self._process(frame)

    def _process(self, frame: _Frame) -> None:
        header = frame.msg.header
        try:
            image = image_to_bgr(frame.msg)
        except ImageDecodeError as error:
            self._refuse(error)
            return
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        try:
            masks = self.engine.segment(image, stamp_ns, header.frame_id)
        except Exception as error:  # keep serving: one bad frame must not stop the node
            self.frames_rejected += 1
            self.get_logger().error(f"segmentation failed: {error!r}", throttle_duration_sec=2.0)
            return
        self.latest = FrameResult(masks, image, header)
        self.frames_processed += 1
        processing_ms = (time.perf_counter() - frame.received) * 1e3
        self.instances_pub.publish(mask_set_to_msg(masks, header, processing_ms))
        if self.label_pub.get_subscription_count() > 0:
            self.label_pub.publish(array_to_image(masks.label_image(), "mono16", header))
        if self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(array_to_image(draw_overlay(image, masks), "bgr8", header))

    def close(self) -> None:
        """Stop the worker and background loads; call before the ROS context goes down."""
        self._mailbox.close()
        self._worker.join(timeout=10.0)
        self.prompts.text_backends.wait_loaded(timeout=60.0)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    # rclpy's own handler would shut the context down under the worker thread's feet;
    # here SIGINT and SIGTERM unwind the executor, the node stops its threads, and only
    # then does the context go down.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        node = FastSamNode()
    except (ConfigError, ModelLoadError) as error:
        print(f"fastsam_node: error: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
