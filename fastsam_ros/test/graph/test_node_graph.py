"""The node in its own process, driven over DDS with real photos."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from fastsam_ros.ros.convert import msg_to_mask_set, stamp_from_ns, stamp_to_ns


def _image_array(msg, dtype, channels):
    shape = (msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width)
    return np.frombuffer(bytes(msg.data), dtype).reshape(shape)


def test_bus_frame_outputs_agree_with_the_engine(node_graph, node_engine, bus):
    stamp = node_graph.send(bus)
    result = node_graph.result_for(stamp)
    assert (result.width, result.height, result.header.frame_id) == (810, 1080, "camera")
    names = [instance.class_name for instance in result.instances]
    assert "bus" in names and names.count("person") >= 3
    assert result.processing_ms > 0

    received = msg_to_mask_set(result)
    expected = node_engine.segment(bus)
    assert np.array_equal(received.full_masks(), expected.full_masks())
    assert [i.id for i in result.instances] == list(range(len(result.instances)))

    label = node_graph.result_for(stamp, "label_image")
    assert label.encoding == "mono16"
    assert np.array_equal(_image_array(label, np.uint16, 1), expected.label_image())

    debug = node_graph.result_for(stamp, "debug_image")
    assert (debug.encoding, debug.width, debug.height) == ("bgr8", 810, 1080)
    overlay = _image_array(debug, np.uint8, 3)
    bus_instance = next(i for i in received.instances if i.class_name == "bus")
    tinted = overlay[bus_instance.full_mask(1080, 810)].astype(int)
    original = bus[bus_instance.full_mask(1080, 810)].astype(int)
    assert np.abs(tinted - original).mean() > 10, "the bus is tinted in the overlay"


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "bgra8", "rgba8"])
def test_supported_encodings_are_segmented(node_graph, zidane, encoding):
    pixels = {
        "rgb8": zidane[:, :, ::-1],
        "mono8": zidane[:, :, 1],
        "bgra8": cv2.cvtColor(zidane, cv2.COLOR_BGR2BGRA),
        "rgba8": cv2.cvtColor(zidane, cv2.COLOR_BGR2RGBA),
    }[encoding]
    result = node_graph.result_for(node_graph.send(np.ascontiguousarray(pixels), encoding))
    assert result.width == 1280
    assert sum(i.class_name == "person" for i in result.instances) >= (1 if encoding == "mono8" else 2)


def _send_raw(node_graph, encoding, height, width, step, data) -> int:
    import time

    from sensor_msgs.msg import Image

    stamp = time.time_ns()
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    msg.header.stamp = stamp_from_ns(stamp)
    node_graph.camera.publish(msg)
    return stamp


def test_bad_frames_are_refused_and_the_node_keeps_serving(node_graph, zidane):

    bad = [
        _send_raw(node_graph, "16UC1", 4, 4, 8, bytes(32)),
        _send_raw(node_graph, "yuv422", 4, 4, 8, bytes(32)),
        _send_raw(node_graph, "32FC3", 4, 4, 48, bytes(192)),
        _send_raw(node_graph, "bgr8", 0, 0, 0, b""),
        _send_raw(node_graph, "bgr8", 4, 4, 12, bytes(20)),
    ]
    good = node_graph.send(zidane)
    assert node_graph.result_for(good).width == 1280
    published = {stamp_to_ns(m.header.stamp) for m in node_graph.received["instances"]}
    assert not published & set(bad), "nothing is published for refused frames"
    log = node_graph.log_path.read_text()
    assert "unsupported encoding '16UC1'" in log or "frame refused" in log


def test_frame_size_changes_mid_stream(node_graph, bus, zidane):
    from fastsam_ros.tools.sample_frames import resized

    for image in (bus, zidane, resized(zidane, 640, 480), bus):
        result = node_graph.result_for(node_graph.send(image))
        assert (result.height, result.width) == image.shape[:2]
        label = node_graph.result_for(_stamp(result), "label_image")
        assert (label.height, label.width) == image.shape[:2]


def _stamp(msg) -> int:
    return stamp_to_ns(msg.header.stamp)


def test_4k_frame_is_segmented(node_graph, bus):
    from fastsam_ros.tools.sample_frames import resized

    frame = resized(bus, 3840, 2160)
    result = node_graph.result_for(node_graph.send(frame), timeout=120.0)
    assert (result.width, result.height) == (3840, 2160)
    assert "bus" in [i.class_name for i in result.instances]


def test_inference_threads_follow_the_load(node_graph, zidane):
    """Runtime openvino at inference_threads 0: every core for lone frames, one left to ROS while frames queue."""
    from diagnostic_msgs.msg import DiagnosticArray

    cores = os.cpu_count() or 1
    diagnostics: list[DiagnosticArray] = []
    subscription = node_graph.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def threads_of(diagnostic: DiagnosticArray) -> str:
        return {kv.key: kv.value for kv in diagnostic.status[0].values}["inference threads"]

    def threads_now() -> str:
        """The inference threads in the first /diagnostics message published after now."""
        now = time.time_ns()
        node_graph.wait(lambda: any(_stamp(d) > now for d in diagnostics), 10.0, "diagnostics")
        return threads_of(next(d for d in diagnostics if _stamp(d) > now))

    try:
        sent = []
        until = time.monotonic() + 4.0
        while time.monotonic() < until:  # about 20 frames a second, faster than they are segmented
            sent.append(node_graph.send(zidane))
            node_graph.spin()
        received = node_graph.received["instances"]
        node_graph.wait(lambda: {_stamp(m) for m in received} & set(sent[-3:]), 30.0, "the stream's last frames")
        # Read while frames still flowed, once the paces had settled: the stream's last frame may
        # find the camera already silent and run on every core.
        settled = sent[0] + 1_500_000_000
        during = [threads_of(d) for d in diagnostics if settled < _stamp(d) <= sent[-1]]
        assert during, "no diagnostics while the stream flowed"
        assert str(max(1, cores - 1)) in during, during
        # Both paces are smoothed, so the node comes back to every core within a few lone frames.
        back = None
        for count in range(1, 16):
            node_graph.result_for(node_graph.send(zidane))
            if count % 3 == 0 and threads_now() == str(cores):
                back = count
                break
        assert back is not None, "still on fewer threads after 15 lone frames"
    finally:
        node_graph.node.destroy_subscription(subscription)
