"""The fastsam ROS 2 node: the scheduler around the cameras and the segmentation engine.

The node owns what cameras share: the parameters, the model, the mailbox, the one
inference worker and /diagnostics. Each camera's whole path (subscriptions, arrival
checks, decoding, depth, tracking, obstacles, publishing, prompt services) belongs to
its CameraChannel. Threads: the executor runs the camera callbacks (which only check a
frame's header and drop it into the camera's one-slot mailbox), the prompt services
(in their own reentrant callback group) and the timers; the worker segments the
newest frame of every camera in one batch and hands each result back to its channel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from dataclasses import dataclass
from typing import Any

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from std_msgs.msg import Header

from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine
from fastsam_ros.core.frame_mailbox import LatestFrameMailbox
from fastsam_ros.core.health import HealthLimits, HealthMonitor
from fastsam_ros.core.image_codec import ImageDecodeError
from fastsam_ros.core.inference_worker import InferenceWorker
from fastsam_ros.core.obstacles import ObstacleSettings
from fastsam_ros.core.parameters import PARAMETERS, SPECS, ConfigError, coerce, inference_thread_counts
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.prompts import PromptLimits
from fastsam_ros.core.settings import problems
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.camera_channel import CameraChannel, ChannelSettings, ReceivedFrame
from fastsam_ros.ros.convert import stamp_to_ns

ENGINE_PARAMETERS = ("imgsz", "conf", "iou", "max_det", "retina_masks", "cuda_graphs")
OBSTACLE_PARAMETERS = {
    "obstacle_roi": "roi",
    "obstacle_min_area": "min_area",
    "obstacle_min_overlap": "min_overlap",
    "max_distance": "max_distance",
    "obstacle_cloud_decimation": "cloud_decimation",
    "obstacle_cloud_max_range": "cloud_max_range",
}
DUPLICATE_CHECK_PERIOD_S = 2.0
DUPLICATE_CHECKS = 10
"""Discovery may take seconds on a busy host: the graph is checked for a node of the same name
every DUPLICATE_CHECK_PERIOD_S for the first DUPLICATE_CHECKS periods, and a match warned about once."""


def engine_settings(values: dict[str, Any]) -> EngineSettings:
    return EngineSettings(**{name: values[name] for name in ENGINE_PARAMETERS})


def obstacle_settings(values: dict[str, Any]) -> ObstacleSettings:
    changes = {field: values[name] for name, field in OBSTACLE_PARAMETERS.items()}
    return ObstacleSettings(**{**changes, "roi": tuple(changes["roi"])})


def channel_settings(values: dict[str, Any]) -> ChannelSettings:
    limits = PromptLimits(
        values["max_prompt_points"], values["max_prompt_boxes"], values["max_prompt_texts"], values["max_text_length"]
    )
    return ChannelSettings(values["max_pixels"], values["depth_slop"], limits)


def health_limits(values: dict[str, Any]) -> HealthLimits:
    return HealthLimits(values["diagnostics_max_latency_ms"], values["diagnostics_max_drop_ratio"])


@dataclass
class Configured:
    """What configure builds and cleanup drops: the model and what depends on it."""

    engine: SegmentationEngine
    text_backends: TextBackends


@dataclass
class Running:
    """What start builds and stop tears down."""

    mailbox: LatestFrameMailbox[ReceivedFrame]
    worker: InferenceWorker[ReceivedFrame]
    timers: list[Any]


class FastSamBehaviour(Node):
    """What the fastsam node does, shared by the plain and the lifecycle node.

    configure: validate parameters, load the model, set up every camera.
    start: subscribe, offer the services, run the inference worker.
    stop: the reverse of start; no frame is taken in, nothing is computed.
    release: drop the model (and its GPU memory).
    """

    def _set_up(self) -> None:
        """Declare the parameters and their callbacks."""
        self.configured: Configured | None = None
        self.running: Running | None = None
        self.channels: dict[str, CameraChannel] = {}
        self.health = HealthMonitor()
        self._drops_logged = 0
        self._prompt_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._unusable = self._declare_parameters()
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._duplicate_checks_left = DUPLICATE_CHECKS
        self._duplicate_check = self.create_timer(
            DUPLICATE_CHECK_PERIOD_S, self._warn_if_name_taken, callback_group=self._timer_group
        )

    def _declare_parameters(self) -> dict[str, str]:
        """Declare every parameter of PARAMETERS, taking values as people type them.

        rclpy refuses an override whose type differs from the default's (5 for a double),
        so overrides are converted first. One that cannot be is dropped and its reason kept:
        configure fails with it until the parameter is set to a usable value.
        """
        unusable = {}
        overrides = self._parameter_overrides  # rclpy keeps --ros-args and params-file values here
        for spec in PARAMETERS:
            if spec.name in overrides:
                try:
                    value = spec.coerce(overrides[spec.name].value)
                    overrides[spec.name] = Parameter(spec.name, value=value)
                except ConfigError as error:
                    unusable[spec.name] = str(error)
                    del overrides[spec.name]
            allowed = spec.allowed()
            descriptor = ParameterDescriptor(
                description=spec.description + (f" Allowed: {allowed}." if allowed else ""),
                read_only=not spec.runtime,
            )
            self.declare_parameter(spec.name, spec.default, descriptor)
        return unusable

    def values(self) -> dict[str, Any]:
        """Every parameter's current value, in its spec's type."""
        values, _ = coerce({spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS})
        return values

    def _coerce_parameters(self, parameters: list[Parameter]) -> list[Parameter]:
        """5 for a double parameter, or [0, 1, 1, 1, 0, 1] for a double list, becomes a double."""
        coerced = []
        for parameter in parameters:
            spec = SPECS.get(parameter.name)
            if spec is not None:
                with contextlib.suppress(ConfigError):  # left as it is: validation names the problem
                    parameter = Parameter(parameter.name, value=spec.coerce(parameter.value))
            coerced.append(parameter)
        return coerced

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate run-time changes against the current values and apply them; never raises."""
        try:
            changes = {p.name: p.value for p in parameters if p.name in SPECS}
            current = self.values()
            reasons = problems(changes, current)
            if reasons:
                return SetParametersResult(successful=False, reason="; ".join(reasons))
            coerced, _ = coerce(changes)
            self._apply({**current, **coerced}, set(coerced))
            for name in coerced:
                self._unusable.pop(name, None)
        except Exception as error:  # a parameter call must never end the node
            self.get_logger().error(f"parameter change failed: {error!r}")
            return SetParametersResult(successful=False, reason=f"could not apply: {error}")
        return SetParametersResult(successful=True)

    def _apply(self, values: dict[str, Any], changed: set[str]) -> None:
        """Hand changed run-time values to the parts that use them, from the next frame on."""
        if self.configured is None:
            return  # an unconfigured lifecycle node: configure reads the parameters
        if {"tracker", "tracker_config"} & changed:
            for channel in self.channels.values():
                channel.perception.set_tracker(values["tracker"], values["tracker_config"])
        if set(ENGINE_PARAMETERS) & changed:
            self.configured.engine.settings = engine_settings(values)
        if set(OBSTACLE_PARAMETERS) & changed:
            for channel in self.channels.values():
                channel.perception.set_obstacle_settings(**dataclasses.asdict(obstacle_settings(values)))
        for channel in self.channels.values():
            channel.apply(channel_settings(values))
        self.health.limits = health_limits(values)

    def _configure(self) -> None:
        values = self.values()
        reasons = [*self._unusable.values(), *problems(values)]
        if reasons:
            raise ConfigError("; ".join(reasons))
        log = self.get_logger()
        log.info(f"loading model '{values['model']}' (device {values['device']}) ...")
        started = time.perf_counter()
        loaded = load_model(
            *(values[name] for name in ("model", "device", "half", "runtime", "precision")),
            inference_thread_counts(values["inference_threads"]),
        )
        if loaded.fallback:
            log.warning(loaded.fallback)
        engine = SegmentationEngine(loaded, engine_settings(values), log=log.warning)
        engine.warm_up()
        cameras = values["cameras"]
        perceptions = [
            Perception(engine, values["tracker"], values["tracker_config"], obstacle_settings(values)) for _ in cameras
        ]
        classes = f"{len(loaded.class_names)} classes" if loaded.has_classes else "class-agnostic"
        log.info(
            f"model ready in {time.perf_counter() - started:.1f} s: {loaded.source} on {loaded.device} "
            f"({loaded.runtime} {loaded.precision}), {classes}{'; ' + loaded.choice if loaded.choice else ''}"
        )
        self.health.limits = health_limits(values)
        text_backends = TextBackends(loaded.class_names, values, loaded.device, log.info)
        if not self.channels:
            compressed = values["input"] == "compressed"
            self.channels = {camera: CameraChannel(self, camera, compressed, self.health) for camera in cameras}
            self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        for channel, perception in zip(self.channels.values(), perceptions, strict=True):
            channel.configure(perception, text_backends, channel_settings(values))
        if len(cameras) > 1:
            topics = ", ".join(channel.image_topic for channel in self.channels.values())
            log.info(f"serving {len(cameras)} cameras in one batch: {topics}")
        self.configured = Configured(engine, text_backends)

    def _start(self) -> None:
        values = self.values()
        qos = qos_profile_sensor_data if values["image_qos"] == "sensor_data" else QoSProfile(depth=1)
        mailbox: LatestFrameMailbox[ReceivedFrame] = LatestFrameMailbox()
        for channel in self.channels.values():
            channel.start(mailbox, qos, self._prompt_group)
        timers = [
            self.create_timer(values["drop_log_period"], self._log_drops, callback_group=self._timer_group),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=self._timer_group),
        ]
        worker = InferenceWorker(mailbox, self._process, self._batch_failed)
        self.running = Running(mailbox, worker, timers)

    def _stop(self) -> None:
        running, self.running = self.running, None
        if running is None:
            return
        for channel in self.channels.values():
            channel.stop()
        for timer in running.timers:
            self.destroy_timer(timer)
        running.worker.stop()

    def _release(self) -> None:
        """Drop the model, after any background text-model load: native threads still loading
        when the process ends would abort it, and cleanup should free that memory too."""
        configured, self.configured = self.configured, None
        if configured is None:
            return
        configured.text_backends.wait_loaded(timeout=60.0)
        for channel in self.channels.values():
            channel.release()
        device = configured.engine.loaded.device
        del configured
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Stop threads and background loads; call before the ROS context goes down."""
        self._stop()
        self._release()

    def _warn_if_name_taken(self) -> None:
        self._duplicate_checks_left -= 1
        me = (self.get_name(), self.get_namespace())
        taken = self.get_node_names_and_namespaces().count(me) > 1
        if taken or self._duplicate_checks_left <= 0:
            self.destroy_timer(self._duplicate_check)
        if taken:
            self.get_logger().warning(
                f"another node named '{self.get_fully_qualified_name()}' is on this ROS domain: both answer the same "
                "topics and services (every frame gives two results); give one another name (-r __node:=...)"
            )

    def _publish_diagnostics(self) -> None:
        running, configured = self.running, self.configured
        if running is None or configured is None:
            return
        death = running.worker.check()
        if death is not None:
            self.health.worker_restarted(death)
            self.get_logger().error(f"the inference worker died ({death}); restarted it")
        loaded = configured.engine.loaded
        extra = {
            "device": str(loaded.device),
            "runtime": loaded.runtime,
            "model": loaded.source,
            "cameras": str(len(self.channels)),
        }
        threads = configured.engine.inference_threads
        if threads is not None:
            extra["inference threads"] = str(threads or "auto")
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

    def _log_drops(self) -> None:
        running = self.running
        if running is None:
            return
        dropped = running.mailbox.dropped
        if dropped > self._drops_logged:
            period = self.get_parameter("drop_log_period").value
            self.get_logger().info(
                f"dropped {dropped - self._drops_logged} frame(s) in the last {period:.0f} s "
                f"({dropped} in total): frames arrive faster than inference, the newest one is kept"
            )
            self._drops_logged = dropped

    def _process(self, frames: dict[str, ReceivedFrame], queued: bool) -> None:
        """Every camera's newest frame through one forward pass, then each through its channel;
        queued: frames arrive faster than they are processed, which the network's thread count follows.

        Runs on the worker. Each stage is contained: a frame that cannot be decoded is
        refused, a failed forward pass fails that batch, a failed publish fails that camera
        only; the worker goes on with the next frames in every case.
        """
        configured = self.configured
        if configured is None:
            return
        batch = []
        for camera, frame in frames.items():
            channel = self.channels[camera]
            try:
                batch.append((channel, frame, channel.decode(frame)))
            except ImageDecodeError as error:
                channel.refuse(error)
            except Exception as error:  # a decoder bug: this frame only
                self._frames_failed(error, [camera])
        if not batch:
            return
        configured.engine.follow_load(queued)
        headers = [frame.msg.header for _, frame, _ in batch]
        try:
            mask_sets = configured.engine.segment_batch(
                [image for _, _, image in batch],
                [stamp_to_ns(header.stamp) for header in headers],
                [header.frame_id for header in headers],
            )
        except Exception as error:  # keep serving: one bad batch must not stop the node
            self._frames_failed(error, [channel.camera for channel, _, _ in batch])
            return
        self.health.forward_pass(len(batch))
        for (channel, frame, image), masks in zip(batch, mask_sets, strict=True):
            try:
                self.health.processed(channel.publish(frame, image, masks))
            except Exception as error:  # keep serving, and publish the other cameras' frames
                self._frames_failed(error, [channel.camera])

    def _frames_failed(self, error: Exception, cameras: list[str]) -> None:
        self.health.failed(len(cameras))
        names = ", ".join(f"'{camera}'" for camera in cameras if camera)
        source = f" (camera {names})" if names else ""
        self.get_logger().error(f"frame failed{source}: {error!r}", throttle_duration_sec=2.0)

    def _batch_failed(self, error: Exception) -> None:
        """An error outside the per-stage handling of _process: count it and go on."""
        self.health.failed()
        self.get_logger().error(f"inference batch failed: {error!r}", throttle_duration_sec=2.0)


class FastSamNode(FastSamBehaviour):
    """The node, configured and running from construction on."""

    def __init__(self, node_name: str = "fastsam", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._set_up()
        self._configure()
        self._start()
