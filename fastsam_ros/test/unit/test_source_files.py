"""What the player's sources promise about the files they open, in this process: only regular
files are read (a pipe or device would block), files over what max_pixels allows are refused
before decoding, bag decompression stops at its bound, and every refusal names the file and why."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import String

from fastsam_ros.core.image_codec import ImageDecodeError, max_compressed_bytes
from fastsam_ros.ros.convert import array_to_image
from fastsam_ros.tools.frame_sources import (
    CHUNK_HEADROOM_BYTES,
    IMAGE_SUFFIXES,
    BagSource,
    DecompressionBombError,
    FolderSource,
    NotRegularFileError,
    SourceError,
    VideoSource,
    bound_bag_decompression,
    check_bag_storage,
    open_regular,
    open_source,
    read_image_file,
    reason,
)
from test_support.bags import write_bag
from test_support.videos import mjpeg_video

NOT_REGULAR = "not a regular file (a pipe or a device would block)"


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_regular_file_is_opened_for_reading_and_blocks_as_usual(tmp_path):
    (tmp_path / "a.png").write_bytes(b"abc")
    descriptor = open_regular(tmp_path / "a.png")
    try:
        assert os.get_blocking(descriptor) and os.read(descriptor, 10) == b"abc"
    finally:
        os.close(descriptor)


@pytest.mark.parametrize("make", [lambda tmp: fifo(tmp / "a.png"), lambda tmp: tmp, lambda tmp: Path("/dev/null")])
def test_a_pipe_folder_or_device_is_refused_for_reading(tmp_path, make):
    with pytest.raises(NotRegularFileError) as refused:
        open_regular(make(tmp_path))
    assert refused.value.errno == errno.EINVAL and refused.value.strerror == NOT_REGULAR


def test_a_file_opened_for_writing_is_created_or_emptied_and_may_be_a_device(tmp_path):
    old = tmp_path / "old.txt"
    old.write_bytes(b"precious")
    for path in (old, tmp_path / "new.txt"):
        descriptor = open_regular(path, write=True)
        try:
            assert os.get_blocking(descriptor) and os.write(descriptor, b"x") == 1
        finally:
            os.close(descriptor)
        assert path.read_bytes() == b"x"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644 & ~umask
    os.close(open_regular("/dev/null", write=True))
    with pytest.raises(OSError):  # no reader: a pipe is refused before it can block
        open_regular(fifo(tmp_path / "pipe"), write=True)


def test_reason_is_the_system_message_alone_or_the_whole_error():
    assert reason(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")) == "No such file or directory"
    assert reason(OSError("no system message")) == "no system message"


def padded_png(path: Path, size: int) -> Path:
    """A real 8x8 PNG padded with bytes after its end to exactly size bytes (decoders ignore them)."""
    data = cv2.imencode(".png", np.full((8, 8, 3), 77, np.uint8))[1].tobytes()
    path.write_bytes(data + bytes(size - len(data)))
    return path


def test_an_image_file_is_refused_by_size_one_byte_past_the_largest_frame(tmp_path):
    largest = max_compressed_bytes(64)
    assert read_image_file(padded_png(tmp_path / "at.png", largest), 64).shape == (8, 8, 3)
    with pytest.raises(ImageDecodeError) as refused:
        read_image_file(padded_png(tmp_path / "over.png", largest + 1), 64)
    assert str(refused.value) == f"file has over {largest} bytes, more than any image within 64 pixels"


def tiff(path: Path, width: int, height: int) -> Path:
    cv2.imwrite(str(path), np.full((height, width, 3), 9, np.uint8))
    return path


def test_a_tiff_is_sized_from_its_header_against_the_limit(tmp_path):
    assert read_image_file(tiff(tmp_path / "at.tif", 8, 6), 48).shape == (6, 8, 3)
    with pytest.raises(ImageDecodeError) as refused:
        read_image_file(tiff(tmp_path / "over.tif", 8, 6), 47)
    assert str(refused.value) == "image 8x6 exceeds the 47-pixel limit (parameter max_pixels)"
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + bytes(40))
    with pytest.raises(ImageDecodeError, match=r"^TIFF header could not be read: "):
        read_image_file(broken, 48)


def test_folder_and_lone_image_refusals_name_the_path_and_why(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(SourceError) as refused:
        FolderSource(tmp_path / "file" / "inside")
    assert str(refused.value) == f"cannot read '{tmp_path / 'file' / 'inside'}': Not a directory"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError) as refused:
        FolderSource(tmp_path / "empty")
    suffixes = ", ".join(IMAGE_SUFFIXES)
    assert str(refused.value) == f"no images ({suffixes}) in folder '{tmp_path / 'empty'}'"
    with pytest.raises(SourceError) as refused:
        FolderSource(fifo(tmp_path / "pipe.png"))
    assert str(refused.value) == f"cannot play image '{tmp_path / 'pipe.png'}': {NOT_REGULAR}"


def test_video_refusals_name_the_path_and_why(tmp_path):
    with pytest.raises(SourceError) as refused:
        open_source("/dev/video987654")
    assert str(refused.value) == "cannot open camera '/dev/video987654': No such file or directory"
    with pytest.raises(SourceError) as refused:
        open_source(str(fifo(tmp_path / "clip.avi")))
    assert str(refused.value) == f"cannot open video '{tmp_path / 'clip.avi'}': {NOT_REGULAR}"
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(SourceError) as refused:
        open_source(str(tmp_path / "file" / "clip.avi"))
    assert str(refused.value) == f"cannot read '{tmp_path / 'file' / 'clip.avi'}': Not a directory"


def test_open_source_hands_its_warnings_to_the_video(tmp_path):
    warnings: list[str] = []
    source = open_source(str(mjpeg_video(tmp_path / "clip.avi", 6, corrupt=[2])), warn=warnings.append)
    assert len(list(source.frames())) == 5 and warnings == [
        f"skipped frame 2 of '{tmp_path / 'clip.avi'}': it could not be read or decoded"
    ]


def raw_mjpeg_stream(path: Path, frames: int) -> Path:
    """Concatenated JPEG frames without a container: OpenCV reads them but cannot count them."""
    parts = [cv2.imencode(".jpg", np.full((24, 32, 3), 6 * index, np.uint8))[1].tobytes() for index in range(frames)]
    path.write_bytes(b"".join(parts))
    return path


def test_a_video_that_cannot_be_counted_plays_to_its_end_at_its_own_frame_rate(tmp_path):
    video = VideoSource(str(raw_mjpeg_stream(tmp_path / "clip.mjpeg", 10)))
    assert video.length is None and video.default_rate is None and video.fps > 0
    frames = list(video.frames())
    assert [round(float(f.image.mean()) / 6) for f in frames] == list(range(10))
    assert [f.offset_ns for f in frames] == [round(index * 1e9 / video.fps) for index in range(10)]


def test_bag_decompressors_are_bounded_and_say_which_bound(tmp_path):
    import lz4.frame
    from rosbags.rosbag2 import reader, storage_mcap

    bound_bag_decompression(1000)
    message_limit = max_compressed_bytes(1000)
    chunk_limit = message_limit + CHUNK_HEADROOM_BYTES
    data = bytes(range(256)) * 64
    plain = storage_mcap.DECOMPRESSORS[""]
    assert plain(data, chunk_limit) == data
    with pytest.raises(DecompressionBombError) as refused:
        plain(data, chunk_limit + 1)
    assert (
        str(refused.value)
        == f"a chunk declares {chunk_limit + 1} bytes, over the {chunk_limit}-byte bound of max_pixels"
    )
    zstd = storage_mcap.zstd
    for kind, compressed in (("zstd", zstd.compress(data)), ("lz4", lz4.frame.compress(data))):
        assert storage_mcap.DECOMPRESSORS[kind](compressed, len(data)) == data, kind
        with pytest.raises(DecompressionBombError) as refused:
            storage_mcap.DECOMPRESSORS[kind](compressed, len(data) - 1)
        assert str(refused.value) == f"a chunk decompresses past the {len(data) - 1} bytes it declares", kind
    assert reader.zstd.decompress(zstd.compress(data)) == data
    with pytest.raises(DecompressionBombError) as refused:
        reader.zstd.decompress(zstd.compress(bytes(message_limit + 1)))
    assert str(refused.value) == f"a compressed message decompresses past the {message_limit}-byte bound of max_pixels"


def test_a_pipe_named_as_a_bag_is_refused_by_name(tmp_path):
    with pytest.raises(SourceError) as refused:
        check_bag_storage(fifo(tmp_path / "run.mcap"))
    assert str(refused.value) == f"cannot read bag '{tmp_path / 'run.mcap'}': 'run.mcap': {NOT_REGULAR}"


def test_a_bag_compressed_file_by_file_is_told_how_to_convert(tmp_path):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  compression_mode: file\n")
    with pytest.raises(SourceError) as refused:
        check_bag_storage(tmp_path / "bag")
    assert str(refused.value).endswith(
        "; convert it to an uncompressed or message-compressed bag first (ros2 bag convert)"
    )


def test_a_bag_without_an_image_topic_is_refused_naming_the_types(tmp_path):
    path = write_bag(tmp_path / "bag", "std_msgs/msg/String", [serialize_message(String(data="hi"))], "/chatter")
    with pytest.raises(SourceError) as refused:
        open_source(str(path))
    assert str(refused.value) == (f"bag '{path}' has no sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage topic")


def test_a_bag_counts_its_frames_and_has_no_rate_of_its_own(tmp_path):
    frame = serialize_message(array_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8"))
    source = open_source(str(write_bag(tmp_path / "bag", "sensor_msgs/msg/Image", [frame] * 3)))
    assert isinstance(source, BagSource) and source.length == 3 and source.default_rate is None


def test_bag_frames_over_the_limit_are_skipped_by_their_size_or_header_and_named(tmp_path):
    small = serialize_message(array_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8"))
    large = serialize_message(array_to_image(np.zeros((600, 600, 3), np.uint8), "bgr8"))
    jpeg = cv2.imencode(".jpg", np.zeros((20, 20, 3), np.uint8))[1].tobytes()
    declared = serialize_message(CompressedImage(format="jpeg", data=jpeg))
    warnings: list[str] = []
    images = write_bag(tmp_path / "raw", "sensor_msgs/msg/Image", [small, large, small])
    source = open_source(str(images), max_pixels=lambda: 100, warn=warnings.append)
    assert len(list(source.frames())) == 2 and source.skipped == 1
    assert warnings == [f"skipped message 1 of /camera: {len(large)} bytes, more than any frame within 100 pixels"]
    warnings.clear()
    compressed = write_bag(tmp_path / "jpeg", "sensor_msgs/msg/CompressedImage", [declared])
    source = open_source(str(compressed), max_pixels=lambda: 100, warn=warnings.append)
    assert list(source.frames()) == [] and source.skipped == 1
    assert len(warnings) == 1 and warnings[0].startswith("skipped message 0 of /camera: ") and "20x20" in warnings[0]
