"""Frames from the user's own data: a video file, an image folder, a V4L2 camera or a bag.

Every source yields SourceFrame(image, offset_ns): BGR pixels and the frame's time since
the source's first frame, which sets the playback pace (None when the source has no
clock of its own, as an image folder). Bags are read with rosbags: a rosbag2 folder
(sqlite3 or MCAP storage) or a bare .mcap file, raw sensor_msgs/Image or CompressedImage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Frames per second of a source without a clock of its own (an image folder).
FOLDER_RATE = 10.0
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class SourceError(Exception):
    """A source that cannot be read: missing, unsupported, or without image frames."""


@dataclass(frozen=True)
class SourceFrame:
    image: np.ndarray
    offset_ns: int | None


class VideoSource:
    """A video file or a V4L2 device (/dev/videoN) through OpenCV."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.is_device = path.startswith("/dev/video")
        capture = self._open()
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.length = None if self.is_device or count <= 0 else count
        self.default_rate = None
        capture.release()

    def _open(self) -> cv2.VideoCapture:
        device = re.fullmatch(r"/dev/video(\d+)", self.path)
        capture = cv2.VideoCapture(int(device.group(1)), cv2.CAP_V4L2) if device else cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise SourceError(f"cannot open video '{self.path}'")
        return capture

    def frames(self) -> Iterator[SourceFrame]:
        capture = self._open()
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                # A camera is paced by its own frames arriving; a file by its frame rate.
                offset = None if self.is_device or self.fps <= 0 else round(index * 1e9 / self.fps)
                yield SourceFrame(image, offset)
                index += 1
        finally:
            capture.release()


class FolderSource:
    """Every image of a folder, in name order; no clock of its own."""

    def __init__(self, path: Path) -> None:
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder '{path}'")
        self.length = len(self.files)
        self.default_rate = FOLDER_RATE

    def frames(self) -> Iterator[SourceFrame]:
        for file in self.files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"cannot read image '{file}'")
            yield SourceFrame(image, None)


class BagSource:
    """Image messages of one topic of a rosbag2 folder or .mcap file, paced by their log times."""

    def __init__(self, path: Path, topic: str | None) -> None:
        self.path = path
        with self._reader() as reader:
            images = {c.topic: c for c in reader.connections if c.msgtype in IMAGE_TYPES}
            if not images:
                raise SourceError(f"bag '{path}' has no {' or '.join(IMAGE_TYPES)} topic")
            if topic is None:
                if len(images) > 1:
                    raise SourceError(
                        f"bag '{path}' has several image topics, choose one with --bag-topic: {sorted(images)}"
                    )
                topic = next(iter(images))
            if topic not in images:
                raise SourceError(f"bag '{path}' has no image topic '{topic}'; image topics: {sorted(images)}")
            self.topic = topic
            self.length = images[topic].msgcount or None
        self.default_rate = None

    @contextmanager
    def _reader(self):
        """An open rosbags reader; SourceError when the bag cannot be read."""
        from rosbags.highlevel import AnyReader, AnyReaderError

        reader = AnyReader([self.path])
        try:
            reader.open()
        except (AnyReaderError, OSError) as error:
            raise SourceError(f"cannot read bag '{self.path}': {error}") from error
        try:
            yield reader
        finally:
            reader.close()

    def frames(self) -> Iterator[SourceFrame]:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from fastsam_ros.ros_convert import image_to_bgr

        types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
        with self._reader() as reader:
            connections = [c for c in reader.connections if c.topic == self.topic]
            first = None
            for connection, log_time, raw in reader.messages(connections=connections):
                first = log_time if first is None else first
                yield SourceFrame(image_to_bgr(deserialize_message(raw, types[connection.msgtype])), log_time - first)


def open_source(source: str, bag_topic: str | None = None) -> VideoSource | FolderSource | BagSource:
    """The source a path names: a folder of images, a bag, a device or a video file."""
    path = Path(source)
    if source.startswith("/dev/video"):
        return VideoSource(source)
    if not path.exists():
        raise SourceError(f"'{source}' does not exist")
    if path.suffix in (".mcap", ".db3") or (path / "metadata.yaml").is_file():
        return BagSource(path, bag_topic)
    if path.is_dir():
        return FolderSource(path)
    return VideoSource(source)
