"""fastsam_play's sources under hostile input, in this process: image files and bag messages.

Every frame that cannot be played (over max_pixels, corrupt, an unknown encoding) is
skipped and counted, the good frames around it still come out with their pixels, and
storage that cannot be read on ends the source with SourceError, never anything else.
The fuzz tests draw their cases from a fixed seed (FASTSAM_FUZZ_SCALE multiplies the count).
"""

from __future__ import annotations

import os
import random
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import CompressedImage

from fastsam_ros.ros.convert import array_to_image
from fastsam_ros.tools.frame_sources import (
    FOLDER_RATE,
    MAX_BAG_GAP_NS,
    MAX_METADATA_BYTES,
    BagSource,
    DecompressionBombError,
    FolderSource,
    SourceError,
    check_bag_storage,
    decompress_bounded,
    open_source,
)
from fastsam_ros.tools.play import passes
from test_support.bags import TYPESTORE, write_bag

SEED = 20261205
SCALE = int(os.environ.get("FASTSAM_FUZZ_SCALE", "1"))
FUZZ_MAX_PIXELS = 1_000_000
"""The fuzz's pixel limit: a frame over it is declared, never decoded, so memory stays small."""
RSS_GROWTH_LIMIT = 300 * 2**20


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose valid header declares width x height, followed by a few rows of data and no more."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def pattern(height: int, width: int, value: int) -> np.ndarray:
    """A frame that survives lossless encoding and is told apart by value."""
    image = np.full((height, width, 3), value, np.uint8)
    image[0, :, 0] = np.arange(width) % 256
    return image


def raw_message(image: np.ndarray, **fields) -> bytes:
    msg = array_to_image(image, "bgr8")
    for name, value in fields.items():
        setattr(msg, name, value)
    return serialize_message(msg)


def test_folder_skips_a_file_over_max_pixels_and_plays_the_rest(tmp_path, capsys):
    """A 20000x20000 PNG among good ones: refused from its header, counted, the others played."""
    cv2.imwrite(str(tmp_path / "a.png"), pattern(24, 32, 10))
    (tmp_path / "b.png").write_bytes(png_declaring(20000, 20000))
    cv2.imwrite(str(tmp_path / "c.png"), pattern(24, 32, 30))
    source = open_source(str(tmp_path))
    before = psutil.Process().memory_info().rss
    frames = list(source.frames())
    assert psutil.Process().memory_info().rss - before < 100 * 2**20, "the huge image was decoded"
    assert [int(frame.image[1, 0, 1]) for frame in frames] == [10, 30]
    warnings = capsys.readouterr().err.splitlines()
    assert source.skipped == 1 and len(warnings) == 1
    assert "b.png" in warnings[0] and "20000x20000 exceeds the 33177600-pixel limit" in warnings[0]


def test_folder_limit_is_the_given_max_pixels(tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), pattern(10, 10, 1))
    cv2.imwrite(str(tmp_path / "large.png"), pattern(20, 20, 2))
    source = open_source(str(tmp_path), max_pixels=lambda: 100, warn=lambda message: None)
    assert [frame.image.shape for frame in source.frames()] == [(10, 10, 3)] and source.skipped == 1


def test_lone_image_file_over_max_pixels_is_refused_at_once(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_declaring(20000, 20000))
    with pytest.raises(SourceError, match=r"cannot play image .*20000x20000 exceeds"):
        open_source(str(path))
    cv2.imwrite(str(tmp_path / "small.png"), pattern(24, 32, 5))
    source = open_source(str(tmp_path / "small.png"))
    assert isinstance(source, FolderSource) and [f.image.shape for f in source.frames()] == [(24, 32, 3)]


def test_video_over_max_pixels_is_refused_at_once(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    writer.write(pattern(24, 32, 1))
    writer.release()
    with pytest.raises(SourceError, match="32x24, over the 100-pixel limit"):
        open_source(str(path), max_pixels=lambda: 100)
    assert open_source(str(path), max_pixels=lambda: 32 * 24).length == 1


def test_suffixes_are_matched_in_any_case(tmp_path):
    cv2.imwrite(str(tmp_path / "PHOTO.PNG"), pattern(8, 8, 3))
    assert isinstance(open_source(str(tmp_path / "PHOTO.PNG")), FolderSource)
    assert open_source(str(tmp_path)).length == 1
    bag = write_bag(tmp_path / "bag", "sensor_msgs/msg/Image", [raw_message(pattern(8, 8, 4))])
    upper = tmp_path / "RUN.MCAP"
    upper.write_bytes(next(bag.glob("*.mcap")).read_bytes())
    source = open_source(str(upper))
    assert isinstance(source, BagSource) and [int(f.image[1, 0, 0]) for f in source.frames()] == [4]


def test_bad_bag_frames_are_skipped_and_counted(tmp_path, capsys):
    good = pattern(12, 16, 50)
    raw = [
        raw_message(good),
        raw_message(good, data=bytes(100)),
        raw_message(good, encoding="yuv422_yuy2"),
        raw_message(good, height=40000, width=40000, step=120000),
        raw_message(good)[:30],
        raw_message(good),
    ]
    source = open_source(str(write_bag(tmp_path / "raw", "sensor_msgs/msg/Image", raw)))
    frames = list(source.frames())
    warnings = capsys.readouterr().err.splitlines()
    assert len(frames) == 2 and all(np.array_equal(f.image, good) for f in frames)
    assert [f.offset_ns for f in frames] == [0, 250_000_000], "a skipped frame keeps its place in time"
    assert source.skipped == 4 and len(warnings) == 4
    reasons = ("data has 100 bytes", "unsupported encoding 'yuv422_yuy2'", "40000x40000", "deserialize")
    for index, (warning, expected) in enumerate(zip(warnings, reasons, strict=True), start=1):
        assert warning.startswith(f"fastsam_play: skipped message {index} of /camera: "), warnings
        assert expected in warning, warnings

    jpeg = cv2.imencode(".jpg", good)[1].tobytes()
    compressed = [serialize_message(CompressedImage(format="jpeg", data=data)) for data in (jpeg, jpeg[:40], jpeg)]
    bag = write_bag(tmp_path / "compressed", "sensor_msgs/msg/CompressedImage", compressed)
    source = open_source(str(bag))
    assert len(list(source.frames())) == 2 and source.skipped == 1


def chunked_mcap(path: Path, frames: int) -> Path:
    """A bare MCAP file in zstd chunks of a few frames each, as the mcap library writes it."""
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    definition, _ = TYPESTORE.generate_msgdef("sensor_msgs/msg/Image", ros_version=2)
    rng = np.random.default_rng(0)
    with path.open("wb") as stream:
        writer = McapWriter(stream, chunk_size=20_000, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("sensor_msgs/msg/Image", "ros2msg", definition.encode())
        channel = writer.register_channel("/camera", "cdr", schema)
        for index in range(frames):
            data = raw_message(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
            writer.add_message(channel, log_time=index, data=data, publish_time=index)
        writer.finish()
    return path


def test_corrupt_mcap_chunk_ends_the_source_with_one_error(tmp_path):
    path = chunked_mcap(tmp_path / "run.mcap", 40)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = b"\xa5" * 32
    path.write_bytes(bytes(data))
    source = open_source(str(path))
    played = 0
    with pytest.raises(SourceError) as ended:
        for _ in source.frames():
            played += 1
    assert 0 < played < 40, "the frames before the corrupt chunk are played"
    assert str(ended.value).startswith(f"bag '{path}' cannot be read on after {played} messages: Chunk checksum")


def test_bag_without_image_messages_is_refused(tmp_path):
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/camera", "sensor_msgs/msg/Image", typestore=TYPESTORE)
    with pytest.raises(SourceError, match="no messages on its image topic '/camera'"):
        open_source(str(tmp_path / "bag"))


def mutated(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One hostile variant of an encoded image: its kind and its bytes."""
    kind = rng.choice(("truncated", "bit-flipped", "zero-byte", "random", "huge-png", "huge-jpeg", "text"))
    if kind == "truncated":
        return kind, data[: rng.randrange(len(data))]
    if kind == "bit-flipped":
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 16)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        return kind, bytes(flipped)
    if kind == "zero-byte":
        return kind, b""
    if kind == "random":
        return kind, rng.randbytes(rng.randint(1, 4096))
    if kind == "huge-png":
        return kind, png_declaring(rng.randint(1001, 65535), rng.randint(1001, 65535))
    if kind == "huge-jpeg":
        jpeg = bytearray(cv2.imencode(".jpg", pattern(16, 16, 1))[1].tobytes())
        start = jpeg.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
        jpeg[start + 5 : start + 9] = struct.pack(">HH", rng.randint(1001, 65535), rng.randint(1001, 65535))
        return kind, bytes(jpeg)
    return kind, b"not an image at all\n" * rng.randint(0, 50)


ENCODINGS = (".png", ".jpg", ".bmp", ".webp", ".tif")


def rss_growth_checker():
    process = psutil.Process()
    start = process.memory_info().rss
    return lambda: process.memory_info().rss - start


def test_fuzz_image_folders_skip_bad_files_and_play_good_ones(tmp_path):
    """Folders of good and hostile files (truncated, bit-flipped, empty, huge declared sizes,
    wrong suffixes): every good file plays with its pixels, every other one is played or
    skipped and counted, nothing raises, and memory stays bounded."""
    rng = random.Random(SEED)
    folders = 20 * SCALE
    growth = rss_growth_checker()
    for case in range(folders):
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        expected = {}
        for index in range(10):
            image = pattern(rng.randint(1, 40), rng.randint(1, 40), rng.randint(0, 255))
            encoded = cv2.imencode(rng.choice(ENCODINGS), image)[1].tobytes()
            suffix = rng.choice((*ENCODINGS, ".JPEG", ".Png"))
            name = f"{index:02d}{suffix}"
            if rng.random() < 0.4:
                expected[name] = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            else:
                _, encoded = mutated(rng, encoded)
            (folder / name).write_bytes(encoded)
        warnings: list[str] = []
        source = open_source(str(folder), max_pixels=lambda: FUZZ_MAX_PIXELS, warn=warnings.append)
        frames = list(source.frames())
        context = f"seed {SEED}, case {case}: {warnings}"
        assert len(frames) + source.skipped == 10 and len(warnings) == source.skipped, context
        assert all(f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3 for f in frames), context
        assert all(f.image.shape[0] * f.image.shape[1] <= FUZZ_MAX_PIXELS for f in frames), context
        decoded = [f.image for f in frames]
        for name, image in expected.items():
            assert any(np.array_equal(image, got) for got in decoded), f"{context}: good file {name} not played"
        assert growth() < RSS_GROWTH_LIMIT, f"{context}: memory grew by {growth() / 2**20:.0f} MiB"


def hostile_raw(rng: random.Random, good: bytes, image: np.ndarray) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return raw_message(image, data=rng.randbytes(rng.randint(0, 2000)))
    if kind == 1:
        return raw_message(image, encoding=rng.choice(("yuv422", "", "16UC1", "bgr8\x00", "rgb16", "x" * 300)))
    if kind == 2:
        side = rng.randint(1001, 2**31 - 1)
        return raw_message(image, height=side, width=rng.randint(1001, 2**31 - 1), step=rng.randint(0, 2**32 - 1))
    if kind == 3:
        return raw_message(image, step=rng.randint(0, image.shape[1] * 3 - 1))
    if kind == 4:
        return good[: rng.randrange(len(good))]
    if kind == 5:
        return rng.randbytes(rng.randint(0, 300))
    flipped = bytearray(good)
    for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def hostile_compressed(rng: random.Random, jpeg: bytes) -> bytes:
    _, data = mutated(rng, jpeg)
    return serialize_message(CompressedImage(format=rng.choice(("jpeg", "png", "", "h264")), data=data))


def test_fuzz_bag_messages_skip_bad_frames_and_play_good_ones(tmp_path):
    """Bags of good and hostile image messages (bad fields, declared sizes, truncated or flipped
    CDR, corrupt compressed data), and MCAP files with corrupt or cut storage: good frames play
    with their pixels, bad ones are skipped and counted, storage faults end in SourceError."""
    rng = random.Random(SEED)
    growth = rss_growth_checker()
    for case in range(12 * SCALE):
        compressed = case % 2 == 1
        messages, good_images = [], []
        for _ in range(12):
            image = pattern(rng.randint(1, 30), rng.randint(1, 30), rng.randint(0, 255))
            if compressed:
                encoded = cv2.imencode(".png", image)[1].tobytes()
                good = serialize_message(CompressedImage(format="png", data=encoded))
            else:
                good = raw_message(image)
            if rng.random() < 0.4:
                messages.append(good)
                good_images.append(image)
            else:
                messages.append(hostile_compressed(rng, encoded) if compressed else hostile_raw(rng, good, image))
        msgtype = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
        bag = write_bag(tmp_path / f"bag{case}", msgtype, messages)
        warnings: list[str] = []
        source = open_source(str(bag), max_pixels=lambda: FUZZ_MAX_PIXELS, warn=warnings.append)
        frames = list(source.frames())
        context = f"seed {SEED}, case {case}: {warnings}"
        assert len(frames) + source.skipped == len(messages) and len(warnings) == source.skipped, context
        decoded = [f.image for f in frames]
        for image in good_images:
            assert any(np.array_equal(image, got) for got in decoded), f"{context}: a good frame was not played"
        assert growth() < RSS_GROWTH_LIMIT, f"{context}: memory grew by {growth() / 2**20:.0f} MiB"

    good_file = chunked_mcap(tmp_path / "good.mcap", 30).read_bytes()
    for case in range(20 * SCALE):
        data = bytearray(good_file)
        if case % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 64)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"storage{case}.mcap"
        path.write_bytes(bytes(data))
        try:
            source = open_source(str(path), max_pixels=lambda: FUZZ_MAX_PIXELS, warn=lambda message: None)
            frames = sum(1 for _ in source.frames())
            assert frames + source.skipped <= 30, f"seed {SEED}, storage case {case}"
        except SourceError:
            pass
        assert growth() < RSS_GROWTH_LIMIT, f"seed {SEED}, storage case {case}: memory grew"


def test_loop_of_a_bag_without_a_time_span_is_paced(tmp_path):
    """One message, or several logged at one time: each pass took no time, so --loop published without pause."""
    step = round(1e9 / FOLDER_RATE)
    for name, count, expected in (("one", 1, [0, step, 2 * step]), ("same", 2, [0, 0, step, step])):
        bag = tmp_path / name
        with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            connection = writer.add_connection("/camera", "sensor_msgs/msg/Image", typestore=TYPESTORE)
            for _ in range(count):
                writer.write(connection, 1000, raw_message(pattern(8, 8, 1)))
        frames = passes(open_source(str(bag)), loop=True)
        assert [next(frames).offset_ns for _ in expected] == expected, name


def test_pipe_swapped_into_a_folder_is_skipped_not_waited_on(tmp_path):
    """A file replaced by a pipe after the folder was listed blocked playback for good, signals included."""
    cv2.imwrite(str(tmp_path / "a.png"), pattern(8, 8, 1))
    cv2.imwrite(str(tmp_path / "b.png"), pattern(8, 8, 2))
    warnings: list[str] = []
    source = open_source(str(tmp_path), warn=warnings.append)
    (tmp_path / "a.png").unlink()
    os.mkfifo(tmp_path / "a.png")
    frames: list = []
    reader = threading.Thread(target=lambda: frames.extend(source.frames()), daemon=True)
    reader.start()
    reader.join(10.0)
    if reader.is_alive():  # let the blocked read end: a writer that closes at once
        os.close(os.open(tmp_path / "a.png", os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive() and len(frames) == 1 and source.skipped == 1, warnings
    assert "a.png" in warnings[0] and "not a regular file" in warnings[0], warnings


def zstd_frame(data: bytes) -> bytes:
    from rosbags.rosbag2.storage_mcap import zstd

    return zstd.compress(data)


def new_zstd_decompressor():
    from rosbags.rosbag2.storage_mcap import zstd

    return zstd.ZstdDecompressor()


def test_bounded_decompression_stops_one_byte_past_the_limit():
    data = bytes(range(256)) * 40
    assert decompress_bounded(zstd_frame(data), new_zstd_decompressor, len(data), "bomb") == data
    with pytest.raises(DecompressionBombError, match=r"^bomb$"):
        decompress_bounded(zstd_frame(data), new_zstd_decompressor, len(data) - 1, "bomb")


def test_bounded_decompression_joins_frames_and_counts_them_together():
    first, second = b"a" * 3000, b"b" * 2000
    both = zstd_frame(first) + zstd_frame(second)
    assert decompress_bounded(both, new_zstd_decompressor, 5000, "bomb") == first + second
    with pytest.raises(DecompressionBombError, match=r"^bomb$"):
        decompress_bounded(both, new_zstd_decompressor, 4999, "bomb")


def test_bounded_decompression_refuses_a_frame_cut_short():
    frame = zstd_frame(bytes(range(256)) * 40)
    with pytest.raises(DecompressionBombError, match=r"^compressed data ends in the middle of a frame$"):
        decompress_bounded(frame[:-5], new_zstd_decompressor, 10**6, "bomb")


def test_a_gap_in_a_bag_is_played_cut_to_the_longest_wait_with_one_warning(tmp_path):
    log_times = [0, MAX_BAG_GAP_NS, MAX_BAG_GAP_NS + 100 * 10**9, MAX_BAG_GAP_NS + 100 * 10**9 + 1]
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera", "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for index, log_time in enumerate(log_times):
            writer.write(connection, 10**9 + log_time, raw_message(pattern(8, 8, index)))
    warnings: list[str] = []
    source = open_source(str(bag), warn=warnings.append)
    frames = list(source.frames())
    assert [int(f.image[1, 0, 0]) for f in frames] == [0, 1, 2, 3]
    assert [f.offset_ns for f in frames] == [0, MAX_BAG_GAP_NS, 2 * MAX_BAG_GAP_NS, 2 * MAX_BAG_GAP_NS + 1]
    wait = MAX_BAG_GAP_NS // 10**9
    assert warnings == [f"message 2 of /camera comes 100 s after the one before; it is played {wait} s after"]


def bag_folder(path: Path, metadata: str) -> Path:
    path.mkdir()
    (path / "metadata.yaml").write_text(metadata)
    return path


@pytest.mark.parametrize("line", ["compression_mode: file", "compression_mode: 'FILE'", '  compression_mode:  "file"'])
def test_a_bag_compressed_file_by_file_is_refused_before_reading(tmp_path, line):
    padding = "  # topics\n" * 2000  # the whole file is searched, not its start
    bag = bag_folder(tmp_path / "bag", f"rosbag2_bagfile_information:\n  version: 9\n{padding}{line}\n")
    with pytest.raises(SourceError, match="compressed file by file"):
        check_bag_storage(bag)


@pytest.mark.parametrize("line", ["compression_mode: message", "compression_mode: ''", "# compression_mode: files"])
def test_a_bag_compressed_otherwise_is_read(tmp_path, line):
    check_bag_storage(bag_folder(tmp_path / "bag", f"rosbag2_bagfile_information:\n  {line}\n"))


def test_bag_metadata_is_bounded_to_its_byte_limit(tmp_path):
    head = "rosbag2_bagfile_information:\n"
    check_bag_storage(bag_folder(tmp_path / "at", head + "#" * (MAX_METADATA_BYTES - len(head))))
    with pytest.raises(SourceError, match=f"metadata.yaml has over {MAX_METADATA_BYTES} bytes"):
        check_bag_storage(bag_folder(tmp_path / "over", head + "#" * (MAX_METADATA_BYTES - len(head) + 1)))


def test_a_file_of_a_bag_folder_that_is_not_regular_is_refused_by_name(tmp_path):
    bag = bag_folder(tmp_path / "bag", "rosbag2_bagfile_information:\n")
    os.mkfifo(bag / "bag_0.db3")
    with pytest.raises(SourceError, match=r"cannot read bag '.*': 'bag_0.db3': "):
        check_bag_storage(bag)


def test_bounded_decompression_never_asks_for_more_than_one_byte_past_what_is_left():
    asked: list[int] = []

    class Recording:
        def __init__(self) -> None:
            self.inner = new_zstd_decompressor()

        def decompress(self, data: bytes, max_length: int) -> bytes:
            asked.append(max_length)
            return self.inner.decompress(data, max_length=max_length)

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    both = zstd_frame(b"a" * 3000) + zstd_frame(b"b" * 2000)
    assert decompress_bounded(both, Recording, 6000, "bomb") == b"a" * 3000 + b"b" * 2000
    assert asked == [6001, 3001]
