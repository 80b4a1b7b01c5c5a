"""CompressedImage input: JPEG frames are segmented, corrupt ones refused, the node keeps serving."""

from __future__ import annotations

import time

import cv2
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage

from fastsam_ros.ros.convert import stamp_from_ns, stamp_to_ns

NODE_PARAMETERS = ["input:=compressed"]
NODE_ARGS = ["-r", "image/compressed:=/test/camera/image_raw/compressed"]
WARM_UP = False


def _compressed_sender(node_graph):
    """A function publishing compressed bytes on the node's camera topic and returning their stamp."""
    publisher = node_graph.node.create_publisher(
        CompressedImage, "/test/camera/image_raw/compressed", qos_profile_sensor_data
    )
    node_graph.wait(lambda: publisher.get_subscription_count() > 0, 60.0, "compressed subscription")

    def send(data: bytes) -> int:
        stamp = time.time_ns()
        msg = CompressedImage(format="jpeg", data=data)
        msg.header.stamp = stamp_from_ns(stamp)
        publisher.publish(msg)
        return stamp

    return send


def test_jpeg_frames_and_corrupt_data(node_graph, zidane):
    send = _compressed_sender(node_graph)
    jpeg = cv2.imencode(".jpg", zidane)[1].tobytes()

    result = None
    for _ in range(10):
        try:
            result = node_graph.result_for(send(jpeg), timeout=3.0)
            break
        except TimeoutError:
            continue
    assert result is not None and sum(i.class_name == "person" for i in result.instances) >= 2
    corrupt = send(jpeg[:200] + b"\0" * 500)
    empty = send(b"")
    good = send(jpeg)
    assert node_graph.result_for(good).width == 1280
    published = {stamp_to_ns(m.header.stamp) for m in node_graph.received["instances"]}
    assert corrupt not in published and empty not in published
    log = node_graph.log_path.read_text()
    assert "could not be decoded" in log or "no data" in log, log


def _declaring(encoded: bytes, kind: str, width: int, height: int) -> bytes:
    """A small real image whose header claims another size (a decompression bomb)."""
    import struct

    data = bytearray(encoded)
    if kind == "jpeg":
        at = data.find(b"\xff\xc0")
        data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    else:  # BMP: width and height at bytes 18..25
        data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def test_decompression_bombs_are_refused_from_their_header(node_graph, zidane):
    import psutil

    send = _compressed_sender(node_graph)
    small = cv2.resize(zidane, (64, 40))
    bombs = [
        _declaring(cv2.imencode(".jpg", small)[1].tobytes(), "jpeg", 65000, 65000),
        _declaring(cv2.imencode(".bmp", small)[1].tobytes(), "bmp", 70000, 70000),
        _declaring(cv2.imencode(".jpg", small)[1].tobytes(), "jpeg", 20000, 20000),
    ]
    jpeg = cv2.imencode(".jpg", zidane)[1].tobytes()

    def answered() -> object:
        """The next good frame's result; best-effort frames may be lost on a busy host, so resend."""
        for _ in range(10):
            try:
                return node_graph.result_for(send(jpeg), timeout=3.0)
            except TimeoutError:
                continue
        raise TimeoutError("no good frame answered after a bomb")

    answered()
    before = psutil.Process(node_graph.process.pid).memory_info().rss
    for bomb in bombs:
        refused = send(bomb)
        good = answered()
        assert good.width == 1280 and sum(i.class_name == "person" for i in good.instances) >= 2
        assert refused not in {stamp_to_ns(m.header.stamp) for m in node_graph.received["instances"]}
    # A decoded bomb takes 1.2 GB at least (20000 x 20000 x 3); the good frames answered in between
    # alone grew the node by up to 102 MB on a loaded 2-core machine.
    assert psutil.Process(node_graph.process.pid).memory_info().rss - before < 300 * 2**20
