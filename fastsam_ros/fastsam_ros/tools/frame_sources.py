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

Every file is opened as a regular file only (a pipe or device would block or never end), and
every size a bag declares is held to a bound from max_pixels before anything is decompressed.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fastsam_ros.core.image_codec import MAX_PIXELS, ImageDecodeError, decode_compressed, max_compressed_bytes
from fastsam_ros.tools.command_line import one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
BAG_SUFFIXES = (".mcap", ".db3")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# Frames per second of a source without a clock of its own (an image folder).
FOLDER_RATE = 10.0
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
MAX_METADATA_BYTES = 2**20
"""A bag's metadata.yaml is a few kilobytes; YAML parsing takes about a second per megabyte."""
CHUNK_HEADROOM_BYTES = 64 * 2**20
"""What an MCAP chunk may hold beyond its largest frame: the smaller messages written with it."""
MAX_BAG_GAP_NS = 5 * 10**9
"""The longest wait between two bag messages; a longer gap in their log times is shortened to it."""
MAX_FAILED_VIDEO_READS = 25
"""Failed reads in a row after which a video whose frame count says there is more has ended early."""

Warn = Callable[[str], None]


class SourceError(Exception):
    """A source that cannot be read: missing, unsupported, or without image frames."""


class NotRegularFileError(OSError):
    """A pipe, device, socket or folder where a regular file is needed."""


def open_regular(path: str | Path, write: bool = False) -> int:
    """A descriptor of the regular file at path (for writing: also a device such as /dev/null).

    Opened non-blocking, so a pipe cannot block the open, then checked on the descriptor
    itself, so a file swapped for a pipe after a check cannot slip through; reads and writes
    then block as usual. NotRegularFileError or another OSError otherwise.
    """
    flags = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if write else os.O_RDONLY
    descriptor = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        mode = os.fstat(descriptor).st_mode
        if not (stat.S_ISREG(mode) or (write and stat.S_ISCHR(mode))):
            raise NotRegularFileError(errno.EINVAL, "not a regular file (a pipe or a device would block)")
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def reason(error: OSError) -> str:
    """An OSError as its reason alone: the path is named by the message around it."""
    return error.strerror if isinstance(error.strerror, str) else str(error)


@dataclass(frozen=True)
class SourceFrame:
    image: np.ndarray
    offset_ns: int | None


def warn_on_stderr(message: str) -> None:
    print(one_line(f"fastsam_play: {message}"), file=sys.stderr)


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
        device = re.fullmatch(r"/dev/video(\d+)", path)
        self.is_device = device is not None
        if device:
            try:
                if not stat.S_ISCHR(os.stat(path).st_mode):
                    raise SourceError(f"'{path}' is not a video device")
            except OSError as error:
                raise SourceError(f"cannot open camera '{path}': {reason(error)}") from None
            self.capture_target: str | int = int(device.group(1))
        else:
            try:
                self.descriptor = open_regular(path)
            except OSError as error:
                raise SourceError(f"cannot open video '{path}': {reason(error)}") from None
            # OpenCV takes the file by this name: any file name (even one that is not UTF-8,
            # which makes OpenCV crash) and exactly the file checked above.
            self.capture_target = f"/proc/self/fd/{self.descriptor}"
        capture = self._open()
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        self.length = None if self.is_device or count <= 0 else count
        # A file without a frame rate is paced as a folder is; a camera by its frames arriving.
        self.default_rate = FOLDER_RATE if not self.is_device and self.fps <= 0 else None
        limit = max_pixels()
        if width * height > limit:
            raise SourceError(f"video '{path}' is {width}x{height}, over the {limit}-pixel limit (max_pixels)")

    def _open(self) -> cv2.VideoCapture:
        if self.is_device:
            capture = cv2.VideoCapture(self.capture_target, cv2.CAP_V4L2)
        else:
            capture = cv2.VideoCapture(self.capture_target)
        if not capture.isOpened():
            raise SourceError(f"cannot open video '{self.path}'")
        return capture

    def frames(self) -> Iterator[SourceFrame]:
        capture = self._open()
        try:
            # index: the frame read next; failed: the reads in a row before it that failed.
            index = failed = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    # A frame that cannot be decoded fails its read too; the frame count tells it from the end.
                    failed += 1
                    if self.length is None or index + failed > self.length or failed > MAX_FAILED_VIDEO_READS:
                        if self.length is not None and index < self.length:
                            self.warn(f"video '{self.path}' ended early at frame {index} of {self.length}")
                        return
                    continue
                for lost in range(index, index + failed):
                    self.skip(f"frame {lost} of '{self.path}'", "it could not be read or decoded")
                index += failed
                failed = 0
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
    with os.fdopen(open_regular(path), "rb") as stream:
        if os.fstat(stream.fileno()).st_size > largest:
            raise ImageDecodeError(f"file has over {largest} bytes, more than any image within {max_pixels} pixels")
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
        try:
            is_folder = stat.S_ISDIR(os.stat(path).st_mode)
            # Named like images: a pipe, device or unreadable file among them is skipped as it comes.
            names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if is_folder else []
        except OSError as error:
            raise SourceError(f"cannot read '{path}': {reason(error)}") from None
        self.files = names if is_folder else [path]
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder '{path}'")
        self.length = len(self.files)
        self.default_rate = FOLDER_RATE
        self.max_pixels = max_pixels()
        if not is_folder:
            try:
                read_image_file(path, self.max_pixels)
            except ImageDecodeError as error:
                raise SourceError(f"cannot play image '{path}': {error}") from None
            except OSError as error:
                raise SourceError(f"cannot play image '{path}': {reason(error)}") from None

    def frames(self) -> Iterator[SourceFrame]:
        for file in self.files:
            try:
                image = read_image_file(file, self.max_pixels)
            except ImageDecodeError as error:
                self.skip(f"'{file}'", error)
                continue
            except OSError as error:
                self.skip(f"'{file}'", reason(error))
                continue
            yield SourceFrame(image, None)


class DecompressionBombError(ValueError):
    """Compressed bag data that would decompress past what a frame within max_pixels can take."""


def decompress_bounded(data: bytes, new_decompressor: Callable[[], object], limit: int, refusal: str) -> bytes:
    """Every frame of compressed data decompressed; DecompressionBombError(refusal) as soon as the output
    passes limit bytes."""
    parts: list[bytes] = []
    size = 0
    while data:
        decompressor = new_decompressor()
        parts.append(decompressor.decompress(data, max_length=limit + 1 - size))
        size += len(parts[-1])
        if size > limit:
            raise DecompressionBombError(refusal)
        if not decompressor.eof:
            raise DecompressionBombError("compressed data ends in the middle of a frame")
        data = decompressor.unused_data
    return parts[0] if len(parts) == 1 else b"".join(parts)


def bound_bag_decompression(max_pixels: int) -> None:
    """Hold rosbags' decompression to what a frame within max_pixels can take.

    rosbags decompresses an MCAP chunk or a compressed message whole before it compares the
    result with the size declared, so a few kilobytes can take gigabytes; its decompressors
    are replaced by ones that check the declared size first and stop the output at the bound.
    """
    import lz4.frame
    from rosbags.rosbag2 import reader, storage_mcap

    message_limit = max_compressed_bytes(max_pixels)
    chunk_limit = message_limit + CHUNK_HEADROOM_BYTES
    message_refusal = f"a compressed message decompresses past the {message_limit}-byte bound of max_pixels"
    zstd = storage_mcap.zstd

    def chunk_decompressor(new_decompressor: Callable[[], object] | None) -> Callable[[bytes, int], bytes]:
        def decompress(data: bytes, declared: int) -> bytes:
            if declared > chunk_limit:
                raise DecompressionBombError(
                    f"a chunk declares {declared} bytes, over the {chunk_limit}-byte bound of max_pixels"
                )
            if new_decompressor is None:
                return data
            refusal = f"a chunk decompresses past the {declared} bytes it declares"
            return decompress_bounded(data, new_decompressor, declared, refusal)

        return decompress

    storage_mcap.DECOMPRESSORS = {
        "": chunk_decompressor(None),
        "zstd": chunk_decompressor(zstd.ZstdDecompressor),
        "lz4": chunk_decompressor(lz4.frame.LZ4FrameDecompressor),
    }
    reader.zstd = types.SimpleNamespace(
        decompress=lambda data: decompress_bounded(data, zstd.ZstdDecompressor, message_limit, message_refusal)
    )


def check_bag_storage(path: Path) -> None:
    """Refuse a bag that rosbags could not read safely: a file in it that is not a regular file (rosbags
    would block on a pipe), metadata over MAX_METADATA_BYTES (slow to parse), or compression by file
    (rosbags decompresses every file whole to disk before the first frame can be checked)."""
    entry = path
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            os.close(open_regular(path))
            return
        entry = path / "metadata.yaml"
        with os.fdopen(open_regular(entry), "rb") as stream:
            if os.fstat(stream.fileno()).st_size > MAX_METADATA_BYTES:
                raise SourceError(f"bag '{path}': metadata.yaml has over {MAX_METADATA_BYTES} bytes")
            metadata = stream.read(MAX_METADATA_BYTES)
        for entry in path.iterdir():
            if not stat.S_ISDIR(os.stat(entry).st_mode):
                os.close(open_regular(entry))
    except OSError as error:
        raise SourceError(f"cannot read bag '{path}': '{entry.name}': {reason(error)}") from None
    if re.search(rb"^\s*compression_mode:\s*[\"']?file\b", metadata, re.IGNORECASE | re.MULTILINE):
        raise SourceError(
            f"bag '{path}' is compressed file by file, which would be decompressed whole to disk before playing;"
            " convert it to an uncompressed or message-compressed bag first (ros2 bag convert)"
        )


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
        check_bag_storage(path)
        # Until the node's limit is known (its import is slow), the default's bound holds.
        bound_bag_decompression(MAX_PIXELS)
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
            raise SourceError(f"cannot read bag '{self.path}': {error or type(error).__name__}") from None
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
                cause = error or type(error).__name__  # a MemoryError says nothing itself
                raise SourceError(f"bag '{self.path}' cannot be read on after {read} messages: {cause}") from None
            read += 1
            yield connection.msgtype, log_time, raw

    def frames(self) -> Iterator[SourceFrame]:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage, Image

        from fastsam_ros.ros.convert import image_to_bgr

        message_types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
        largest = max_compressed_bytes(self.max_pixels)
        bound_bag_decompression(self.max_pixels)
        with self._reader() as reader:
            offset = 0
            previous = None
            for index, (msgtype, log_time, raw) in enumerate(self._messages(reader)):
                what = f"message {index} of {self.topic}"
                gap = 0 if previous is None else log_time - previous
                previous = log_time
                if gap > MAX_BAG_GAP_NS:
                    wait = MAX_BAG_GAP_NS // 10**9
                    self.warn(f"{what} comes {gap / 1e9:.0f} s after the one before; it is played {wait} s after")
                offset += min(gap, MAX_BAG_GAP_NS)
                if len(raw) > largest:
                    self.skip(what, f"{len(raw)} bytes, more than any frame within {self.max_pixels} pixels")
                    continue
                try:
                    image = image_to_bgr(deserialize_message(raw, message_types[msgtype]), self.max_pixels)
                except ImageDecodeError as error:
                    self.skip(what, error)
                    continue
                except RuntimeError as error:  # rclpy's RMWError: bytes that are no message of this type
                    self.skip(what, str(error).partition("\n")[0])
                    continue
                yield SourceFrame(image, offset)


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
    if re.fullmatch(r"/dev/video\d+", source):
        return VideoSource(source, max_pixels, warn)
    try:
        mode = os.stat(path).st_mode
        is_bag = path.suffix.lower() in BAG_SUFFIXES or os.path.lexists(path / "metadata.yaml")
    except FileNotFoundError:
        raise SourceError(f"'{source}' does not exist") from None
    except OSError as error:
        raise SourceError(f"cannot read '{source}': {reason(error)}") from None
    if is_bag:
        return BagSource(path, bag_topic, max_pixels, warn)
    if stat.S_ISDIR(mode) or path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path, max_pixels, warn)
    return VideoSource(source, max_pixels, warn)
