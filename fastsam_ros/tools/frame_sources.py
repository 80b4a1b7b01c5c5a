"""Frames from the user's own data: a video file, an image file or folder, a V4L2 camera or a bag.

Every source yields SourceFrame(image, offset_ns): BGR pixels and the frame's time since
the source's first frame, which sets the playback pace (None when the source has no
clock of its own, as an image folder). Bags are read with rosbags: a rosbag2 folder
(sqlite3 or MCAP storage) or a bare .mcap file, raw sensor_msgs/Image or CompressedImage.

Every frame is held to a pixel limit (the node's max_pixels) before it is decoded: an image
file or a compressed message from the size its header declares, a raw message from its
fields. A frame that cannot be played (too large, corrupt, an unknown encoding, an unreadable
file) is skipped: counted in `skipped` and reported through `warn`, so one bad frame loses
none of the others. A source that cannot be read on (a bag whose storage is corrupt) ends
with SourceError.
"""

from __future__ import annotations

import io
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fastsam_ros.core.image_codec import MAX_PIXELS, ImageDecodeError, decode_compressed, max_compressed_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
BAG_SUFFIXES = (".mcap", ".db3")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Frames per second of a source without a clock of its own (an image folder).
FOLDER_RATE = 10.0
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")

Warn = Callable[[str], None]


class SourceError(Exception):
    """A source that cannot be read: missing, unsupported, or without image frames."""


@dataclass(frozen=True)
class SourceFrame:
    image: np.ndarray
    offset_ns: int | None


def warn_on_stderr(message: str) -> None:
    print(f"fastsam_play: {message}", file=sys.stderr)


class SkippingSource:
    """The skipped-frame count and warning shared by every source."""

    def __init__(self, warn: Warn) -> None:
        self.warn = warn
        self.skipped = 0

    def skip(self, what: str, reason: object) -> None:
        self.skipped += 1
        self.warn(f"skipped {what}: {reason}")


class VideoSource(SkippingSource):
    """A video file or a V4L2 device (/dev/videoN) through OpenCV."""

    def __init__(self, path: str, max_pixels: Callable[[], int] = lambda: MAX_PIXELS, warn: Warn = warn_on_stderr):
        super().__init__(warn)
        self.path = path
        self.is_device = path.startswith("/dev/video")
        capture = self._open()
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        self.length = None if self.is_device or count <= 0 else count
        self.default_rate = None
        limit = max_pixels()
        if width * height > limit:
            raise SourceError(f"video '{path}' is {width}x{height}, over the {limit}-pixel limit (max_pixels)")

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


def read_image_file(path: Path, max_pixels: int) -> np.ndarray:
    """BGR pixels of an image file, refused before decoding when the file is larger than any image
    within max_pixels or its header declares more pixels; ImageDecodeError or OSError otherwise.

    The format is read from the content, not the name. TIFF is sized by PIL's TIFF parser; the
    others are decoded as a CompressedImage frame would be (header checked, orientation tag ignored).
    """
    largest = max_compressed_bytes(max_pixels)
    with path.open("rb") as stream:
        data = stream.read(largest + 1)
    size = len(data)
    if size > largest:
        raise ImageDecodeError(f"file has over {largest} bytes, more than any image within {max_pixels} pixels")
    if not data.startswith(TIFF_MAGIC):
        return decode_compressed(data, max_pixels)
    from PIL import TiffImagePlugin

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a corrupt tag is a warning; the size is what counts
            with TiffImagePlugin.TiffImageFile(io.BytesIO(data)) as header:
                width, height = header.size
    except Exception as error:  # PIL raises several kinds for a corrupt header
        raise ImageDecodeError(f"TIFF header could not be read: {error}") from None
    if width * height > max_pixels:
        raise ImageDecodeError(f"image {width}x{height} exceeds the {max_pixels}-pixel limit (parameter max_pixels)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as error:
        raise ImageDecodeError(f"TIFF data could not be decoded: {error.err}") from None
    if image is None or image.shape[:2] != (height, width):
        raise ImageDecodeError(f"TIFF data ({size} bytes) could not be decoded as the {width}x{height} its header says")
    return image


class FolderSource(SkippingSource):
    """Every image of a folder, in name order, or one image file; no clock of its own.

    A file of a folder that cannot be played is skipped with a warning; a lone image file
    that cannot be played is refused at once, before anything starts.
    """

    def __init__(self, path: Path, max_pixels: Callable[[], int] = lambda: MAX_PIXELS, warn: Warn = warn_on_stderr):
        super().__init__(warn)
        if path.is_dir():
            # Regular files only: reading a pipe or a device named frame.png would never end.
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.files:
                raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder '{path}'")
        elif path.is_file():
            self.files = [path]
        else:
            raise SourceError(f"'{path}' is neither a folder nor a regular file")
        self.length = len(self.files)
        self.default_rate = FOLDER_RATE
        self.max_pixels = max_pixels()
        if not path.is_dir():
            try:
                read_image_file(path, self.max_pixels)
            except (ImageDecodeError, OSError) as error:
                raise SourceError(f"cannot play image '{path}': {error}") from None

    def frames(self) -> Iterator[SourceFrame]:
        for file in self.files:
            try:
                image = read_image_file(file, self.max_pixels)
            except (ImageDecodeError, OSError) as error:
                self.skip(f"'{file}'", error)
                continue
            yield SourceFrame(image, None)


class BagSource(SkippingSource):
    """Image messages of one topic of a rosbag2 folder or .mcap file, paced by their log times.

    A message that is not a playable frame is skipped; storage that cannot be read on (a
    corrupt chunk) ends playback with SourceError, since what follows it cannot be found.
    """

    def __init__(
        self,
        path: Path,
        topic: str | None,
        max_pixels: Callable[[], int] = lambda: MAX_PIXELS,
        warn: Warn = warn_on_stderr,
    ) -> None:
        super().__init__(warn)
        self.path = path
        self.readable_path = path
        if path.is_file() and path.suffix != path.suffix.lower():
            # rosbags picks the storage by the suffix as written: RUN.MCAP is read through a run.mcap link.
            self.link_folder = tempfile.TemporaryDirectory(prefix="fastsam_play_")
            self.readable_path = Path(self.link_folder.name) / path.with_suffix(path.suffix.lower()).name
            self.readable_path.symlink_to(path.resolve())
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
            count = sum(c.msgcount for c in reader.connections if c.topic == topic)
            if count == 0:
                raise SourceError(f"bag '{path}' has no messages on its image topic '{topic}'")
            self.topic = topic
            self.length = count
        self.default_rate = None
        self.max_pixels = max_pixels()

    @contextmanager
    def _reader(self):
        """An open rosbags reader; SourceError when the bag cannot be read."""
        from rosbags.highlevel import AnyReader

        try:
            reader = AnyReader([self.readable_path])
            reader.open()
        except Exception as error:  # rosbags parses hostile bytes; it raises many kinds on corrupt storage
            raise SourceError(f"cannot read bag '{self.path}': {error}") from None
        try:
            yield reader
        finally:
            reader.close()

    def _messages(self, reader) -> Iterator[tuple[str, int, bytes]]:
        """(message type, log time, serialized message) of the topic; SourceError once the storage fails."""
        connections = [c for c in reader.connections if c.topic == self.topic]
        messages = reader.messages(connections=connections)
        read = 0
        while True:
            try:
                connection, log_time, raw = next(messages)
            except StopIteration:
                return
            except Exception as error:  # as in _reader: corrupt storage raises many kinds
                raise SourceError(f"bag '{self.path}' is corrupt after {read} messages: {error}") from None
            read += 1
            yield connection.msgtype, log_time, raw

    def frames(self) -> Iterator[SourceFrame]:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from fastsam_ros.ros.convert import image_to_bgr

        types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
        largest = max_compressed_bytes(self.max_pixels)
        with self._reader() as reader:
            first = None
            for index, (msgtype, log_time, raw) in enumerate(self._messages(reader)):
                first = log_time if first is None else first
                what = f"message {index} of {self.topic}"
                if len(raw) > largest:
                    self.skip(what, f"{len(raw)} bytes, more than any frame within {self.max_pixels} pixels")
                    continue
                try:
                    image = image_to_bgr(deserialize_message(raw, types[msgtype]), self.max_pixels)
                except ImageDecodeError as error:
                    self.skip(what, error)
                    continue
                except RuntimeError as error:  # rclpy's RMWError: bytes that are no message of this type
                    self.skip(what, str(error).partition("\n")[0])
                    continue
                yield SourceFrame(image, log_time - first)


def open_source(
    source: str,
    bag_topic: str | None = None,
    max_pixels: Callable[[], int] = lambda: MAX_PIXELS,
    warn: Warn = warn_on_stderr,
) -> VideoSource | FolderSource | BagSource:
    """The source a path names: an image folder or file, a bag, a device or a video file.

    The path is checked first; max_pixels is asked for only then, since the node's limit
    comes from its parameter definitions, whose import takes seconds.
    """
    path = Path(source)
    if source.startswith("/dev/video"):
        return VideoSource(source, max_pixels, warn)
    if not path.exists():
        raise SourceError(f"'{source}' does not exist")
    if path.suffix.lower() in BAG_SUFFIXES or (path / "metadata.yaml").is_file():
        return BagSource(path, bag_topic, max_pixels, warn)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path, max_pixels, warn)
    return VideoSource(source, max_pixels, warn)
