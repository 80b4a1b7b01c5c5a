"""fastsam_play as its own process against hostile input, numbers and signals.

Bad arguments, sources without frames, pipes, decompression bombs and oversized bag metadata
are refused with one line before anything heavy is imported or started; a hostile folder, video
or bag plays its good frames and counts the rest; a closed stderr does not end playback; a
killed player takes the node it started along.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fastsam_ros.tools.node_client import NodeClient
from fastsam_ros.tools.sample_videos import sample_video
from test_support.videos import mjpeg_video

SEED = 20261205
SCALE = int(os.environ.get("FASTSAM_FUZZ_SCALE", "1"))
PLAYER_PEAK_LIMIT = 1500 * 2**20
"""The player's own modules (rclpy, OpenCV, torch through the node's parameter definitions) take
about 700 MB; one decoded 20000x20000 frame alone would take 1.2 GB more."""
TOPIC = "/hostile/camera/image_raw"


def player_command() -> str:
    return str(Path(sys.executable).with_name("fastsam_play"))


def run_player(*args: str, timeout: float = 60.0) -> tuple[int, str, int]:
    """Exit code, stderr and peak memory (bytes) of fastsam_play run to its end."""
    process = subprocess.Popen([player_command(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        watched = psutil.Process(process.pid)
        while not done.wait(0.05):
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, errors = process.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, errors, peak


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose valid header declares width x height, with a few rows of data and no more."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture
def one_image(tmp_path) -> Path:
    folder = tmp_path / "one"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((24, 32, 3), 50, np.uint8))
    return folder


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate", "nan"), ("--rate", "inf"), ("--rate", "-2"), ("--rate", "abc"), ("--wait", "nan"),
        ("--linger", "inf"), ("--linger", "1e10"), ("--rate", "1e-10"), ("--wait", "1e300"), ("--subscribers", "-1"),
        ("--topic", "1/bad topic"), ("--frame-id", "camera\udcff"), ("--node-log", "{tmp}/missing/node.log"),
        ("--node-log", "{tmp}"), ("--node-log", "{tmp}/pipe"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_with_one_line(one_image, tmp_path, option, value):
    """Numbers out of range overflowed the waits, a bad topic or frame id failed once the node had started,
    and a log in a missing folder, a folder or a pipe (which blocked the player for good) failed at start."""
    os.mkfifo(tmp_path / "pipe")
    args = (str(one_image), "--no-node", "--subscribers", "0", "--limit", "1", "--linger", "0", "--quiet")
    code, errors, _ = run_player(*args, option, value.format(tmp=tmp_path), timeout=20.0)
    assert code == 2 and len(errors.splitlines()) == 1 and option in errors, errors


def refusal_in_process(workdir: Path, *args: str) -> tuple[int, str, bool, float]:
    """Exit code, stderr, whether torch was imported, and seconds to the error, of the player's main
    in a fresh interpreter: the source must be refused before the heavy imports."""
    script = (
        "import sys, time\n"
        "from fastsam_ros.tools.play import main\n"
        "start = time.monotonic()\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code if isinstance(exit.code, int) else 1\n"
        "    print(exit.code if isinstance(exit.code, str) else '', file=sys.stderr)\n"
        "print(code, 'torch' in sys.modules, time.monotonic() - start)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=workdir)
    code, torch, seconds = result.stdout.split()
    return int(code), result.stderr.strip(), torch == "True", float(seconds)


def test_missing_or_empty_sources_are_refused_before_heavy_imports(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    code, errors, torch, seconds = refusal_in_process(tmp_path, str(tmp_path / "missing.mp4"))
    assert code == 1 and "does not exist" in errors and len(errors.splitlines()) == 1, errors
    assert not torch, f"torch was imported before the missing path was refused ({seconds:.1f} s)"

    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/camera", "sensor_msgs/msg/Image", typestore=get_typestore(Stores.ROS2_KILTED))
    code, errors, torch, seconds = refusal_in_process(tmp_path, str(tmp_path / "bag"), "--wait", "20")
    assert code == 1 and "no messages" in errors and not torch, (errors, torch)
    print(f"\nplay: missing path refused in {seconds:.2f} s")


def hostile_folder(folder: Path, rng: random.Random, count: int) -> tuple[list[np.ndarray], int]:
    """Good PNGs between hostile files; the good frames in name order, and the count of hostile ones."""
    folder.mkdir()
    good, hostile = [], 0
    for index in range(count):
        image = np.full((24, 32, 3), rng.randrange(256), np.uint8)
        image[0, :, 0] = index % 256
        encoded = cv2.imencode(".png", image)[1].tobytes()
        kind = rng.choice(("good", "good", "truncated", "empty", "huge", "random", "text"))
        if kind == "good":
            good.append(image)
        else:
            hostile += 1
            encoded = {
                "truncated": encoded[: rng.randrange(1, len(encoded))],
                "empty": b"",
                "huge": png_declaring(20000, 20000),
                "random": rng.randbytes(rng.randint(1, 2000)),
                "text": b"not an image",
            }[kind]
        (folder / f"{index:03d}{rng.choice(('.png', '.PNG', '.jpg'))}").write_bytes(encoded)
    return good, hostile


def test_fuzz_player_process_plays_the_good_frames_of_a_hostile_folder(tmp_path):
    """The real player over a seeded folder of good and hostile files, a subscriber here: every good
    frame arrives, every hostile file is skipped with its own warning and counted, no traceback,
    and the player's memory stays far below what one huge frame would take."""
    rng = random.Random(SEED)
    good, hostile = hostile_folder(tmp_path / "folder", rng, 24 * SCALE)
    client = NodeClient("/hostile/unused", name="hostile_tap", outputs=())
    received: list[np.ndarray] = []
    qos = QoSProfile(depth=len(good) + 10, reliability=ReliabilityPolicy.BEST_EFFORT)

    def on_frame(msg: Image) -> None:
        received.append(np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy())

    client.node.create_subscription(Image, TOPIC, on_frame, qos)
    result: list = []
    args = (str(tmp_path / "folder"), "--no-node", "--topic", TOPIC, "--rate", "20", "--linger", "0", "--quiet")
    player = threading.Thread(target=lambda: result.append(run_player(*args)))
    player.start()
    try:
        client.wait(lambda: not player.is_alive(), 90.0, "fastsam_play to finish")
        with contextlib.suppress(TimeoutError):
            client.wait(lambda: len(received) >= len(good), 2.0, "the last frames")
    finally:
        player.join()
        client.close()
    code, errors, peak = result[0]
    context = f"seed {SEED}\n{errors}"
    assert code == 0 and "Traceback" not in errors, context
    assert sum("skipped '" in line for line in errors.splitlines()) == hostile, context
    assert f"{len(good)} frames published, {hostile} skipped" in errors, context
    assert len(good) - 1 <= len(received) <= len(good), f"{len(received)} of {len(good)} good frames arrived"
    assert all(any(np.array_equal(frame, image) for image in good) for frame in received), context
    assert peak < PLAYER_PEAK_LIMIT, f"player peak {peak / 2**20:.0f} MiB"
    print(f"\nplay: {len(good)} good, {hostile} hostile files; player peak {peak / 2**20:.0f} MiB")


def test_bad_bag_frames_are_skipped_and_a_corrupt_chunk_ends_with_one_line(tmp_path):
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter
    from rclpy.serialization import serialize_message
    from rosbags.typesys import Stores, get_typestore

    from fastsam_ros.ros.convert import array_to_image

    definition, _ = get_typestore(Stores.ROS2_KILTED).generate_msgdef("sensor_msgs/msg/Image", ros_version=2)
    rng = np.random.default_rng(SEED)
    path = tmp_path / "RUN.MCAP"
    with path.open("wb") as stream:
        writer = McapWriter(stream, chunk_size=20_000, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="test")
        channel = writer.register_channel(
            "/camera", "cdr", writer.register_schema("sensor_msgs/msg/Image", "ros2msg", definition.encode())
        )
        for index in range(40):
            msg = array_to_image(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), "bgr8")
            if index % 10 == 5:
                msg.encoding = "yuv422_yuy2"
            writer.add_message(channel, log_time=index * 10**7, data=serialize_message(msg), publish_time=0)
        writer.finish()
    play = (str(path), "--no-node", "--subscribers", "0", "--linger", "0", "--quiet", "--rate", "200")
    code, errors, _ = run_player(*play)
    assert code == 0 and "Traceback" not in errors, errors
    assert errors.count("unsupported encoding 'yuv422_yuy2'") == 4 and "36 frames published, 4 skipped" in errors

    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = b"\xa5" * 32
    path.write_bytes(bytes(data))
    code, errors, _ = run_player(*play)
    assert code == 1 and "Traceback" not in errors, errors
    assert errors.splitlines()[-1].startswith("fastsam_play: bag") and "cannot be read on after" in errors, errors


def test_killed_player_takes_its_node_along(tmp_path):
    """SIGKILL leaves the player no chance to stop its node: the kernel ends the node instead."""
    log = tmp_path / "node.log"
    player = subprocess.Popen(
        [player_command(), str(sample_video("vtest.avi")), "--loop", "--rate", "5", "--quiet", "--topic", TOPIC,
         "--param", "device:=cpu", "--node-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = NodeClient(TOPIC, name="kill_watch", outputs=("instances",))
    node = None
    try:
        answered = lambda: bool(client.received["instances"]) or player.poll() is not None  # noqa: E731
        client.wait(answered, 180.0, "the node's answers")
        assert player.poll() is None, log.read_text()
        (node,) = psutil.Process(player.pid).children()
        player.send_signal(signal.SIGKILL)
        player.wait()
        killed = time.monotonic()
        gone = psutil.wait_procs([node], timeout=30.0)[0]  # it finishes the frame and text model in hand
        alive = node.is_running() and node.status() != psutil.STATUS_ZOMBIE
        assert gone or not alive, f"fastsam_node (pid {node.pid}) outlived its killed player\n{log.read_text()[-2000:]}"
        print(f"\nplay: the node ended {time.monotonic() - killed:.1f} s after its player was killed")
    finally:
        client.close()
        if player.poll() is None:
            player.kill()
            player.wait()
        if node is not None and node.is_running():
            node.kill()


def test_nothing_playable_and_bad_player_parameters_end_with_one_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_declaring(20000, 20000))
    (folder / "b.jpg").write_bytes(b"")
    common = ("--no-node", "--subscribers", "0", "--linger", "0", "--quiet")
    code, errors, _ = run_player(str(folder), *common)
    assert code == 1 and "Traceback" not in errors, errors
    assert errors.splitlines()[-1] == f"fastsam_play: no frame of '{folder}' could be played (2 skipped)", errors
    for value in ("abc", "0"):
        code, errors, _ = run_player(str(folder), *common, "--param", f"max_pixels:={value}")
        assert code == 2 and len(errors.splitlines()) == 1 and "--param max_pixels" in errors, errors


def mcap_record(opcode: int, content: bytes) -> bytes:
    return bytes([opcode]) + struct.pack("<Q", len(content)) + content


def mcap_string(text: str) -> bytes:
    return struct.pack("<I", len(text.encode())) + text.encode()


def zstd_of_zeros(head: bytes, size: int) -> bytes:
    """head and then size zero bytes, compressed as one zstd frame without holding them."""
    from backports import zstd

    compressor = zstd.ZstdCompressor()
    parts = [compressor.compress(head), *(compressor.compress(bytes(2**20)) for _ in range(size // 2**20))]
    return b"".join([*parts, compressor.flush()])


def mcap_with_one_chunk(path: Path, payload: bytes, declared_size: int) -> Path:
    """An MCAP file (no summary) of one Image channel and one zstd chunk declaring declared_size bytes."""
    from rosbags.typesys import Stores, get_typestore

    definition, _ = get_typestore(Stores.ROS2_KILTED).generate_msgdef("sensor_msgs/msg/Image", ros_version=2)
    schema = struct.pack("<H", 1) + mcap_string("sensor_msgs/msg/Image") + mcap_string("ros2msg")
    schema += struct.pack("<I", len(definition)) + definition.encode()
    channel = struct.pack("<HH", 1, 1) + mcap_string("/camera") + mcap_string("cdr") + struct.pack("<I", 0)
    chunk = struct.pack("<QQQI", 0, 0, declared_size, 0) + mcap_string("zstd") + struct.pack("<Q", len(payload))
    magic = b"\x89MCAP0\r\n"
    path.write_bytes(
        magic
        + mcap_record(0x01, mcap_string("ros2") + mcap_string("test"))
        + mcap_record(0x03, schema)
        + mcap_record(0x04, channel)
        + mcap_record(0x06, chunk + payload)
        + mcap_record(0x0F, struct.pack("<I", 0))
        + mcap_record(0x02, struct.pack("<QQI", 0, 0, 0))
        + magic
    )
    return path


def sqlite_bag(folder: Path, compression: str = "", message: bytes | None = None) -> Path:
    """A rosbag2 sqlite3 bag of one Image topic, compressed by "message" or "file", with one message or none."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    writer = Writer(folder, version=9, storage_plugin=StoragePlugin.SQLITE3)
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection(
            "/camera", "sensor_msgs/msg/Image", typestore=get_typestore(Stores.ROS2_KILTED)
        )
        if message is not None:
            writer.write(connection, 1, message)
    return folder


def message_compressed_bag(folder: Path, message: bytes) -> Path:
    """A bag compressed message by message, whose one stored (compressed) message is replaced by message."""
    import sqlite3

    sqlite_bag(folder, "message", b"\x00" * 64)
    (database,) = folder.glob("*.db3")
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE messages SET data = ?", (message,))
    return folder


BOMB_BYTES = 2**30
"""What each bomb decompresses to: more than the player's peak limit on top of its own modules."""


@pytest.mark.parametrize("kind", ["declared chunk", "lying chunk", "compressed message"])
def test_decompression_bombs_are_refused_before_decompressing(tmp_path, kind):
    """A few kilobytes that decompress to 1 GiB: an MCAP chunk that declares its size, one that declares
    1000 bytes, a compressed message of a sqlite3 bag. Each was decompressed whole (peak over 2 GB)."""
    message_head = bytes([0x05]) + struct.pack("<Q", BOMB_BYTES + 22) + struct.pack("<HIQQ", 1, 0, 0, 0)
    if kind == "compressed message":
        bag = message_compressed_bag(tmp_path / "bag", zstd_of_zeros(b"", BOMB_BYTES))
    else:
        declared = BOMB_BYTES + len(message_head) if kind == "declared chunk" else 1000
        bag = mcap_with_one_chunk(tmp_path / "bomb.mcap", zstd_of_zeros(message_head, BOMB_BYTES), declared)
    code, errors, peak = run_player(str(bag), "--no-node", "--subscribers", "0", "--linger", "0", "--quiet")
    assert peak < PLAYER_PEAK_LIMIT, f"player peak {peak / 2**20:.0f} MiB\n{errors}"
    assert code == 1 and len(errors.splitlines()) == 1, errors
    assert "-byte bound of max_pixels" in errors or "bytes it declares" in errors, errors
    print(f"\nplay: {kind} bomb refused, player peak {peak / 2**20:.0f} MiB: {errors.strip()}")


def fifo_bag(tmp_path: Path) -> Path:
    folder = sqlite_bag(tmp_path / "bag")
    (database,) = folder.glob("*.db3")
    database.unlink()
    os.mkfifo(database)
    return folder


def huge_metadata_bag(tmp_path: Path) -> Path:
    folder = tmp_path / "bag"
    folder.mkdir()
    (folder / "metadata.yaml").write_text("rosbag2_bagfile_information:\n" + "  # padding\n" * 300_000)
    return folder


def fifo_named(tmp_path: Path, name: str) -> Path:
    os.mkfifo(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda tmp: fifo_named(tmp, "clip.mp4"), "not a regular file", id="pipe as video"),
        pytest.param(lambda tmp: fifo_named(tmp, "run.mcap"), "not a regular file", id="pipe as bag"),
        pytest.param(fifo_bag, "not a regular file", id="pipe in a bag"),
        pytest.param(lambda tmp: sqlite_bag(tmp / "bag", "file", bytes(64)), "compressed file by file", id="by file"),
        pytest.param(huge_metadata_bag, "metadata.yaml has over", id="3 MB metadata"),
        pytest.param(lambda tmp: Path("/dev/video" + "9" * 30), "cannot open camera", id="huge device number"),
    ],
)  # fmt: skip
def test_sources_that_would_block_or_flood_are_refused_with_one_line(tmp_path, make, reason):
    """A pipe blocked the player for good (signals too); a bag compressed by file was decompressed whole to
    disk first (2 GiB from 65 kB); 37 MB of metadata parsed for 47 s; a huge device number, a traceback."""
    source = make(tmp_path)
    code, errors, _ = run_player(str(source), "--no-node", "--subscribers", "0", "--quiet", timeout=20.0)
    assert code == 1 and len(errors.splitlines()) == 1 and reason in errors, errors


def test_video_with_any_name_plays_past_a_corrupt_frame(tmp_path):
    """A file name that is not UTF-8 crashed OpenCV (exit 139); a corrupt frame ended the video there, silently."""
    video = Path(os.fsdecode(bytes(tmp_path) + b"/clip\xff.avi"))
    mjpeg_video(tmp_path / "clip.avi", 30, corrupt=[9]).rename(video)  # OpenCV here would crash on the name too
    code, errors, _ = run_player(
        str(video), "--no-node", "--subscribers", "0", "--linger", "0", "--quiet", "--rate", "200"
    )
    assert code == 0 and "Traceback" not in errors, errors
    assert "skipped frame 9 of" in errors and "29 frames published, 1 skipped" in errors, errors


def test_bag_gap_of_centuries_is_played_after_a_bounded_wait(tmp_path):
    """Two messages logged 2**64 - 1 ns apart: the wait overflowed (a traceback); now it is cut to a few seconds."""
    from mcap.writer import Writer as McapWriter
    from rclpy.serialization import serialize_message
    from rosbags.typesys import Stores, get_typestore

    from fastsam_ros.ros.convert import array_to_image

    definition, _ = get_typestore(Stores.ROS2_KILTED).generate_msgdef("sensor_msgs/msg/Image", ros_version=2)
    path = tmp_path / "gap.mcap"
    with path.open("wb") as stream:
        writer = McapWriter(stream)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("sensor_msgs/msg/Image", "ros2msg", definition.encode())
        channel = writer.register_channel("/camera", "cdr", schema)
        for log_time in (0, 2**64 - 1):
            data = serialize_message(array_to_image(np.zeros((24, 32, 3), np.uint8), "bgr8"))
            writer.add_message(channel, log_time=log_time, data=data, publish_time=0)
        writer.finish()
    code, errors, _ = run_player(str(path), "--no-node", "--subscribers", "0", "--linger", "0", "--quiet", timeout=30.0)
    assert code == 0 and "Traceback" not in errors, errors
    assert "comes 18446744074 s after the one before; it is played 5 s after" in errors, errors


def test_stderr_whose_reader_is_gone_does_not_end_playback(one_image):
    """The progress bar and warnings write to stderr; once its reader had gone (`| head`), the first
    write raised BrokenPipeError out of tqdm and the player ended with exit 1."""
    args = ("--no-node", "--subscribers", "0", "--linger", "0", "--loop", "--limit", "5", "--rate", "50")
    player = subprocess.Popen(
        [player_command(), str(one_image), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    player.stderr.close()
    try:
        assert player.wait(60.0) == 0
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
