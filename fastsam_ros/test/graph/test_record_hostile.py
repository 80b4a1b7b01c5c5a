"""fastsam_record as its own process against hostile paths, signals and a full disk.

The node is not the point here: this process publishes real messages of the node's types
(the debug image is a real photo) on the topics the recorder subscribes to, signals the
recorder as kill, timeout, systemd, Docker or a shell would, and reads back what it wrote
with the MCAP readers and OpenCV.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import cv2
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from fastsam_msgs.msg import InstanceArray
from fastsam_ros.ros.convert import array_to_image, stamp_from_ns
from fastsam_ros.tools.node_client import installed_command
from fastsam_ros.tools.record import DEBUG_SUFFIX, DIAGNOSTICS, output_topics
from fastsam_ros.tools.sample_frames import asset_image
from test_support.node_driver import catches
from test_support.own_context import NodeInOwnContext

SEED = 20261205
SCALE = int(os.environ.get("FASTSAM_FUZZ_SCALE", "1"))
TOPICS = output_topics("fastsam", "")
HEARD = [
    f"fastsam_record: first message on {topic}" for topic in (TOPICS["instances"], TOPICS["debug_image"] + DEBUG_SUFFIX)
]
PRECIOUS = b"a recording the user wants to keep\n"


class FakeNode(NodeInOwnContext):
    """Publishes what fastsam_node publishes, in its own rclpy context: instances, diagnostics
    and the debug image (a real photo)."""

    def __init__(self) -> None:
        super().__init__("fake_fastsam")
        self.instances = self.node.create_publisher(InstanceArray, TOPICS["instances"], 10)
        self.debug = self.node.create_publisher(Image, TOPICS["debug_image"], 5)
        self.diagnostics = self.node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self.photo = asset_image("bus.jpg")

    def wait_for_subscriber(self, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.instances.get_subscription_count() == 0 or self.debug.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "fastsam_record did not subscribe"
            assert process is None or process.poll() is None, "fastsam_record ended"
            self.executor.spin_once(timeout_sec=0.05)

    def publish(self, frames: int) -> None:
        """`frames` frames' worth of outputs, about 20 per second."""
        for _ in range(frames):
            stamp = stamp_from_ns(time.time_ns())
            message = InstanceArray(width=self.photo.shape[1], height=self.photo.shape[0])
            message.header.stamp = stamp
            self.instances.publish(message)
            image = array_to_image(self.photo, "bgr8")
            image.header.stamp = stamp
            self.debug.publish(image)
            self.diagnostics.publish(DiagnosticArray())
            self.executor.spin_once(timeout_sec=0.05)


@pytest.fixture
def fake_node() -> Iterator[FakeNode]:
    """A new publishing participant for each test. Fast DDS can leave a subscriber process that
    starts after another one stopped deaf to a publisher that outlived them both: with one
    publisher for the module, a recorder heard nothing for 60 s in 1 of 18 runs of this file on a
    loaded machine. With plain rclpy, a new subscriber process heard nothing for 20 s in 5 of 202
    tries against one publisher, and in none of 190 with a new publisher for each subscriber."""
    node = FakeNode()
    yield node
    node.close()


@pytest.fixture(autouse=True)
def no_recorder_outlives_its_test() -> Iterator[None]:
    """A test that fails half way leaves no recorder running into the next ones."""
    yield
    for process in Recorder.started:
        if process.poll() is None:
            process.kill()
            process.wait()
    Recorder.started.clear()


class Recorder:
    """fastsam_record run as a user runs it, its stdout and stderr in files."""

    started: ClassVar[list[subprocess.Popen]] = []
    """Every recorder process of the running test, ended after it whatever the test did."""

    def __init__(
        self, tmp_path: Path, args: list[str], preexec_fn: Callable[[], None] | None = None, name: str = "record"
    ) -> None:
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [installed_command("fastsam_record"), *args], stdout=out, stderr=err, text=True, preexec_fn=preexec_fn
            )
        Recorder.started.append(self.process)

    def heard(self) -> bool:
        out = self.out.read_text()
        return all(line in out for line in HEARD)

    def record(self, node: FakeNode, frames: int = 4, timeout: float = 60.0) -> None:
        """Publish until the recorder has recorded instances and a debug image, then `frames` more frames."""
        node.wait_for_subscriber(self.process)
        deadline = time.monotonic() + timeout
        while not self.heard():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"fastsam_record never heard the node:\n{self.output()}"
            node.publish(1)
        node.publish(frames)
        time.sleep(0.3)

    def wait(self, timeout: float = 20.0) -> int | None:
        """Exit code, or None when it is still running after `timeout` seconds (it is then killed)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def error_lines(self) -> list[str]:
        return self.err.read_text().splitlines()


def read_mcap(path: Path) -> dict[str, int]:
    """Messages per topic, through the seeking reader and the file's summary (all the file is read)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: dict[str, int] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None, f"{path} has no summary"
        for _, channel, _, _ in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
        assert summary.statistics.message_count == sum(counts.values())
    return counts


def video_frames(path: Path) -> int:
    """Frames OpenCV decodes from an MP4, one by one."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def assert_recorded(path: Path, video: Path | None = None) -> dict[str, int]:
    counts = read_mcap(path)
    debug_topic = TOPICS["debug_image"] + DEBUG_SUFFIX
    assert counts.get(TOPICS["instances"], 0) > 0 and counts.get(debug_topic, 0) > 0, counts
    if video is not None:
        assert video_frames(video) == counts[debug_topic]
    return counts


def assert_one_line_refusal(recorder: Recorder, code: int = 2) -> None:
    assert recorder.wait() == code, recorder.output()
    lines = recorder.error_lines()
    assert len(lines) == 1 and lines[0].startswith("fastsam_record: "), recorder.output()


@pytest.mark.parametrize("existing", ["file", "symlink", "dangling symlink", "video file", "video symlink"])
def test_existing_output_is_refused_and_kept(tmp_path, existing):
    path, video, victim = tmp_path / "run.mcap", tmp_path / "run.mp4", tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    taken = video if existing.startswith("video") else path
    if existing.endswith("symlink"):
        taken.symlink_to(victim if existing != "dangling symlink" else tmp_path / "missing")
    else:
        taken.write_bytes(PRECIOUS)
    recorder = Recorder(tmp_path, [str(path), "--video", str(video), "--duration", "1"])
    assert_one_line_refusal(recorder)
    assert "--force" in recorder.err.read_text()
    assert victim.read_bytes() == PRECIOUS
    if existing == "dangling symlink":
        assert not (tmp_path / "missing").exists()
    elif existing.endswith("file"):
        assert taken.read_bytes() == PRECIOUS
    assert {p.name for p in tmp_path.iterdir()} == {"victim", taken.name, "record.out", "record.err"}


def test_force_replaces_a_symlink_at_the_end_without_following_it(tmp_path, fake_node):
    path, video, victim = tmp_path / "run.mcap", tmp_path / "run.mp4", tmp_path / "victim"
    victim.write_bytes(PRECIOUS)
    path.symlink_to(victim)
    video.symlink_to(victim)
    recorder = Recorder(tmp_path, [str(path), "--video", str(video), "--force"])
    recorder.record(fake_node)
    # Until the recording ends, the old outputs stay what they were.
    assert path.is_symlink() and video.is_symlink() and victim.read_bytes() == PRECIOUS
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait() == 0, recorder.output()
    assert victim.read_bytes() == PRECIOUS
    assert not path.is_symlink() and not video.is_symlink()
    assert_recorded(path, video)
    assert {p.name for p in tmp_path.iterdir()} == {"victim", "run.mcap", "run.mp4", "record.out", "record.err"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_signal_closes_mcap_and_mp4(tmp_path, fake_node, signum):
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    recorder = Recorder(tmp_path, [str(path), "--video", str(video)])
    recorder.record(fake_node)
    recorder.process.send_signal(signum)
    assert recorder.wait() == 0, recorder.output()
    assert "Traceback" not in recorder.output()
    counts = assert_recorded(path, video)
    print(f"\n{signal.Signals(signum).name}: {counts}")


def test_undecodable_and_resized_debug_images(tmp_path, fake_node):
    """A broken debug image is skipped and counted; one of another size is scaled into the MP4."""
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    recorder = Recorder(tmp_path, [str(path), "--video", str(video)])
    recorder.record(fake_node, frames=1)
    truncated = array_to_image(fake_node.photo, "bgr8")
    truncated.data = truncated.data[:100]
    unknown = array_to_image(fake_node.photo, "bgr8")
    unknown.encoding = "no-such-encoding"
    small = array_to_image(cv2.resize(fake_node.photo, (320, 240)), "bgr8")
    for image in (truncated, unknown, small):
        fake_node.debug.publish(image)
    fake_node.publish(1)
    time.sleep(0.5)
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait() == 0, recorder.output()
    summary = "2 debug images skipped (undecodable, or not encodable as JPEG)"
    assert summary in recorder.out.read_text(), recorder.output()
    counts = assert_recorded(path, video)
    assert counts[TOPICS["debug_image"] + DEBUG_SUFFIX] >= 4, counts


def test_repeated_interrupts_still_close_cleanly(tmp_path, fake_node):
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    recorder = Recorder(tmp_path, [str(path), "--video", str(video)])
    recorder.record(fake_node)
    for _ in range(20):
        if recorder.process.poll() is not None:
            break
        recorder.process.send_signal(signal.SIGINT)
        time.sleep(0.02)
    assert recorder.wait() == 0, recorder.output()
    assert "Traceback" not in recorder.output()
    assert_recorded(path, video)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_started_with_sigint_ignored_stops_on_sigint(tmp_path, fake_node):
    """A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop the recording."""
    path = tmp_path / "run.mcap"
    recorder = Recorder(tmp_path, [str(path)], preexec_fn=_ignore_sigint)
    recorder.record(fake_node)
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait(10.0) == 0, recorder.output()
    assert_recorded(path)


def test_signal_during_start_up_leaves_a_readable_file(tmp_path):
    """SIGTERM as soon as the recorder can catch it, while it still imports and starts ROS."""
    path = tmp_path / "run.mcap"
    recorder = Recorder(tmp_path, [str(path)])
    deadline = time.monotonic() + 10.0
    while not catches(recorder.process.pid, signal.SIGTERM):
        assert time.monotonic() < deadline and recorder.process.poll() is None, recorder.output()
        time.sleep(0.005)
    recorder.process.send_signal(signal.SIGTERM)
    assert recorder.wait() == 0, recorder.output()
    assert "Traceback" not in recorder.output()
    assert read_mcap(path) == {}


def test_sigkill_leaves_messages_a_streaming_reader_recovers(tmp_path, fake_node):
    """SIGKILL allows no summary; what was flushed (within about a second) reads back without it."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader

    path = tmp_path / "run.mcap"
    recorder = Recorder(tmp_path, [str(path)])
    recorder.record(fake_node, frames=3)
    time.sleep(1.5)
    recorder.process.kill()
    recorder.wait()
    topics: list[str] = []
    with path.open("rb") as stream, contextlib.suppress(McapError, EOFError):
        for _, channel, _ in NonSeekingReader(stream).iter_messages(log_time_order=False):
            topics.append(channel.topic)
    assert topics.count(TOPICS["instances"]) > 0 and topics.count(TOPICS["debug_image"] + DEBUG_SUFFIX) > 0, topics


@pytest.mark.parametrize(
    "where", ["video in a missing folder", "output is a folder", "video is a folder", "output in /proc", "same file"]
)
def test_unusable_path_is_refused_with_one_line(tmp_path, where):
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    if where == "video in a missing folder":
        video = tmp_path / "missing" / "run.mp4"
    elif where == "output is a folder":
        path.mkdir()
    elif where == "video is a folder":
        video.mkdir()
    elif where == "output in /proc":
        path = Path("/proc/fastsam_record.mcap")
    else:
        video = path
    args = [str(path), "--video", str(video), "--duration", "1"]
    for force in ([], ["--force"]):
        recorder = Recorder(tmp_path, args + force)
        assert_one_line_refusal(recorder)
        assert "Traceback" not in recorder.output()
        if where in ("video in a missing folder", "video is a folder"):
            assert not path.exists(), "a refused recording must not leave an output behind"


def _file_size_limit() -> None:
    """The kernel refuses to grow any file past 64 KiB (EFBIG, as a full disk refuses with ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_full_disk_ends_with_one_line(tmp_path, fake_node):
    """A write the kernel refuses mid-recording (here the file-size limit, as a full disk would with
    ENOSPC: the same failed write(2)) ends the recording with one line naming the file, exit code 1."""
    path = tmp_path / "run.mcap"
    recorder = Recorder(tmp_path, [str(path)], preexec_fn=_file_size_limit)
    node_deadline = time.monotonic() + 20.0
    fake_node.wait_for_subscriber()
    while recorder.process.poll() is None and time.monotonic() < node_deadline:
        fake_node.publish(1)
    code = recorder.wait(10.0)
    assert code == 1, recorder.output()
    # The limit also keeps Fast DDS from creating its shared-memory segment: it says so and uses UDP.
    lines = [line for line in recorder.error_lines() if "RTPS_" not in line]
    assert len(lines) == 1 and "cannot write" in lines[0] and str(path) in lines[0], recorder.output()
    assert "Traceback" not in recorder.output()


JUNK = ["nan", "inf", "-inf", "1e400", "-0", "", "x", "1,5", "0x10", "١", "--", "-1e-9"]
FUZZ_OPTIONS: dict[str, Callable[[random.Random], str]] = {
    "--duration": lambda rng: f"{rng.uniform(-0.1, 0.3):.3f}",
    "--frames": lambda rng: str(rng.randint(-3, 1000)),
    "--jpeg-quality": lambda rng: str(rng.randint(-5, 120)),
    "--video-fps": lambda rng: repr(rng.uniform(-10.0, 2000.0)),
    "--node": lambda rng: "".join(rng.choices("ab_/ ~{}1é.", k=rng.randint(0, 6))),
    "--camera": lambda rng: "".join(rng.choices("ab_/ ~{}1é.", k=rng.randint(0, 6))),
}


def test_fuzz_command_line(tmp_path):
    """Random values for the options: each run ends within a bound, with exit 0 (a readable file) or
    exit 2, one line and no file, never a traceback. A failure names the seed and case to replay."""
    rng = random.Random(SEED)
    codes: list[int | None] = []
    for case in range(30 * SCALE):
        path, video = tmp_path / f"case{case}.mcap", tmp_path / f"case{case}.mp4"
        args = [str(path), "--duration", "0.2"] + (["--video", str(video)] if rng.random() < 0.3 else [])
        for option in rng.sample(sorted(FUZZ_OPTIONS), rng.randint(1, 3)):
            args += [option, rng.choice(JUNK) if rng.random() < 0.3 else FUZZ_OPTIONS[option](rng)]
        recorder = Recorder(tmp_path, args)
        code = recorder.wait(20.0)
        codes.append(code)
        where = f"seed {SEED} case {case}: fastsam_record {' '.join(args)}\n{recorder.output()}"
        assert code in (0, 2), where
        assert "Traceback" not in recorder.output(), where
        if code == 2:
            assert len(recorder.error_lines()) == 1, where
            assert not path.exists() and not video.exists(), where
        else:
            read_mcap(path)
            assert not video.exists(), "no debug image arrived, so there is no video"
    print(f"\nfuzz seed {SEED}: {codes.count(0)} recorded, {codes.count(2)} refused")


def test_video_name_that_is_not_utf8_is_recorded(tmp_path, fake_node):
    """OpenCV's writer crashes (SIGSEGV) on a file name that is not UTF-8: it never sees the user's name."""
    path, video = tmp_path / os.fsdecode(b"run\xff.mcap"), tmp_path / os.fsdecode(b"run\xfe.mp4")
    recorder = Recorder(tmp_path, [str(path), "--video", str(video)])
    recorder.record(fake_node, frames=1)
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait() == 0, recorder.output()
    readable = tmp_path / "run.mp4"
    video.rename(readable)  # the test's own OpenCV reader has the same limit
    assert_recorded(path, readable)
    assert {p.name for p in tmp_path.iterdir()} == {path.name, "run.mp4", "record.out", "record.err"}


def wait_for_outputs(recorder: Recorder, *outputs: Path) -> None:
    """Until the recorder has locked and created its outputs (before it subscribes: a subscriber
    count may still include a recorder of an earlier test)."""
    deadline = time.monotonic() + 20
    while not all(output.exists() for output in outputs):
        assert time.monotonic() < deadline and recorder.process.poll() is None, recorder.output()
        time.sleep(0.01)


def test_second_recorder_on_the_same_output_is_refused(tmp_path, fake_node):
    """A second recorder on a file another one writes, even with --force, would replace it and lose
    that recording: refused with one line, exit 2; the first recording is complete."""
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    first = Recorder(tmp_path, [str(path), "--video", str(video)], name="first")
    wait_for_outputs(first, path, video)
    for case, args in {
        "same output, --force": [str(path), "--force", "--duration", "1"],
        "same video, --force": [str(tmp_path / "other.mcap"), "--video", str(video), "--force", "--duration", "1"],
    }.items():
        second = Recorder(tmp_path, args, name="second")
        assert_one_line_refusal(second)
        assert "another fastsam_record" in second.err.read_text(), (case, second.output())
    first.record(fake_node)
    first.process.send_signal(signal.SIGINT)
    assert first.wait() == 0, first.output()
    assert_recorded(path, video)
    assert not (tmp_path / "other.mcap").exists()
    assert {p.name for p in tmp_path.iterdir() if not p.name.endswith((".out", ".err"))} == {"run.mcap", "run.mp4"}


def test_outputs_replaced_during_the_recording_are_not_followed(tmp_path, fake_node):
    """Symlinks planted at the output names while the recorder runs: no file they point to is
    written, and the recorder says its file was replaced instead of reporting success."""
    path, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    victims = {name: tmp_path / name for name in ("victim_mcap", "victim_mp4")}
    for victim in victims.values():
        victim.write_bytes(PRECIOUS)
    recorder = Recorder(tmp_path, [str(path), "--video", str(video)])
    wait_for_outputs(recorder, path, video)
    for output, victim in ((path, victims["victim_mcap"]), (video, victims["victim_mp4"])):
        output.unlink()
        output.symlink_to(victim)
    recorder.record(fake_node, frames=1)
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait() == 1, recorder.output()
    assert all(victim.read_bytes() == PRECIOUS for victim in victims.values())
    lines = recorder.error_lines()
    assert len(lines) == 1 and "replaced" in lines[0] and "Traceback" not in recorder.output(), recorder.output()


def test_closed_stdout_does_not_end_the_recording(tmp_path, fake_node):
    """`fastsam_record run.mcap | head -c 1`: the reader of its output goes away, the recording goes on."""
    path = tmp_path / "run.mcap"
    err = tmp_path / "record.err"
    with err.open("w") as stderr:
        process = subprocess.Popen([installed_command("fastsam_record"), str(path)], stdout=subprocess.PIPE,
                                   stderr=stderr)  # fmt: skip
    process.stdout.close()
    try:
        fake_node.wait_for_subscriber(process)  # its start alone can take 20 s on a loaded machine
        deadline = time.monotonic() + 20
        while not path.exists() or path.stat().st_size < 6000:  # the first frames, flushed within a second
            assert time.monotonic() < deadline and process.poll() is None, err.read_text()
            fake_node.publish(1)
        fake_node.publish(12)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        code = process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0 and "Traceback" not in err.read_text(), (code, err.read_text())
    assert read_mcap(path).get(TOPICS["instances"], 0) >= 13


def test_force_takes_the_longest_name_the_folder_takes(tmp_path):
    """A 250-character name works without --force, so it works with it: the hidden file's name is short."""
    path = tmp_path / ("L" * 245 + ".mcap")
    path.write_bytes(PRECIOUS)
    recorder = Recorder(tmp_path, [str(path), "--force", "--duration", "0"])
    assert recorder.wait() == 0, recorder.output()
    assert read_mcap(path) == {}


def test_sigint_while_it_imports_is_a_clean_stop(tmp_path):
    """SIGINT soon after start, while the recorder still imports: exit 0, no traceback, a readable file."""
    path = tmp_path / "run.mcap"
    recorder = Recorder(tmp_path, [str(path)])
    while not catches(recorder.process.pid, signal.SIGINT):  # Python's own handler: SIGINT is Python's
        assert recorder.process.poll() is None, recorder.output()
        time.sleep(0.005)
    time.sleep(0.35)
    recorder.process.send_signal(signal.SIGINT)
    assert recorder.wait() == 0, recorder.output()
    assert "Traceback" not in recorder.output()
    assert read_mcap(path) == {}
