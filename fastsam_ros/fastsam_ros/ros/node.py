"""The fastsam ROS 2 node: a lifecycle node, the scheduler around the cameras and the segmentation engine.

unconfigured --configure--> inactive: parameters validated, model loaded, publishers made
inactive --activate--> active: frames taken in, services offered, outputs published
active --deactivate--> inactive: no subscription, no inference, no growth
inactive --cleanup--> unconfigured: model released (GPU memory too), publishers dropped

With the parameter autostart (fastsam_node) the node configures and activates itself at
start, as a lifecycle manager would; without it (fastsam_lifecycle_node) it waits for one.
Parameters are validated from construction on, also while unconfigured, and configure
reads their current values: a configure that failed succeeds once they are corrected.

The node owns what cameras share: the parameters, the model, the mailbox, the one
inference worker and /diagnostics. Each camera's whole path (subscriptions, arrival
checks, decoding, depth, tracking, obstacles, following, publishing, prompt and follow
services) belongs to its CameraChannel. Threads: the executor runs the camera callbacks (which only check a
frame's header and drop it into the camera's one-slot mailbox), the prompt services
(in their own reentrant callback group) and the timers; the worker segments the
newest frame of every camera in one batch and hands each result back to its channel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.timer import Timer
from std_msgs.msg import Header

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.engine import SegmentationEngine
from fastsam_ros.core.frame_mailbox import LatestFrameMailbox
from fastsam_ros.core.health import HealthMonitor
from fastsam_ros.core.image_codec import ImageDecodeError
from fastsam_ros.core.inference_worker import InferenceWorker
from fastsam_ros.core.parameters import PARAMETERS, SPECS, ConfigError, coerce
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.settings import NodeSettings, node_settings, problems
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.camera_channel import CameraChannel, ReceivedFrame
from fastsam_ros.ros.convert import stamp_to_ns

DUPLICATE_CHECK_PERIOD_S = 2.0
DUPLICATE_CHECKS = 10
"""Discovery may take seconds on a busy host: the graph is checked for a node of the same name
every DUPLICATE_CHECK_PERIOD_S for the first DUPLICATE_CHECKS periods, and a match warned about once."""


@dataclass(frozen=True)
class Configured:
    """What configure builds and cleanup releases: the model and everything made around it."""

    engine: SegmentationEngine
    channels: dict[str, CameraChannel]
    diagnostics_pub: LifecyclePublisher
    release: contextlib.ExitStack
    """Releases all of the above, in the reverse order of building."""


@dataclass(frozen=True)
class Running:
    """What activate starts and deactivate stops."""

    mailbox: LatestFrameMailbox[ReceivedFrame]
    worker: InferenceWorker[ReceivedFrame]
    channels: list[CameraChannel]
    timers: list[Timer]
    drop_log_period_s: float


class FastSamNode(LifecycleNode):
    """The node; its states are described at the top of this module."""

    def __init__(self, node_name: str = "fastsam", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.health = HealthMonitor()
        self.configured: Configured | None = None
        self.running: Running | None = None
        self._configure_error: Exception | None = None
        self._finalized = False
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
        if self.get_parameter("autostart").value:
            self._start_up()

    def _declare_parameters(self) -> dict[str, str]:
        """Declare every parameter of PARAMETERS, taking values as people type them.

        rclpy refuses a start-up value whose type differs from the default's (5 for a double;
        fastsam_ros.core.compat.RCLPY_OVERRIDE_TYPE), so each parameter is declared untyped,
        then given its type and its value converted, through rclpy's public API. A
        value that cannot be converted is replaced by the default and its reason kept: configure
        fails with it until the parameter is set to a usable value.
        """
        unusable = {}
        for spec in PARAMETERS:
            given = self.declare_parameter(spec.name, spec.default, ParameterDescriptor(dynamic_typing=True)).value
            try:
                value = spec.coerce(given)
            except ConfigError as error:
                unusable[spec.name] = str(error)
                value = spec.default
            allowed = spec.allowed()
            typed = ParameterDescriptor(
                type=Parameter.Type.from_parameter_value(spec.default).value,
                description=spec.description + (f" Allowed: {allowed}." if allowed else ""),
                read_only=not spec.runtime,
            )
            self.set_descriptor(spec.name, typed, Parameter(spec.name, value=value).get_parameter_value())
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
            if self.configured is not None:  # unconfigured, configure reads the parameters
                self._apply(node_settings({**current, **coerced}))
            for name in coerced:
                self._unusable.pop(name, None)
        except Exception as error:  # a parameter call must never end the node
            self.get_logger().error(f"parameter change failed: {error!r}")
            return SetParametersResult(successful=False, reason=f"could not apply: {error}")
        return SetParametersResult(successful=True)

    def _apply(self, settings: NodeSettings) -> None:
        """Hand the run-time settings to the parts that use them, from the next frame on
        (each part keeps what did not change: a tracker is replaced only when its settings change)."""
        configured = self.configured
        if configured is None:
            return
        configured.engine.settings = settings.engine
        for channel in configured.channels.values():
            channel.set_tracker(settings.tracker.kind, settings.tracker.config_path)
            channel.perception.set_obstacle_settings(**dataclasses.asdict(settings.obstacles))
            channel.apply(settings.camera)
        self.health.limits = settings.health

    def _start_up(self) -> None:
        """Configure and activate, as a lifecycle manager would; raises what made configure fail."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise self._configure_error or RuntimeError("configure failed")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError("activate failed")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.configured = self._configure()
        except (ConfigError, ModelLoadError) as error:
            self.get_logger().error(f"configure failed: {error}")
            self._configure_error = error
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # a bug: stay unconfigured and able to try again
            self.get_logger().error(f"configure failed: {error!r}")
            self._configure_error = error
            return TransitionCallbackReturn.FAILURE
        self._configure_error = None
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> Configured:
        """Load the model and build every camera around it, committing nothing to the node:
        what was built is released again when a step fails."""
        values = self.values()
        reasons = [*self._unusable.values(), *problems(values)]
        if reasons:
            raise ConfigError("; ".join(reasons))
        settings = node_settings(values)
        model = settings.model
        log = self.get_logger()
        log.info(f"loading model '{model.model}' (device {model.device}) ...")
        started = time.perf_counter()
        loaded = load_model(
            model.model, model.device, model.half, model.runtime, model.precision, model.inference_threads
        )
        if loaded.fallback:
            log.warning(loaded.fallback)
        with contextlib.ExitStack() as undo:
            engine = SegmentationEngine(loaded, settings.engine, log=log.warning)
            undo.callback(engine.release)
            engine.warm_up()
            classes = f"{len(loaded.class_names)} classes" if loaded.has_classes else "class-agnostic"
            log.info(
                f"model ready in {time.perf_counter() - started:.1f} s: {loaded.source} on {loaded.device} "
                f"({loaded.runtime} {loaded.precision}), {classes}{'; ' + loaded.choice if loaded.choice else ''}"
            )
            text_backends = TextBackends(loaded.class_names, values, loaded.device, log.info)
            diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
            undo.callback(self.destroy_lifecycle_publisher, diagnostics_pub)
            channels = {}
            for camera in settings.cameras:
                tracker = (settings.tracker.kind, settings.tracker.config_path)
                perception = Perception(*tracker, settings.obstacles)
                channel = CameraChannel(
                    self,
                    camera,
                    settings.compressed_input,
                    self.health,
                    perception,
                    text_backends,
                    settings.camera,
                    tracker,
                )
                undo.callback(channel.destroy)
                channels[camera] = channel
            if len(channels) > 1:
                topics = ", ".join(channel.image_topic for channel in channels.values())
                log.info(f"serving {len(channels)} cameras in one batch: {topics}")
            configured = Configured(engine, channels, diagnostics_pub, undo.pop_all())
        self.health.limits = settings.health
        return configured

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        configured = self.configured
        if configured is None:
            return TransitionCallbackReturn.FAILURE
        enabled = super().on_activate(state)  # the lifecycle publishers publish from here on
        settings = node_settings(self.values())
        qos = QoSProfile(depth=1) if settings.reliable_images else qos_profile_sensor_data
        mailbox: LatestFrameMailbox[ReceivedFrame] = LatestFrameMailbox()
        for channel in configured.channels.values():
            channel.start(mailbox, qos, self._prompt_group)
        timers = [
            self.create_timer(settings.drop_log_period_s, self._log_drops, callback_group=self._timer_group),
            self.create_timer(1.0, self._publish_diagnostics, callback_group=self._timer_group),
        ]
        self._drops_logged = 0
        worker = InferenceWorker(mailbox, self._process, self._batch_failed)
        channels = list(configured.channels.values())
        self.running = Running(mailbox, worker, channels, timers, settings.drop_log_period_s)
        self.get_logger().info("active: segmenting frames")
        return enabled

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.get_logger().info("inactive: not taking frames")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._release()
        self._finalized = True
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and release everything, back to unconfigured."""
        self.get_logger().error(f"a transition from {state.label} failed; stopping and releasing the model")
        self._stop()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop(self) -> None:
        """The reverse of activate: no frame is taken in, nothing is computed."""
        running, self.running = self.running, None
        if running is None:
            return
        for channel in running.channels:
            channel.stop()
        for timer in running.timers:
            self.destroy_timer(timer)
        running.worker.stop()

    def _release(self) -> None:
        """The reverse of configure: the model (and its memory), the publishers."""
        configured, self.configured = self.configured, None
        if configured is not None:
            configured.release.close()

    def close(self) -> None:
        """Stop threads and release the model before the ROS context goes down: through the
        shutdown transition while ROS runs (the node is then finalized), directly after that."""
        if self.context.ok() and not self._finalized:
            self.trigger_shutdown()
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
            "cameras": str(len(configured.channels)),
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
        configured.diagnostics_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )

    def _log_drops(self) -> None:
        running = self.running
        if running is None:
            return
        dropped = running.mailbox.dropped
        if dropped > self._drops_logged:
            self.get_logger().info(
                f"dropped {dropped - self._drops_logged} frame(s) in the last {running.drop_log_period_s:.0f} s "
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
            channel = configured.channels[camera]
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
