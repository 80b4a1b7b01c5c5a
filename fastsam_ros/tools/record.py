"""fastsam_record: what a running node publishes, into one MCAP file with ROS 2 schemas.

Instances, selection, obstacles and /diagnostics are written as the serialized bytes
that arrive; the debug image is JPEG-compressed into sensor_msgs/CompressedImage on
'<debug topic>/compressed', a tenth of the raw size. Schemas are the ROS 2 message
definitions ('ros2msg', as rosbag2 writes them), so Foxglove and `ros2 bag play` read
the file. Optionally the debug images also go into an MP4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DIAGNOSTICS = "/diagnostics"
DEBUG_SUFFIX = "/compressed"


def output_topics(node: str, camera: str) -> dict[str, str]:
    """Topic of each recorded output of a node's camera ('' = the single unnamed camera)."""
    base = f"/{node}/{camera}/" if camera else f"/{node}/"
    return {name: base + name for name in ("instances", "selection", "obstacles", "debug_image")}


def message_definitions(typenames: list[str]) -> dict[str, str]:
    """Full ROS 2 message definitions (dependencies appended, as rosbag2 stores them) by type name.

    Standard types come from rosbags' Kilted type store; this package's own from the
    .msg files installed next to its generated modules.
    """
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    share = Path(get_package_share_directory("fastsam_ros")) / "msg"
    for file in sorted(share.glob("*.msg")):
        typestore.register(get_types_from_msg(file.read_text(), f"fastsam_ros/msg/{file.stem}"))
    return {name: typestore.generate_msgdef(name, ros_version=2)[0] for name in typenames}


class McapRecorder:
    """Writes serialized ROS 2 messages to an MCAP file, one channel per topic."""

    def __init__(self, path: Path, topics: dict[str, str]) -> None:
        from mcap.writer import Writer

        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.writer = Writer(self.file)
        self.writer.start(profile="ros2", library="fastsam_record")
        definitions = message_definitions(sorted(set(topics.values())))
        schemas = {
            name: self.writer.register_schema(name=name, encoding="ros2msg", data=text.encode())
            for name, text in definitions.items()
        }
        self.channels = {
            topic: self.writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schemas[typename])
            for topic, typename in topics.items()
        }
        self.counts = dict.fromkeys(topics, 0)

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        """One message; log and publish times are its arrival time."""
        self.writer.add_message(
            channel_id=self.channels[topic], log_time=stamp_ns, publish_time=stamp_ns, data=data,
            sequence=self.counts[topic],
        )  # fmt: skip
        self.counts[topic] += 1

    def close(self) -> None:
        self.writer.finish()
        self.file.close()


class NodeRecording:
    """Subscribes to a node's outputs and records them, in its own rclpy context."""

    def __init__(self, path: Path, node: str, camera: str, jpeg_quality: int, video: Path | None, fps: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from fastsam_ros.msg import InstanceArray, ObstacleArray

        self.context = rclpy.Context()
        self.context.init(args=[])
        self.node = rclpy.create_node("fastsam_record", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        outputs = output_topics(node, camera)
        self.debug_topic = outputs["debug_image"] + DEBUG_SUFFIX
        raw = {
            outputs["instances"]: InstanceArray,
            outputs["selection"]: InstanceArray,
            outputs["obstacles"]: ObstacleArray,
            DIAGNOSTICS: DiagnosticArray,
        }
        typenames = {topic: _typename(kind) for topic, kind in raw.items()}
        typenames[self.debug_topic] = "sensor_msgs/msg/CompressedImage"
        self.recorder = McapRecorder(path, typenames)
        self.instances_topic = outputs["instances"]
        for topic, kind in raw.items():
            self.node.create_subscription(kind, topic, self._writer(topic), 10, raw=True)
        self.node.create_subscription(Image, outputs["debug_image"], self._on_debug_image, 5)
        self.jpeg_quality = jpeg_quality
        self.video_path, self.fps, self.video = video, fps, None

    def _writer(self, topic: str):
        def write(data: bytes) -> None:
            self.recorder.write(topic, data, time.time_ns())

        return write

    def _on_debug_image(self, msg) -> None:
        import cv2
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CompressedImage

        from fastsam_ros.ros_convert import image_to_bgr

        image = image_to_bgr(msg)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return
        compressed = CompressedImage(header=msg.header, format="jpeg", data=jpeg.tobytes())
        self.recorder.write(self.debug_topic, serialize_message(compressed), time.time_ns())
        if self.video_path is not None:
            if self.video is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                self.video = cv2.VideoWriter(str(self.video_path), fourcc, self.fps, image.shape[1::-1])
            self.video.write(image)

    def run(self, duration: float | None, frames: int | None) -> None:
        """Record until duration seconds, `frames` instance messages, or Ctrl-C; say when the node is first heard."""
        deadline = None if duration is None else time.monotonic() + duration
        heard = False
        try:
            while deadline is None or time.monotonic() < deadline:
                count = self.recorder.counts[self.instances_topic]
                if count and not heard:
                    heard = True
                    print(f"fastsam_record: first message on {self.instances_topic}", flush=True)
                if frames is not None and count >= frames:
                    return
                self.executor.spin_once(timeout_sec=0.1)
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        self.recorder.close()
        if self.video is not None:
            self.video.release()
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _typename(kind: type) -> str:
    """'pkg/msg/Name' of a generated message class."""
    return f"{kind.__module__.split('.')[0]}/msg/{kind.__name__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastsam_record", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="MCAP file to write, e.g. run.mcap")
    parser.add_argument("--node", default="fastsam", help="name of the node to record (default fastsam)")
    parser.add_argument("--camera", default="", help="camera name of a multi-camera node")
    parser.add_argument("--duration", type=float, help="seconds to record (default: until Ctrl-C)")
    parser.add_argument("--frames", type=int, help="stop after this many ~/instances messages")
    parser.add_argument("--jpeg-quality", type=int, default=80, help="JPEG quality of the debug image (1-100)")
    parser.add_argument("--video", type=Path, help="also write the debug images to this MP4 file")
    parser.add_argument("--video-fps", type=float, default=10.0, help="frame rate written into the MP4")
    args = parser.parse_args(argv)
    if not 1 <= args.jpeg_quality <= 100:
        parser.error("--jpeg-quality must be within 1..100")
    if not args.output.parent.is_dir():
        sys.exit(f"fastsam_record: folder '{args.output.parent}' does not exist")
    recording = NodeRecording(args.output, args.node, args.camera, args.jpeg_quality, args.video, args.video_fps)
    try:
        recording.run(args.duration, args.frames)
    finally:
        recording.close()
    counts = ", ".join(f"{topic} {count}" for topic, count in recording.recorder.counts.items())
    print(f"fastsam_record: wrote {args.output} ({args.output.stat().st_size} bytes): {counts}")
