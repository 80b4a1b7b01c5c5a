"""fastsam_play as its own process against hostile input, numbers and signals.

Bad command-line numbers and sources without frames are refused with one line before
anything heavy is imported or started; a hostile folder or bag plays its good frames and
counts the rest; a killed player takes the node it started along.
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
    [("--rate", "nan"), ("--rate", "inf"), ("--rate", "-2"), ("--rate", "abc"), ("--wait", "nan"), ("--linger", "inf")],
)
def test_bad_numbers_are_refused_with_one_line(one_image, option, value):
    code, errors, _ = run_player(
        str(one_image), "--no-node", "--subscribers", "0", "--limit", "1", "--linger", "0", "--quiet", option, value
    )
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
    assert errors.splitlines()[-1].startswith("fastsam_play: bag") and "corrupt after" in errors, errors


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
        gone = psutil.wait_procs([node], timeout=15.0)[0]
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
