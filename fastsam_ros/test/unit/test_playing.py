"""fastsam_play's playback in this process: its real play() with --no-node publishes a folder of
real image files to a subscription in this process, which checks every frame it receives.

The player as a program (starting a node, signals, hostile sources) is tested in
test/graph/test_play_hostile.py and test_own_data.py; these tests are fast enough to run
under every mutant of tools/play.py.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from fastsam_ros.core.signal_flag import SignalFlag
from fastsam_ros.ros.convert import image_to_bgr, stamp_to_ns
from fastsam_ros.tools import play
from fastsam_ros.tools.frame_sources import SourceError
from test_support.node_driver import SignalWhenReady, signal_handlers_kept
from test_support.own_context import NodeInOwnContext

TOPIC = f"/play_test_{os.getpid()}/image"
"""This process's own topic, so parallel test processes never meet."""


class Camera(NodeInOwnContext):
    """The node's side: a subscription to the player's topic with the node's QoS, spun in a thread."""

    def __init__(self, topic: str) -> None:
        super().__init__("play_test_camera")
        self.received: list[Image] = []
        self.last_arrival = 0.0
        self.node.create_subscription(Image, topic, self._on_image, qos_profile_sensor_data)
        self.spin_in_thread()

    def _on_image(self, msg: Image) -> None:
        self.received.append(msg)
        self.last_arrival = time.monotonic()


@pytest.fixture(scope="module")
def camera() -> Iterator[Camera]:
    subscriber = Camera(TOPIC)
    yield subscriber
    subscriber.close()


@pytest.fixture
def frames(tmp_path) -> tuple[Path, list[np.ndarray]]:
    """A folder of three different small PNG frames, in name order."""
    images = []
    for index in range(3):
        image = np.full((24, 32, 3), 40 * (index + 1), np.uint8)
        image[index, index] = (255, 0, index)
        cv2.imwrite(str(tmp_path / f"frame{index}.png"), image)
        images.append(image)
    return tmp_path, images


def _play(camera: Camera, *argv: str, stop: SignalFlag | None = None) -> tuple[int, list[Image], float]:
    """play() as `fastsam_play --no-node --quiet --topic TOPIC argv...`: frames published, frames
    received, seconds from the last frame's arrival to play's return."""
    args = play.command_line().parse_args(
        ["--no-node", "--quiet", "--topic", TOPIC, "--wait", "10", "--linger", "0", *argv]
    )
    camera.received.clear()
    published = play.play(args, stop or SignalFlag())
    return published, list(camera.received), time.monotonic() - camera.last_arrival


def _which(received: list[Image], images: list[np.ndarray]) -> list[int]:
    """The index of the image each received frame is."""
    return [next(i for i, image in enumerate(images) if np.array_equal(image_to_bgr(m), image)) for m in received]


def _played(received: list[Image], images: list[np.ndarray], expected: list[int]) -> list[int]:
    """Which image each received frame is, checked against the images expected in that order. The
    first frame may be lost: the player's frames are best effort, and a subscriber can match it a
    moment after the player saw the match."""
    order = _which(received, images)
    assert len(order) >= len(expected) - 1 and order == expected[len(expected) - len(order) :], order
    return order


def test_every_frame_of_a_folder_is_published_in_order_stamped_now_with_its_frame_id(camera, frames):
    folder, images = frames
    before = time.time_ns()
    published, received, lingered = _play(camera, str(folder), "--rate", "20", "--frame-id", "lens")
    assert published == 3
    _played(received, images, [0, 1, 2])
    assert {(msg.encoding, msg.header.frame_id) for msg in received} == {("bgr8", "lens")}
    stamps = [stamp_to_ns(msg.header.stamp) for msg in received]
    assert before < stamps[0] and stamps == sorted(stamps) and stamps[-1] < time.time_ns()
    gaps = [(later - earlier) / 1e9 for earlier, later in itertools.pairwise(stamps)]
    assert all(0.03 <= gap < 0.2 for gap in gaps), f"1/20 s apart: {gaps}"
    assert play.DELIVERY_GRACE_S - 0.1 <= lingered < play.DELIVERY_GRACE_S + 1.5, "--linger 0: the delivery grace"


def test_limit_and_loop_bound_what_is_published(camera, frames):
    folder, images = frames
    published, received, _ = _play(camera, str(folder), "--rate", "100", "--limit", "2")
    assert published == 2
    _played(received, images, [0, 1])
    published, received, _ = _play(camera, str(folder), "--rate", "100", "--loop", "--limit", "7")
    assert published == 7
    _played(received, images, [0, 1, 2, 0, 1, 2, 0])


def test_too_few_subscribers_is_said_and_the_frames_go_out_anyway(camera, frames, capsys):
    folder, _ = frames
    start = time.monotonic()
    published, _, _ = _play(camera, str(folder), "--rate", "100", "--subscribers", "2", "--wait", "0.3")
    # Published, not necessarily received: the one subscriber may not have matched within 0.3 s,
    # and the player's frames are best effort.
    assert published == 3
    assert 0.3 <= time.monotonic() - start < 5.0, "waited --wait, not the 10 s given before it"
    assert f"fastsam_play: too few subscribers on {TOPIC}; publishing anyway" in capsys.readouterr().err


def test_a_stop_before_the_first_frame_publishes_nothing(camera, frames):
    folder, _ = frames
    stop = SignalFlag()
    stop.set()
    start = time.monotonic()
    assert _play(camera, str(folder), stop=stop)[:2] == (0, [])
    assert time.monotonic() - start < play.DELIVERY_GRACE_S


def test_a_stop_during_playback_ends_it_at_once(camera, frames):
    """At one frame a second, a stop 0.3 s after the first frame: no second frame, no linger."""
    folder, _ = frames
    stop = SignalFlag()
    stopped_at: list[float] = []

    def stop_after_the_first_frame() -> None:
        deadline = time.monotonic() + 20.0
        while not camera.received and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        stopped_at.append(time.monotonic())
        stop.set()

    camera.received.clear()
    waiter = threading.Thread(target=stop_after_the_first_frame, daemon=True)
    waiter.start()
    published, _, _ = _play(camera, str(folder), "--rate", "1", "--loop", stop=stop)
    waiter.join(20.0)
    assert published == 1
    assert time.monotonic() - stopped_at[0] < play.DELIVERY_GRACE_S - 0.05, "the stop cuts the delivery grace short"


def test_frames_that_cannot_be_played_are_counted_and_a_source_with_none_is_refused(camera, frames, capsys):
    folder, images = frames
    (folder / "frame1.png").write_bytes(b"not a png")
    published, received, _ = _play(camera, str(folder), "--rate", "100")
    assert published == 2
    _played(received, images, [0, 2])
    assert "fastsam_play: 2 frames published, 1 skipped" in capsys.readouterr().err
    for name in ("frame0.png", "frame2.png"):
        (folder / name).write_bytes(b"not a png either")
    with pytest.raises(SourceError, match=rf"no frame of '{folder}' could be played \(3 skipped\)"):
        _play(camera, str(folder), "--rate", "100")


def test_a_bag_topic_for_a_source_that_is_no_bag_is_refused(camera, frames):
    folder, _ = frames
    with pytest.raises(play.ParameterError, match=r"--bag-topic applies to bags only; '.*' is not a bag"):
        _play(camera, str(folder), "--bag-topic", "/camera/image_raw")


def _main(argv: list[str], monkeypatch, capsys) -> tuple[int | str | None, str]:
    """play.main(argv) with --no-node --quiet on this file's topic: its exit code (None when it
    returned) and stderr; this process's signal handlers and stderr kept."""
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    code = None
    with signal_handlers_kept((signal.SIGINT, signal.SIGTERM)):
        try:
            play.main(["--no-node", "--quiet", "--topic", TOPIC, "--wait", "10", "--linger", "0", *argv])
        except SystemExit as ended:
            code = ended.code
        assert isinstance(sys.stderr, play.UnbreakableStream), "a closed terminal cannot end playback"
    return code, capsys.readouterr().err


def test_the_program_plays_until_sigint_or_sigterm_as_play_does(camera, frames, monkeypatch, capsys):
    """Each stop signal's handler, called as the kernel would call it, ends a looping playback
    (bounded by --limit, should the handler not be the program's)."""
    folder, images = frames
    for signum in (signal.SIGINT, signal.SIGTERM):
        camera.received.clear()
        stopper = SignalWhenReady(signum, lambda: bool(camera.received), timeout_s=10.0)
        code, err = _main([str(folder), "--loop", "--rate", "50", "--limit", "600"], monkeypatch, capsys)
        stopper.join()
        assert (code, err) == (None, ""), signum
        assert stopper.ready_in_time, "stopped while playing"
        assert time.monotonic() - stopper.called_at < 5.0, f"signal {signum} did not end playback"
        order = _which(camera.received, images)
        assert order and all((later - earlier) % 3 == 1 for earlier, later in itertools.pairwise(order)), order


def test_the_program_says_why_a_source_or_a_parameter_cannot_be_played(camera, frames, monkeypatch, capsys):
    folder, _ = frames
    code, err = _main([str(folder / "missing")], monkeypatch, capsys)
    assert isinstance(code, str) and code.startswith(f"fastsam_play: '{folder / 'missing'}'"), code
    code, err = _main([str(folder / "missing\n\x1b[2J")], monkeypatch, capsys)
    assert code == f"fastsam_play: '{folder}/missing\\n\\x1b[2J' does not exist", "one line, the escape shown"
    code, err = _main([str(folder), "--param", "max_pixels:=many"], monkeypatch, capsys)
    assert (code, err) == (2, "fastsam_play: error: --param max_pixels: expected an integer, got 'many'\n")
    code, err = _main([str(folder), "--limit", "0"], monkeypatch, capsys)
    assert (code, err) == (2, "fastsam_play: error: argument --limit: must be 1 or more, got 0 (see --help)\n")
