"""The node's frame path in this process: a real FastSamNode, configured on the real model with two
cameras, taking batches of frames as its inference worker hands them over, and parameters set
while it runs.

A stage that fails is made to fail by replacing it for one call (a decoder or publisher bug
cannot be provoked with a valid input, which is the point of containing it); everything else
runs for real.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from std_msgs.msg import Header

from fastsam_ros.core.image_codec import ImageDecodeError
from fastsam_ros.core.parameters import PARAMETERS
from fastsam_ros.core.settings import node_settings
from fastsam_ros.ros import node as node_module
from fastsam_ros.ros.camera_channel import ReceivedFrame
from fastsam_ros.ros.convert import array_to_image, stamp_from_ns
from fastsam_ros.ros.node import DUPLICATE_CHECK_PERIOD_S, DUPLICATE_CHECKS, FastSamNode

TINY_CLIP = str(Path(__file__).parents[1] / "data" / "tiny-clip.json")
CAMERAS = ("left", "right")


def _node(ros_graph, name: str, **overrides: object) -> FastSamNode:
    """A FastSamNode of this process's graph, not started (autostart false) unless the test starts it."""
    return FastSamNode(
        name,
        namespace=ros_graph.namespace,
        context=ros_graph.context,
        parameter_overrides=[Parameter(key, value=value) for key, value in {"autostart": False, **overrides}.items()],
    )


@pytest.fixture(scope="module")
def node(ros_graph):
    overrides = {
        "runtime": "torch",
        "device": "cpu",
        "imgsz": 160,
        "cameras": list(CAMERAS),
        "text_backend": "clip",
        "clip_model": TINY_CLIP,
        "clip_pretrained": "",
        "image_qos": "reliable",
    }
    made = _node(ros_graph, "frame_path", **overrides)
    made.trigger_configure()
    made.trigger_activate()
    assert made.running is not None
    yield made
    made.close()
    made.destroy_node()


@pytest.fixture(scope="module")
def photos(bus, zidane) -> dict[str, np.ndarray]:
    """Half-size photos, one per camera: the frame path, not the resolution, is under test."""
    return {
        camera: cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        for camera, image in zip(CAMERAS, (bus, zidane), strict=True)
    }


def _frames(photos: dict[str, np.ndarray], stamp_ns: int) -> dict[str, ReceivedFrame]:
    return {
        camera: ReceivedFrame(
            array_to_image(image, "bgr8", Header(stamp=stamp_from_ns(stamp_ns), frame_id=f"{camera}_optical")),
            time.perf_counter(),
        )
        for camera, image in photos.items()
    }


def _latest_stamps(node: FastSamNode) -> dict[str, tuple[int, str]]:
    channels = node.configured.channels
    return {
        camera: (channel.latest.masks.stamp_ns, channel.latest.header.frame_id)
        for camera, channel in channels.items()
        if channel.latest is not None
    }


def _logged(capfd) -> list[str]:
    """The messages the nodes of this process logged since the last call, without their prefixes."""
    return [line.split("]: ", 1)[-1] for line in capfd.readouterr().err.splitlines()]


@pytest.fixture
def totals(node):
    """The health counters' changes during a test."""
    before = dict(node.health.totals)
    return lambda: {key: value - before[key] for key, value in node.health.totals.items() if value != before[key]}


def test_every_camera_of_a_batch_is_segmented_in_one_pass_and_published_on_its_own_channel(node, photos, totals):
    node._process(_frames(photos, 1_000), queued=False)
    assert totals() == {"processed": 2, "passes": 1}
    assert _latest_stamps(node) == {"left": (1_000, "left_optical"), "right": (1_000, "right_optical")}
    left, right = (node.configured.channels[camera].latest for camera in CAMERAS)
    assert (left.masks.width, left.masks.height) == (405, 540) and (right.masks.width, right.masks.height) == (640, 360)
    assert "bus" in {i.class_name for i in left.masks.instances}
    assert "bus" not in {i.class_name for i in right.masks.instances}
    assert all(i.track_id >= 1 for i in left.masks.instances), "the default tracker numbers instances"


def _calls(monkeypatch, owner: object, name: str) -> list[tuple]:
    """The arguments of every call of owner.name from now on; each call still reaches it."""
    calls: list[tuple] = []
    real = getattr(owner, name)

    def recorded(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def test_reliable_images_are_taken_reliably_one_at_a_time(node):
    """image_qos reliable (this module's node); the default, sensor data, in the lifecycle test."""
    for channel in node.configured.channels.values():
        [subscription] = [
            s for s in node.subscriptions if s.topic_name == f"{node.get_namespace()}/{channel.image_topic}"
        ]
        assert (subscription.qos_profile.depth, subscription.qos_profile.reliability) == (1, ReliabilityPolicy.RELIABLE)


def test_a_frame_that_cannot_be_decoded_is_refused_and_the_other_camera_goes_on(node, photos, totals, monkeypatch):
    refused = _calls(monkeypatch, node.configured.channels["left"], "refuse")
    frames = _frames(photos, 2_000)
    broken = frames["left"].msg
    broken.data = bytes(broken.data)[: len(broken.data) // 2]
    node._process(frames, queued=False)
    assert totals() == {"rejected": 1, "processed": 1, "passes": 1}
    [(error,)] = refused
    assert isinstance(error, ImageDecodeError) and "data" in str(error), "the channel says why"
    assert _latest_stamps(node)["right"] == (2_000, "right_optical")
    assert _latest_stamps(node).get("left", (None,))[0] != 2_000


def test_a_decoder_bug_fails_that_frame_only(node, photos, totals, monkeypatch):
    left = node.configured.channels["left"]

    def buggy(frame):
        raise ZeroDivisionError("a decoder bug")

    monkeypatch.setattr(left, "decode", buggy)
    failures = _calls(monkeypatch, node, "_frames_failed")
    node._process(_frames(photos, 3_000), queued=False)
    assert totals() == {"failed": 1, "processed": 1, "passes": 1}
    [(error, cameras)] = failures
    assert (repr(error), cameras) == ("ZeroDivisionError('a decoder bug')", ["left"])
    assert _latest_stamps(node)["right"] == (3_000, "right_optical")


def test_a_failed_forward_pass_fails_every_frame_of_the_batch_and_the_next_batch_runs(
    node, photos, totals, monkeypatch
):
    engine = node.configured.engine
    segment_batch = engine.segment_batch
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return segment_batch(*args, **kwargs)

    monkeypatch.setattr(engine, "segment_batch", fails_once)
    loads = _calls(monkeypatch, engine, "follow_load")
    failures = _calls(monkeypatch, node, "_frames_failed")
    node._process(_frames(photos, 4_000), queued=False)
    assert totals() == {"failed": 2}
    [(error, cameras)] = failures
    assert (repr(error), cameras) == ("RuntimeError('out of memory')", ["left", "right"])
    node._process(_frames(photos, 4_001), queued=True)
    assert totals() == {"failed": 2, "processed": 2, "passes": 1}
    assert loads == [(False,), (True,)], "whether frames queue, before each forward pass"
    images, stamps, frame_ids = calls[1]
    assert [image.shape[:2] for image in images] == [(540, 405), (360, 640)]
    assert (stamps, frame_ids) == ([4_001, 4_001], ["left_optical", "right_optical"])


def test_a_publish_that_fails_for_one_camera_leaves_the_other_published(node, photos, totals, monkeypatch):
    left = node.configured.channels["left"]

    def buggy(frame, image, masks):
        raise KeyError("a publisher bug")

    monkeypatch.setattr(left, "publish", buggy)
    failures = _calls(monkeypatch, node, "_frames_failed")
    published = _calls(monkeypatch, node.configured.channels["right"], "publish")
    node._process(_frames(photos, 5_000), queued=False)
    assert totals() == {"failed": 1, "processed": 1, "passes": 1}
    [(error, cameras)] = failures
    assert (repr(error), cameras) == ("KeyError('a publisher bug')", ["left"])
    [(frame, image, masks)] = published
    assert np.array_equal(image, photos["right"]), "the decoded frame, for the overlay and the obstacles"
    assert masks.stamp_ns == 5_000 and frame.msg.header.frame_id == "right_optical"
    assert _latest_stamps(node)["right"] == (5_000, "right_optical"), "the camera after the failed one"
    assert _latest_stamps(node).get("left", (None,))[0] != 5_000


def test_a_forward_pass_that_returns_fewer_results_than_frames_is_an_error_not_a_lost_camera(node, photos, monkeypatch):
    engine = node.configured.engine
    segment_batch = engine.segment_batch
    monkeypatch.setattr(engine, "segment_batch", lambda *args: segment_batch(*args)[:1])
    with pytest.raises(ValueError, match="shorter"):
        node._process(_frames(photos, 5_500), queued=False)


def test_nothing_to_decode_runs_no_forward_pass(node, photos, totals, monkeypatch):
    for channel in node.configured.channels.values():
        monkeypatch.setattr(channel, "decode", lambda frame: (_ for _ in ()).throw(ImageDecodeError("bad")))
    node._process(_frames(photos, 6_000), queued=False)
    assert totals() == {"rejected": 2}


def test_parameters_set_at_run_time_reach_the_engine_the_cameras_and_the_health_limits(node, photos):
    changes = {
        "conf": 0.7,
        "iou": 0.5,
        "imgsz": 192,
        "max_det": 3,
        "tracker": "botsort",
        "obstacle_min_area": 999,
        "obstacle_roi": [0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        "max_distance": 7.5,
        "max_pixels": 640 * 480,
        "depth_slop": 0.2,
        "max_prompt_points": 3,
        "diagnostics_max_latency_ms": 77.0,
        "diagnostics_max_drop_ratio": 0.4,
    }
    defaults = {name: node.get_parameter(name).value for name in changes}
    results = node.set_parameters([Parameter(name, value=value) for name, value in changes.items()])
    try:
        assert all(result.successful for result in results), [result.reason for result in results]
        engine = node.configured.engine.settings
        assert (engine.conf, engine.iou, engine.imgsz, engine.max_det) == (0.7, 0.5, 192, 3)
        for channel in node.configured.channels.values():
            obstacles = channel.perception.obstacle_settings
            assert (obstacles.min_area, obstacles.roi, obstacles.max_distance) == (
                999,
                (0.0, 0.0, 1.0, 0.0, 1.0, 1.0),
                7.5,
            )
            assert channel.settings.max_pixels == 640 * 480
            assert channel.settings.prompt_limits.max_points == 3
            assert channel._depth.slop_ns == 200_000_000
            assert channel.perception._tracker_spec == ("botsort", "")
        assert (node.health.limits.max_latency_ms, node.health.limits.max_drop_ratio) == (77.0, 0.4)
        node._process(_frames(photos, 7_000), queued=False)
        left = node.configured.channels["left"].latest.masks
        assert 0 < len(left) <= 3 and all(i.score >= 0.7 for i in left.instances), "the next frame uses them"
    finally:
        node.set_parameters([Parameter(name, value=value) for name, value in defaults.items()])
    assert node.configured.engine.settings.conf == 0.25


def test_a_refused_change_applies_nothing_and_says_why(node):
    [result] = node.set_parameters([Parameter("conf", value=1.5)])
    assert not result.successful and "conf" in result.reason
    assert node.configured.engine.settings.conf == 0.25 and node.get_parameter("conf").value == 0.25
    results = node.set_parameters_atomically([Parameter("conf", value=0.4), Parameter("obstacle_min_area", value=-1)])
    assert not results.successful and "obstacle_min_area" in results.reason
    assert node.configured.engine.settings.conf == 0.25, "an atomic change is applied whole or not at all"
    [result] = node.set_parameters([Parameter("cameras", value=["a"])])
    assert not result.successful, "read-only"


def test_every_refusal_of_a_change_is_given_and_a_value_of_another_type_is_refused_not_raised(node):
    results = node.set_parameters_atomically([Parameter("conf", value=1.5), Parameter("obstacle_min_area", value=-1)])
    assert results.successful is False
    assert [reason.split(":")[0] for reason in results.reason.split("; ")] == ["conf", "obstacle_min_area"]
    [result] = node.set_parameters([Parameter("conf", value="high")])
    assert result.successful is False, "the node leaves a value it cannot convert to the type check"
    assert node.get_parameter("conf").value == 0.25


def test_a_tracker_settings_file_is_checked_against_the_tracker_in_use(node, tmp_path):
    settings_file = tmp_path / "bytetrack.yaml"
    settings_file.write_text("tracker_type: bytetrack\ntrack_buffer: 60\n")
    [result] = node.set_parameters([Parameter("tracker", value="botsort")])
    try:
        assert result.successful, result.reason
        [result] = node.set_parameters([Parameter("tracker_config", value=str(settings_file))])
        assert result.successful is False
        assert result.reason == f"tracker_config: '{settings_file}' is for another tracker type, not 'botsort'"
    finally:
        node.set_parameters([Parameter("tracker", value="bytetrack")])


def test_a_change_that_cannot_be_applied_is_refused_and_logged(node, monkeypatch, capfd):
    def bug(settings):
        raise LookupError("an apply bug")

    monkeypatch.setattr(node.configured.channels["left"], "apply", bug)
    capfd.readouterr()
    [result] = node.set_parameters([Parameter("max_prompt_points", value=4)])
    assert (result.successful, result.reason) == (False, "could not apply: an apply bug")
    assert "parameter change failed: LookupError('an apply bug')" in _logged(capfd)
    assert node.get_parameter("max_prompt_points").value != 4, "refused: the value stays as it was"


def test_a_node_made_without_a_name_is_fastsam(ros_graph):
    made = FastSamNode(
        namespace=ros_graph.namespace,
        context=ros_graph.context,
        parameter_overrides=[Parameter("autostart", value=False)],
    )
    try:
        assert made.get_name() == "fastsam"
    finally:
        made.destroy_node()


def test_configure_builds_every_camera_and_the_engine_from_the_parameters(ros_graph, capfd, monkeypatch):
    made = _node(
        ros_graph,
        "built_path",
        runtime="torch",
        device="cpu",
        imgsz=160,
        cameras=["front", "back"],
        input="compressed",
        obstacle_min_area=999,
        cuda_graphs="on",
        text_backend="class_names",
        diagnostics_max_latency_ms=321.0,
    )
    try:
        capfd.readouterr()
        assert made.trigger_configure() == TransitionCallbackReturn.SUCCESS
        configured = made.configured
        assert configured.engine.settings.imgsz == 160
        assert made.health.limits.max_latency_ms == 321.0
        assert configured.diagnostics_pub.qos_profile.depth == 10
        for camera, channel in configured.channels.items():
            assert (channel.camera, channel.image_topic) == (camera, f"{camera}/image/compressed")
            assert channel.perception.obstacle_settings.min_area == 999
        configured.engine.segment_batch([np.zeros((48, 64, 3), np.uint8)], [1], ["front"])
        channel._prompts.text_backends.wait_loaded(60.0)
        logged = _logged(capfd)
        ready = [message for message in logged if message.startswith("model ready in ")]
        assert len(ready) == 1 and re.fullmatch(
            r"model ready in \d{1,2}\.\d s: \S+ on cpu \(torch f32\), 80 classes", ready[0]
        )
        assert "serving 2 cameras in one batch: front/image/compressed, back/image/compressed" in logged
        assert any(
            message.startswith("cuda_graphs 'on' needs the torch runtime on a CUDA device") for message in logged
        )
        assert any(message.startswith("text prompts ready (class_names backend") for message in logged)
        forgotten = [
            _calls(monkeypatch, channel.follower, "forget_track_ids") for channel in configured.channels.values()
        ]
        [result] = made.set_parameters([Parameter("conf", value=0.3)])
        assert result.successful and forgotten == [[], []], "the tracker in use is kept, and the followed ids with it"
    finally:
        made.close()
        made.destroy_node()


def test_a_configure_that_fails_half_way_releases_what_it_built(ros_graph, capfd, monkeypatch):
    built = []
    camera_channel = node_module.CameraChannel

    def second_camera_fails(*args):
        if built:
            raise LookupError("a camera bug")
        built.append(camera_channel(*args))
        return built[-1]

    monkeypatch.setattr(node_module, "CameraChannel", second_camera_fails)
    made = _node(ros_graph, "half_built", runtime="torch", device="cpu", imgsz=160, cameras=["front", "back"])
    try:
        assert made.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert len(built) == 1 and made.configured is None
        left = [p.topic_name for p in made.publishers if p.topic_name.endswith(("/diagnostics", "/front/instances"))]
        assert not left, "released"
        assert "configure failed: LookupError('a camera bug')" in _logged(capfd)
    finally:
        made.destroy_node()


def test_a_bug_while_configuring_fails_configure_and_is_what_start_up_raises(ros_graph, capfd, monkeypatch):
    def bug(*args):
        raise LookupError("a loader bug")

    monkeypatch.setattr(node_module, "load_model", bug)
    made = _node(ros_graph, "buggy_configure", runtime="torch", device="cpu")
    try:
        capfd.readouterr()
        with pytest.raises(LookupError, match="a loader bug"):
            made._start_up()
        assert made.configured is None
        assert "configure failed: LookupError('a loader bug')" in _logged(capfd)
    finally:
        made.destroy_node()


def test_a_whole_number_for_a_double_parameter_is_taken(node):
    [result] = node.set_parameters([Parameter("depth_slop", value=1)])
    try:
        assert result.successful, result.reason
        assert node.get_parameter("depth_slop").value == 1.0
        assert all(channel._depth.slop_ns == 1_000_000_000 for channel in node.configured.channels.values())
    finally:
        node.set_parameters([Parameter("depth_slop", value=0.05)])


def _diagnostics(node: FastSamNode, ros_graph) -> DiagnosticArray:
    """The diagnostics the node publishes when its timer calls, as a monitor receives them."""
    received = ros_graph.listen(DiagnosticArray, "/diagnostics", node.configured.diagnostics_pub.get_subscription_count)
    node._publish_diagnostics()
    name = f"{node.get_name()}: segmentation"
    ros_graph.spin_until(lambda: any(m.status[0].name == name for m in received), "the node's diagnostics")
    return [m for m in received if m.status[0].name == name][-1]


def test_diagnostics_name_the_node_its_device_runtime_model_and_cameras(node, ros_graph, photos):
    node._process(_frames(photos, 7_000), queued=False)
    message = _diagnostics(node, ros_graph)
    [status] = message.status
    assert status.name == "frame_path: segmentation"
    assert message.header.stamp.sec > 0, "stamped now"
    values = {kv.key: kv.value for kv in status.values}
    assert (status.hardware_id, values["device"], values["runtime"]) == ("cpu", "cpu", "torch")
    assert "inference threads" not in values, "torch chooses its own threads: nothing to report"
    assert values["cameras"] == "2" and values["model"] == node.configured.engine.loaded.source
    report = node.health.report(extra={})
    assert status.level == bytes([report.level]) and status.message == report.message


@pytest.mark.parametrize(("threads", "reported"), [(3, "3"), (0, "auto")])
def test_diagnostics_report_the_thread_count_of_a_runtime_that_sets_its_own(
    node, ros_graph, monkeypatch, threads, reported
):
    """OpenVINO's count (0: its own choice) stands in on the torch network: the report is under test."""
    backend = node.configured.engine.loaded.backend
    monkeypatch.setattr(type(backend), "inference_threads", property(lambda self: threads))
    [status] = _diagnostics(node, ros_graph).status
    assert {kv.key: kv.value for kv in status.values}["inference threads"] == reported


def test_a_dead_worker_is_restarted_by_the_diagnostics_and_the_report_says_why(node, photos, ros_graph, capfd):
    worker = node.running.worker
    restarts = node.health.totals["worker restarts"]

    def bug(*args):
        raise LookupError("a bug in the reporting")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "_process", bug)
        patch.setattr(worker, "_on_error", bug)
        node.running.mailbox.put(_frames(photos, 8_000)["left"], slot="left")
        deadline = time.monotonic() + 10.0
        while worker.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not worker.alive, "an error from the error report ends the thread"
    capfd.readouterr()
    [status] = _diagnostics(node, ros_graph).status
    assert worker.alive and node.health.totals["worker restarts"] == restarts + 1
    assert status.level == bytes([2])
    assert status.message.startswith("inference worker died and was restarted: LookupError('a bug in the reporting')")
    logged = capfd.readouterr().err
    assert "the inference worker died (LookupError('a bug in the reporting')); restarted it" in logged
    node._process(_frames(photos, 8_001), queued=False)
    assert not node.health.report().message.startswith("inference worker died"), "a processed frame clears it"


def test_an_error_from_the_frame_path_is_counted_and_the_worker_goes_on(node, photos, totals):
    worker = node.running.worker
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(worker, "_process", lambda frames, queued: (_ for _ in ()).throw(LookupError("a worker bug")))
        node.running.mailbox.put(_frames(photos, 8_500)["left"], slot="left")
        deadline = time.monotonic() + 10.0
        while not totals() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert totals() == {"failed": 1} and worker.alive, "the node's error handler, then the next frames"


def test_failed_frames_are_counted_and_logged_with_their_cameras_once_per_burst(ros_graph, capfd):
    """A node of its own: its logger has not logged a failure yet, which the throttle would hold back."""
    fresh = _node(ros_graph, "failures")
    try:
        capfd.readouterr()
        fresh._frames_failed(RuntimeError("out of memory"), ["left", "right"])
        fresh._frames_failed(ZeroDivisionError("a decoder bug"), ["left"])
        fresh._batch_failed(LookupError("a worker bug"))
        fresh._batch_failed(LookupError("another worker bug"))
        assert fresh.health.totals["failed"] == 5
        logged = [message for message in _logged(capfd) if "failed" in message]
        assert logged == [
            "frame failed (camera 'left', 'right'): RuntimeError('out of memory')",
            "inference batch failed: LookupError('a worker bug')",
        ], "a burst logs its first failure of each kind"
    finally:
        fresh.destroy_node()


def test_a_failed_frame_of_the_one_unnamed_camera_names_no_camera(ros_graph, capfd):
    fresh = _node(ros_graph, "unnamed_failure")
    try:
        capfd.readouterr()
        fresh._frames_failed(RuntimeError("out of memory"), [""])
        logged = [message for message in _logged(capfd) if "failed" in message]
        assert logged == ["frame failed: RuntimeError('out of memory')"]
    finally:
        fresh.destroy_node()


def test_dropped_frames_are_logged_once_per_period_with_the_new_and_total_counts(node, capfd):
    running = node.running
    before = running.mailbox.dropped
    capfd.readouterr()
    try:
        running.mailbox.dropped = before + 3
        node._log_drops()
        node._log_drops()
        running.mailbox.dropped = before + 5
        node._log_drops()
    finally:
        running.mailbox.dropped = before
        node._drops_logged = before
    period = f"{running.drop_log_period_s:.0f} s"
    logged = [message for message in _logged(capfd) if "dropped" in message]
    tail = "frames arrive faster than inference, the newest one is kept"
    assert logged == [
        f"dropped 3 frame(s) in the last {period} ({before + 3} in total): {tail}",
        f"dropped 2 frame(s) in the last {period} ({before + 5} in total): {tail}",
    ]


def test_autostart_configures_and_activates_the_node_as_it_is_made(ros_graph):
    """The default, as `fastsam_node` starts: no lifecycle manager is needed."""
    made = FastSamNode(
        "autostarted",
        namespace=ros_graph.namespace,
        context=ros_graph.context,
        parameter_overrides=[Parameter(key, value=value) for key, value in (("runtime", "torch"), ("imgsz", 160))],
    )
    try:
        assert made.configured is not None and made.running is not None
        assert made._state_machine.current_state[1] == "active"
    finally:
        made.close()
        made.destroy_node()


def test_each_parameter_is_described_as_the_table_gives_it_with_its_allowed_values(node):
    """What `ros2 param describe` shows: the table's text, then the allowed values where there is a set or a range."""
    described = {spec.name: (spec, node.describe_parameter(spec.name).description) for spec in PARAMETERS}
    runtime, text = described["runtime"]
    assert text == f"{runtime.description} Allowed: `auto`, `torch`, `onnxruntime`, `openvino`."
    conf, text = described["conf"]
    assert text == f"{conf.description} Allowed: 0 to 1."
    autostart, text = described["autostart"]
    assert text == autostart.description
    assert all(text.startswith(spec.description) for spec, text in described.values())


def test_a_second_node_of_the_same_name_is_warned_about_once(node, ros_graph, capfd):
    twin = _node(ros_graph, "frame_path")
    try:
        ros_graph.spin_until(
            lambda: node.get_node_names_and_namespaces().count(("frame_path", ros_graph.namespace)) == 2,
            "the twin in the graph",
        )
        capfd.readouterr()
        node._duplicate_checks_left = 3
        node._warn_if_name_taken()
        assert node._duplicate_check not in node.timers, "warned once: no more checks"
        warned = capfd.readouterr().err
        assert (
            warned.count(
                f"another node named '{ros_graph.namespace}/frame_path' is on this ROS domain: both answer the same "
                "topics and services (every frame gives two results); give one another name (-r __node:=...)"
            )
            == 1
        )
        assert node._duplicate_checks_left == 2
    finally:
        twin.destroy_node()


def test_without_a_twin_the_name_is_checked_a_fixed_number_of_times_then_no_more(ros_graph, capfd):
    alone = _node(ros_graph, "alone_in_the_graph")
    try:
        assert alone._duplicate_checks_left == DUPLICATE_CHECKS
        check = alone._duplicate_check
        assert (check.callback, check.callback_group, check.timer_period_ns) == (
            alone._warn_if_name_taken,
            alone._timer_group,
            int(DUPLICATE_CHECK_PERIOD_S * 1e9),
        )
        for _ in range(DUPLICATE_CHECKS - 1):
            alone._warn_if_name_taken()
        assert alone._duplicate_check in alone.timers, "checked until the last period"
        alone._warn_if_name_taken()
        assert alone._duplicate_checks_left == 0
        assert alone._duplicate_check not in alone.timers, "the check's timer is gone after its last check"
        assert "another node named" not in capfd.readouterr().err
    finally:
        alone.destroy_node()


def _activated(made: FastSamNode, image_topic: str, stamp: int) -> tuple[int, bool]:
    """Checks what activation sets up: the image subscription's QoS (depth, and whether reliable),
    the timers (diagnostics once a second) and the callback groups (prompts answered side by side,
    the timers never behind them); a frame handed to the subscription reaches the channel's latest."""
    running = made.running
    [subscription] = [s for s in made.subscriptions if s.topic_name == image_topic]
    periods = {timer.timer_period_ns: timer.callback for timer in running.timers}
    assert periods == {int(running.drop_log_period_s * 1e9): made._log_drops, 1_000_000_000: made._publish_diagnostics}
    assert all(timer.callback_group is made._timer_group for timer in running.timers)
    prompts = [s for s in made.services if s.srv_name.endswith(("/prompt_point", "/prompt_text", "/follow_box"))]
    assert len(prompts) == 3 and all(s.callback_group is made._prompt_group for s in prompts)
    header = Header(stamp=stamp_from_ns(stamp), frame_id="camera")
    subscription.callback(array_to_image(np.zeros((48, 64, 3), np.uint8), "bgr8", header))
    channel = made.configured.channels[""]
    deadline = time.monotonic() + 20.0
    while (channel.latest is None or channel.latest.masks.stamp_ns != stamp) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert channel.latest.masks.stamp_ns == stamp, "the subscription feeds the worker's mailbox"
    qos = subscription.qos_profile
    return qos.depth, qos.reliability == ReliabilityPolicy.RELIABLE


def test_the_lifecycle_in_one_process_takes_frames_only_while_active_and_repairs_a_failed_configure(
    ros_graph, capfd, monkeypatch
):
    made = _node(ros_graph, "lifecycle_path", runtime="torch", device="cpu", imgsz=160, conf="high", iou=2.0)
    loads = _calls(monkeypatch, node_module, "load_model")
    image_topic = f"{ros_graph.namespace}/image"
    try:
        assert made.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert made.configured is None and made._configure_error is not None and not loads
        [failed] = [message for message in _logged(capfd) if message.startswith("configure failed")]
        assert re.fullmatch(r"configure failed: conf: [^;]+; iou: [^;]+", failed), "every reason, the unusable first"
        results = made.set_parameters([Parameter("conf", value=0.3), Parameter("iou", value=0.7)])
        assert all(result.successful for result in results), [result.reason for result in results]
        assert made.trigger_configure() == TransitionCallbackReturn.SUCCESS
        model = node_settings(made.values()).model
        assert loads == [(model.model, "cpu", False, "torch", "auto", model.inference_threads)]
        logged = _logged(capfd)
        assert f"loading model '{model.model}' (device cpu) ..." in logged
        assert not [message for message in logged if message.startswith("serving")], "one camera: no batch to name"
        assert made.configured is not None and made._configure_error is None and made.running is None
        assert not [s for s in made.subscriptions if s.topic_name == image_topic], "no frame taken before activate"
        assert made.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert "active: segmenting frames" in _logged(capfd)
        assert _activated(made, image_topic, 9_000) == (5, False), "sensor data: best effort, the newest 5"
        made.running.mailbox.dropped = 3
        made._log_drops()
        timers = made.running.timers
        assert made.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert made.running is None and not [s for s in made.subscriptions if s.topic_name == image_topic]
        assert not [timer for timer in timers if timer in made.timers], "no diagnostics or drop log while inactive"
        made._publish_diagnostics()  # the timer is gone, a call already under way finds nothing to report
        assert "inactive: not taking frames" in _logged(capfd)
        assert made.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert _activated(made, image_topic, 9_001) == (5, False)
        made.running.mailbox.dropped = 2
        made._log_drops()
        assert "dropped 2 frame(s) in the last" in capfd.readouterr().err, "counted afresh after a new activation"
        assert made.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert made.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert made.configured is None
        assert "unconfigured: model released" in _logged(capfd)
        assert made.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert made.trigger_activate() == TransitionCallbackReturn.SUCCESS
        made.close()
        assert (made.running, made.configured, made._finalized) == (None, None, True)
        assert made._state_machine.current_state[1] == "finalized", "closed through the shutdown transition"
    finally:
        made.close()
        made.destroy_node()
