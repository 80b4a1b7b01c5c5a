"""The user's own data through the real node: fastsam_play sources in, fastsam_record out.

fastsam_play runs as its own process, as a user runs it; this process listens on the
camera topic next to the node, so every published frame can be checked for order,
pace, stamps and pixels, and the node's answers for the same stamps.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fastsam_ros.ros.convert import image_to_bgr, stamp_to_ns
from fastsam_ros.tools.node_client import installed_command
from fastsam_ros.tools.play import DELIVERY_GRACE_S
from fastsam_ros.tools.sample_frames import asset_image, camera_frames, panned
from fastsam_ros.tools.sample_videos import sample_video

CAMERA = "/test/camera/image_raw"


class CameraTap:
    """Every frame on the camera topic, as the node sees it: (stamp ns, frame_id, BGR pixels).

    Best effort like the node, but with room for every frame of a test: this process may
    not spin for a while when the node takes both cores."""

    def __init__(self, client) -> None:
        self.frames: list[tuple[int, str, np.ndarray]] = []
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.subscription = client.node.create_subscription(Image, CAMERA, self._on_frame, qos)

    def _on_frame(self, msg: Image) -> None:
        self.frames.append((stamp_to_ns(msg.header.stamp), msg.header.frame_id, image_to_bgr(msg)))


@pytest.fixture
def tap(node_graph):
    tap = CameraTap(node_graph)
    node_graph.received["instances"].clear()
    yield tap
    node_graph.node.destroy_subscription(tap.subscription)


@dataclass
class Playback:
    output: str
    left_ns: int
    """Wall-clock time at which this process saw the player's publisher leave the graph."""


def play(client, *args: str, timeout: float = 60.0) -> Playback:
    """fastsam_play against the running node, spinning the client while it plays."""
    others = client.node.count_publishers(CAMERA)
    process = subprocess.Popen(
        [installed_command("fastsam_play"), *args, "--no-node", "--topic", CAMERA,
         "--subscribers", "2", "--linger", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def players() -> int:
        return client.node.count_publishers(CAMERA) - others

    client.wait(lambda: players() > 0 or process.poll() is not None, timeout, "fastsam_play to publish")
    client.wait(lambda: players() == 0, timeout, "fastsam_play to leave")
    left_ns = time.time_ns()
    client.wait(lambda: process.poll() is not None, timeout, "fastsam_play to finish")
    output = process.stdout.read()
    assert process.returncode == 0, output
    return Playback(output, left_ns)


def check_played(
    client, tap: CameraTap, playback: Playback, expected: list[np.ndarray], rate: float, frame_id: str
) -> float:
    """The tap's frames are the source's, in order, at the rate, with the frame_id, and the node
    answered them in order; the player stayed long enough for its last frame to be taken, though
    told not to linger. Returns the achieved rate.

    Frames are best-effort, as from a camera: on a busy host one may be lost on its way to this
    process (the player's progress bar counts what it published), so one missing is allowed.
    """
    count = len(expected)
    with contextlib.suppress(TimeoutError):
        client.wait(lambda: len(tap.frames) >= count, 10.0, "every frame on the camera topic")
    assert count - 1 <= len(tap.frames) <= count, f"{len(tap.frames)} of {count} frames arrived"
    client.result_for(tap.frames[-1][0], timeout=30.0)
    indices = [
        next((i for i, want in enumerate(expected) if np.array_equal(got, want)), -1) for _, _, got in tap.frames
    ]
    assert -1 not in indices and indices == sorted(set(indices)), f"source frames in arrival order: {indices}"
    stamps = [stamp for stamp, _, _ in tap.frames]
    assert playback.left_ns - stamps[-1] >= DELIVERY_GRACE_S * 1e9, "the player left right after its last frame"
    assert {frame for _, frame, _ in tap.frames} == {frame_id}
    intervals = np.diff(stamps) / 1e9 / np.diff(indices)
    achieved = 1.0 / float(np.median(intervals))
    assert achieved == pytest.approx(rate, rel=0.15), f"median interval {np.median(intervals):.3f} s"
    # An answer to a frame sent before this playback (the fixture's warm-up) may arrive late on a busy host.
    answered = [s for s in (stamp_to_ns(m.header.stamp) for m in client.received["instances"]) if s >= stamps[0]]
    # The node may have answered the frame that the tap lost, and nothing else.
    assert answered and len(set(answered) - set(stamps)) <= count - len(stamps) and answered == sorted(answered)
    print(f"\nplay: {len(stamps)} of {count} frames at {rate} Hz, achieved {achieved:.2f} Hz; answered {len(answered)}")
    return achieved


def test_video_plays_in_order_at_the_requested_rate(node_graph, tap):
    video = sample_video("vtest.avi")
    playback = play(node_graph, str(video), "--rate", "5", "--limit", "8", "--frame-id", "street", "--quiet")
    capture = cv2.VideoCapture(str(video))
    check_played(node_graph, tap, playback, [capture.read()[1] for _ in range(8)], 5.0, "street")


def test_image_folder_plays_in_name_order(node_graph, tap, tmp_path):
    frames = camera_frames(640, 480, 6)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"frame_{index:02d}.png"), frame)
    (tmp_path / "notes.txt").write_text("not an image")
    playback = play(node_graph, str(tmp_path), "--rate", "8")
    assert "6/6" in playback.output  # the progress bar counted every frame
    check_played(node_graph, tap, playback, frames, 8.0, "camera")


def test_bag_topic_plays_at_its_recorded_pace(node_graph, tap, tmp_path):
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CompressedImage

    from fastsam_ros.ros.convert import array_to_image

    typestore = get_typestore(Stores.ROS2_KILTED)
    frames = panned(asset_image("bus.jpg"), 640, 800, 5)
    jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in frames]
    bag = tmp_path / "street"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        compressed = writer.add_connection(
            "/front/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=typestore
        )
        raw = writer.add_connection("/rear/image", "sensor_msgs/msg/Image", typestore=typestore)
        for index, jpeg in enumerate(jpegs):
            log_time = 1_700_000_000_000_000_000 + index * 250_000_000  # 4 Hz
            writer.write(compressed, log_time, serialize_message(CompressedImage(format="jpeg", data=jpeg)))
            writer.write(raw, log_time, serialize_message(array_to_image(np.zeros((8, 8, 3), np.uint8), "bgr8")))
    playback = play(node_graph, str(bag), "--bag-topic", "/front/image/compressed")
    decoded = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for jpeg in jpegs]
    check_played(node_graph, tap, playback, decoded, 4.0, "camera")


def test_recording_reads_back_with_ros2_schemas(node_graph, tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from fastsam_msgs.srv import PointPrompt

    client = node_graph
    path, video, log = tmp_path / "run.mcap", tmp_path / "run.mp4", tmp_path / "record.log"
    with log.open("w") as out:
        recorder = subprocess.Popen(
            [installed_command("fastsam_record"), str(path), "--frames", "4", "--duration", "120",
             "--video", str(video)],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    client.wait(lambda: client.node.count_subscribers("/diagnostics") > 0, 60.0, "fastsam_record to subscribe")
    client.wait(lambda: client.node.count_subscribers("/fastsam/instances") >= 2, 30.0, "fastsam_record to subscribe")
    frames = iter(camera_frames(1280, 720, 40))
    sent: list[int] = []

    def heard() -> bool:  # /diagnostics comes once a second without frames: wait for the node's own outputs
        return "fastsam_record: first message on /fastsam/instances" in log.read_text()

    # Frames published before the node's publishers have matched the recorder are never
    # delivered to it: send one at a time until the recorder hears the node, then prompt.
    while not heard() and len(sent) < 20:
        sent.append(client.send(next(frames)))
        client.result_for(sent[-1], timeout=30.0)
        settle = time.monotonic() + 2.0
        client.wait(lambda until=settle: heard() or time.monotonic() > until, 5.0, "fastsam_record to hear the node")
    assert heard(), log.read_text()
    request = PointPrompt.Request(points=[Point(x=640.0, y=400.0)], labels=[1])
    selected = client.call(PointPrompt, "/fastsam/prompt_point", request)
    while recorder.poll() is None and len(sent) < 40:
        sent.append(client.send(next(frames)))
        client.result_for(sent[-1], timeout=30.0)
    client.wait(lambda: recorder.poll() is not None, 60.0, "fastsam_record to stop after 4 frames")
    output = log.read_text()
    assert recorder.returncode == 0, output

    topics: dict[str, list] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            topics.setdefault(channel.topic, []).append((schema.name, message.log_time, decoded))
    schemas = {topic: {name for name, _, _ in items} for topic, items in topics.items()}
    assert schemas["/fastsam/instances"] == {"fastsam_msgs/msg/InstanceArray"}
    assert schemas["/fastsam/debug_image/compressed"] == {"sensor_msgs/msg/CompressedImage"}
    assert schemas["/fastsam/selection"] == {"fastsam_msgs/msg/InstanceArray"}
    assert schemas.get("/fastsam/obstacles", {"fastsam_msgs/msg/ObstacleArray"}) == {"fastsam_msgs/msg/ObstacleArray"}

    instances = [decoded for _, _, decoded in topics["/fastsam/instances"]]
    assert len(instances) == 4
    stamps = [stamp_to_ns(m.header.stamp) for m in instances]
    assert stamps == sorted(stamps) and set(stamps) <= set(sent)
    for msg in instances:
        assert (msg.width, msg.height) == (1280, 720)
        for instance in msg.instances:
            assert sum(instance.mask_runs) == instance.mask_width * instance.mask_height
    log_times = [log_time for _, log_time, _ in topics["/fastsam/instances"]]
    assert log_times == sorted(log_times)

    debug = [decoded for _, _, decoded in topics["/fastsam/debug_image/compressed"]]
    assert debug and {stamp_to_ns(m.header.stamp) for m in debug} <= set(sent)
    image = cv2.imdecode(np.frombuffer(bytes(debug[0].data), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (720, 1280, 3) and debug[0].format == "jpeg"

    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(debug)
    assert capture.read()[1].shape == (720, 1280, 3)

    selection = [decoded for _, _, decoded in topics["/fastsam/selection"]]
    assert selected.success and len(selection) == 1
    assert stamp_to_ns(selection[0].header.stamp) == stamp_to_ns(selected.header.stamp)
    assert [i.id for i in selection[0].instances] == [i.id for i in selected.instances]

    per_frame = path.stat().st_size / len(instances)
    print(
        f"\nrecord: {path.stat().st_size} bytes for {len(instances)} frames of 1280x720, {len(debug)} debug images; "
        f"{per_frame / 1e3:.0f} kB per frame: {per_frame * 60 * 10 / 1e6:.0f} MB per minute at 10 Hz, "
        f"{per_frame * 60 * 30 / 1e6:.0f} MB at 30 Hz"
    )
