"""fastsam_record's recording in this process: its real NodeRecording subscribes to a node's
outputs published here (real messages, the debug image a real photo) and writes the MCAP and
the MP4, read back with the MCAP readers and OpenCV.

The recorder as a program (hostile paths, signals, a full disk, a kill) is tested in
test/graph/test_record_hostile.py; these tests are fast enough to run under every mutant of
tools/record.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fastsam_msgs.msg import InstanceArray, ObstacleArray
from fastsam_ros.ros.convert import array_to_image
from fastsam_ros.ros.process import Shutdown
from fastsam_ros.tools import play, record
from fastsam_ros.tools.node_client import wait_until
from test_support.node_driver import SignalWhenReady, signal_handlers_kept
from test_support.own_context import NodeInOwnContext

NODE = f"record_test_{os.getpid()}"
"""The node name the recorder is pointed at: this process's own, so parallel test processes never meet."""
DIAGNOSTIC = f"diagnostics of {NODE}"
"""Only this process's diagnostics are counted: /diagnostics is one topic for every process."""


class NodeSide(NodeInOwnContext):
    """What a fastsam node publishes, in a context of its own."""

    def __init__(self, camera: str) -> None:
        super().__init__(NODE)
        topics = record.output_topics(NODE, camera)
        self.publishers = {
            "instances": self.node.create_publisher(InstanceArray, topics["instances"], 10),
            "selection": self.node.create_publisher(InstanceArray, topics["selection"], 10),
            "obstacles": self.node.create_publisher(ObstacleArray, topics["obstacles"], 10),
            "debug_image": self.node.create_publisher(Image, topics["debug_image"], 5),
            "diagnostics": self.node.create_publisher(DiagnosticArray, record.DIAGNOSTICS, 10),
        }

    def wait_for(self, recording: record.NodeRecording) -> None:
        """Until the recorder's subscriptions are matched both ways: each counted here may need a
        moment more to match back (the player's MATCH_SETTLE_S), and a message sent before then is lost."""
        wait_until(
            lambda: all(p.get_subscription_count() > 0 for p in self.publishers.values()),
            10.0,
            lambda: recording.executor.spin_once(timeout_sec=0.02),
            "the recorder's subscriptions",
        )
        settled = time.monotonic() + play.MATCH_SETTLE_S
        while time.monotonic() < settled:
            recording.executor.spin_once(timeout_sec=0.02)


@pytest.fixture(scope="module")
def node_side() -> Iterator[NodeSide]:
    side = NodeSide("")
    yield side
    side.close()


def _stamped(stamp_s: int) -> InstanceArray:
    return InstanceArray(header=Header(stamp=Time(sec=stamp_s), frame_id="camera"), width=4, height=3)


def _image(array: np.ndarray, stamp_s: int) -> Image:
    image = array_to_image(array, "bgr8")
    image.header.stamp = Time(sec=stamp_s)
    return image


def _messages(path: Path) -> dict[str, list]:
    """Every message of the MCAP per topic, decoded, with its record: through the file's summary."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics: dict[str, list] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        header = reader.get_header()
        assert (header.profile, header.library) == ("ros2", "fastsam_record")
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert (schema.encoding, channel.message_encoding) == ("ros2msg", "cdr")
            topics.setdefault(channel.topic, []).append((schema.name, message, decoded))
        assert reader.get_summary().statistics.message_count == sum(map(len, topics.values()))
    return topics


OPEN: list[record.NodeRecording] = []
"""Recordings of the running test not closed yet: closed after it whatever happened."""


def _recording(tmp_path: Path, video: bool = False, fps: float = 10.0, quality: int = 80) -> record.NodeRecording:
    output = record.OutputFile(tmp_path / "run.mcap", force=False)
    video_file = record.VideoFile(record.OutputFile(tmp_path / "run.mp4", force=False)) if video else None
    OPEN.append(record.NodeRecording(output, NODE, "", quality, video_file, fps))
    return OPEN[-1]


def _close(recording: record.NodeRecording) -> None:
    """Close as the program does: the files, then the locks on the outputs' names."""
    OPEN.remove(recording)
    recording.close()
    recording.recorder.output.release()
    if recording.video_file is not None:
        recording.video_file.output.release()


@pytest.fixture(autouse=True)
def no_recording_outlives_its_test() -> Iterator[None]:
    yield
    while OPEN:
        _close(OPEN[-1])


def test_every_output_is_recorded_with_its_schema_and_the_debug_image_as_jpeg(tmp_path, node_side, bus, capsys):
    recording = _recording(tmp_path, quality=60)
    node_side.wait_for(recording)
    topics = record.output_topics(NODE, "")
    before = time.time_ns()
    node_side.publishers["instances"].publish(_stamped(1))
    node_side.publishers["selection"].publish(_stamped(2))
    node_side.publishers["obstacles"].publish(ObstacleArray(header=Header(stamp=Time(sec=3))))
    node_side.publishers["diagnostics"].publish(DiagnosticArray(status=[DiagnosticStatus(name=DIAGNOSTIC)]))
    broken = _image(bus, 5)
    broken.data = broken.data[:-1]
    too_wide = _image(np.zeros((1, 65501, 3), np.uint8), 5)  # decodes, but JPEG ends at 65,500 pixels a side
    for skipped in (broken, too_wide, broken, too_wide):
        node_side.publishers["debug_image"].publish(skipped)
    node_side.publishers["debug_image"].publish(_image(bus, 4))  # heard after the four before it
    wait_until(
        lambda: all(recording.recorder.counts[t] for t in recording.recorder.counts),
        10.0,
        lambda: recording.executor.spin_once(timeout_sec=0.02),
        "one message on every topic",
    )
    assert recording.skipped_images == 4, "each of the four counted once"
    node_side.publishers["instances"].publish(_stamped(6))
    recording.run(duration=10.0, frames=2, shutdown=Shutdown())
    assert recording.recorder.counts[topics["instances"]] == 2, "run ends at `frames` instance messages"
    _close(recording)
    after = time.time_ns()
    assert recording.error is None and recording.skipped_images == 4
    out = capsys.readouterr().out
    for topic in recording.recorder.counts:
        assert out.count(f"fastsam_record: first message on {topic}\n") == 1, out
    written = _messages(tmp_path / "run.mcap")
    instances = written[topics["instances"]]
    assert [schema for schema, _, _ in instances] == ["fastsam_msgs/msg/InstanceArray"] * 2
    assert [(m.sequence, d.header.stamp.sec) for _, m, d in instances] == [(0, 1), (1, 6)]
    assert all(before <= m.log_time == m.publish_time <= after for _, m, _ in instances)
    assert [(s, d.header.stamp.sec) for s, _, d in written[topics["selection"]]] == [
        ("fastsam_msgs/msg/InstanceArray", 2)
    ]
    assert [(s, d.header.stamp.sec) for s, _, d in written[topics["obstacles"]]] == [
        ("fastsam_msgs/msg/ObstacleArray", 3)
    ]
    ours = [s for s, _, d in written.get(record.DIAGNOSTICS, []) if d.status and d.status[0].name == DIAGNOSTIC]
    assert ours == ["diagnostic_msgs/msg/DiagnosticArray"]
    [(schema, _, image)] = written[topics["debug_image"] + record.DEBUG_SUFFIX]
    assert (schema, image.format, image.header.stamp.sec) == ("sensor_msgs/msg/CompressedImage", "jpeg", 4)
    assert bytes(image.data) == cv2.imencode(".jpg", bus, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes()
    assert topics["debug_image"] not in written, "the raw image is not recorded"


def test_a_stop_request_or_the_duration_ends_the_recording(tmp_path, node_side):
    shutdown = Shutdown()
    shutdown.requested.set()
    recording = _recording(tmp_path)
    start = time.monotonic()
    recording.run(duration=None, frames=None, shutdown=shutdown)
    assert time.monotonic() - start < record.SPIN_SLICE_S
    _close(recording)
    assert _messages(tmp_path / "run.mcap") == {}
    (tmp_path / "run.mcap").unlink()
    recording = _recording(tmp_path)
    start = time.monotonic()
    recording.run(duration=0.5, frames=None, shutdown=Shutdown())
    assert 0.5 <= time.monotonic() - start < 0.5 + 1.0
    _close(recording)


def test_the_chunk_in_progress_reaches_the_file_every_flush_interval(tmp_path, node_side, monkeypatch):
    """What a kill would leave: the messages of the last flush, readable without the summary."""
    from mcap.exceptions import McapError
    from mcap.reader import NonSeekingReader

    monkeypatch.setattr(record, "FLUSH_INTERVAL_S", 0.2)
    recording = _recording(tmp_path)
    node_side.wait_for(recording)
    for stamp in range(3):
        node_side.publishers["instances"].publish(_stamped(stamp))
    recording.run(duration=0.8, frames=None, shutdown=Shutdown())
    flushed = []
    with (tmp_path / "run.mcap").open("rb") as stream, contextlib.suppress(McapError, EOFError):
        for _, _, message in NonSeekingReader(stream).iter_messages(log_time_order=False):
            flushed.append(message.sequence)
    assert flushed == [0, 1, 2], "before close, the three messages are in the file"
    _close(recording)


def test_the_video_has_every_debug_image_at_the_first_ones_size_and_the_given_rate(tmp_path, node_side, bus):
    recording = _recording(tmp_path, video=True, fps=5.0)
    node_side.wait_for(recording)
    small = cv2.resize(bus, (bus.shape[1] // 2, bus.shape[0] // 2))
    for stamp, frame in enumerate((bus, small, bus)):
        node_side.publishers["debug_image"].publish(_image(frame, stamp))
    wait_until(
        lambda: recording.recorder.counts[recording.debug_topic] == 3,
        10.0,
        lambda: recording.executor.spin_once(timeout_sec=0.02),
        f"three debug images ({recording.recorder.counts[recording.debug_topic]}, {recording.skipped_images})",
    )
    _close(recording)
    assert recording.error is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.mcap", "run.mp4"], "no hidden file left"
    capture = cv2.VideoCapture(str(tmp_path / "run.mp4"))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    assert capture.get(cv2.CAP_PROP_FPS) == 5.0
    capture.release()
    assert [f.shape for f in frames] == [bus.shape] * 3
    assert np.abs(frames[1].astype(int) - bus).mean() < 12, "the half-size frame was scaled up to the first size"


def test_a_recording_without_debug_images_leaves_no_video_and_no_empty_file(tmp_path, node_side):
    recording = _recording(tmp_path, video=True)
    recording.run(duration=0.1, frames=None, shutdown=Shutdown())
    _close(recording)
    assert recording.error is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.mcap"]


# The program: main() as a user runs it, in this process.


class Publishing:
    """The node side publishing a frame's outputs every 50 ms in a thread, until stopped."""

    def __init__(self, side: NodeSide, image: np.ndarray, undecodable: int = 0) -> None:
        self.side, self.image, self.stop = side, image, threading.Event()
        self.undecodable = undecodable
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        """Once the recorder hears both topics: what it records before then depends on discovery's order.
        The undecodable debug images go first, before any instance message. A subscription this side
        counts may need a moment more to match back (as the player finds, MATCH_SETTLE_S): a message
        sent before then is lost to it: the skipped images' count came out short in 1 of 14 runs on a
        loaded 2-core machine."""
        publishers = (self.side.publishers["instances"], self.side.publishers["debug_image"])
        while not all(p.get_subscription_count() for p in publishers):
            if self.stop.wait(0.01):
                return
        if self.stop.wait(play.MATCH_SETTLE_S):
            return
        for _ in range(self.undecodable):
            broken = _image(self.image, 0)
            broken.encoding = "no-such-encoding"
            self.side.publishers["debug_image"].publish(broken)
        stamp = 0
        while not self.stop.wait(0.05):
            stamp += 1
            self.side.publishers["debug_image"].publish(_image(self.image, stamp))
            self.side.publishers["instances"].publish(_stamped(stamp))

    def __enter__(self) -> Publishing:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5.0)


def _main(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """record.main(argv): exit code, stdout, stderr; this process's signal handlers and streams kept."""
    for name in ("stdout", "stderr"):
        monkeypatch.setattr(sys, name, getattr(sys, name))
    with signal_handlers_kept(record.STOP_SIGNALS), pytest.raises(SystemExit) as ended:
        record.main(argv)
    out, err = capsys.readouterr()
    return ended.value.code, out, err


def test_a_run_of_the_program_writes_both_files_and_says_what_it_wrote(tmp_path, node_side, monkeypatch, capsys):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    small = np.zeros((48, 64, 3), np.uint8)
    monkeypatch.setattr(record.NodeRecording, "run", _run_then_replace([]))
    with Publishing(node_side, small):
        code, out, err = _main(
            [str(output), "--node", NODE, "--frames", "3", "--video", str(video)], monkeypatch, capsys
        )
    assert (code, err) == (0, "")
    counts = {topic: len(messages) for topic, messages in _messages(output).items()}
    topics = record.output_topics(NODE, "")
    assert counts[topics["instances"]] == 3
    listed = ", ".join(
        f"{topic} {counts.get(topic, 0)}"
        for topic in (topics["instances"], topics["selection"], topics["obstacles"], record.DIAGNOSTICS)
    )
    debug = topics["debug_image"] + record.DEBUG_SUFFIX
    size = output.stat().st_size
    assert f"fastsam_record: wrote {output} ({size} bytes): {listed}, {debug} {counts[debug]}\n" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.mcap", "run.mp4"], "no lock or hidden file left"


def _video_kept_after_replacing(replaced: Path, folder: Path, err: str) -> re.Match | None:
    """The recorder's error for a replaced output, the kept video's path as group 1."""
    return re.fullmatch(
        rf"fastsam_record: error: '{re.escape(str(replaced))}' was removed or replaced by another program during "
        rf"the recording; the video is kept in '({re.escape(str(folder))}/[^/']+/{record.VIDEO_NAME})'\n",
        err,
    )


def test_when_both_outputs_are_replaced_the_error_names_the_recording_and_where_the_video_is(
    tmp_path, node_side, monkeypatch, capsys
):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    monkeypatch.setattr(record.NodeRecording, "run", _run_then_replace(["mcap", "video"]))
    with Publishing(node_side, np.zeros((48, 64, 3), np.uint8)):
        code, _, err = _main([str(output), "--node", NODE, "--frames", "5", "--video", str(video)], monkeypatch, capsys)
    kept = _video_kept_after_replacing(output, tmp_path, err)
    assert code == 1 and kept is not None, err
    capture = cv2.VideoCapture(kept[1])
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) >= 1, "the recorded video"
    capture.release()
    assert video.read_bytes() == b"another program's file\n", "the other program's file is left alone"


def test_a_run_without_debug_images_says_that_no_video_was_written(tmp_path, node_side, monkeypatch, capsys):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    argv = [str(output), "--node", f"{NODE}_silent", "--duration", "0.2", "--video", str(video)]
    code, out, err = _main(argv, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out.endswith(f"fastsam_record: no debug image arrived, so no {video} was written\n"), out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.mcap"]


def test_an_output_another_recorder_writes_is_refused_with_exit_code_2(tmp_path, node_side, monkeypatch, capsys):
    output = tmp_path / "run.mcap"
    held = record.OutputLock(output)
    try:
        code, _, err = _main([str(output), "--force", "--duration", "0.1"], monkeypatch, capsys)
    finally:
        held.release()
    assert (code, err) == (2, f"fastsam_record: error: another fastsam_record is writing '{output}'\n")
    assert list(tmp_path.iterdir()) == [], "nothing created"


def test_a_symlink_in_place_of_the_lock_file_is_refused_not_followed(tmp_path):
    name = record.OutputLock(tmp_path / "run.mcap")
    name.release()
    name.path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(record.RecordError) as refused:
        record.OutputLock(tmp_path / "run.mcap")
    reason = "Too many levels of symbolic links"
    assert str(refused.value) == f"cannot lock '{tmp_path / 'run.mcap'}' ({name.path.name}): {reason}"
    assert not (tmp_path / "elsewhere").exists()


def test_a_lock_whose_file_another_program_removed_is_still_released(tmp_path):
    lock = record.OutputLock(tmp_path / "run.mcap")
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o644 & ~record._umask(), "readable, never executable"
    lock.path.unlink()
    lock.release()
    with pytest.raises(OSError):
        os.fstat(lock.fd)
    record.OutputLock(tmp_path / "run.mcap").release()


@pytest.mark.parametrize("force", [False, True])
def test_an_output_replaced_during_the_recording_is_an_error_not_a_success(
    tmp_path, node_side, monkeypatch, capsys, force
):
    output = tmp_path / "run.mcap"
    if force:
        output.write_bytes(b"an older recording\n")

    run = record.NodeRecording.run

    def run_once_replaced(recording: record.NodeRecording, *args: object) -> None:
        """Another program puts its file where the recording is being written, as the recording starts."""
        (tmp_path / "other").write_bytes(b"another program's file\n")
        os.replace(tmp_path / "other", recording.recorder.output.path)
        run(recording, *args)

    monkeypatch.setattr(record.NodeRecording, "run", run_once_replaced)
    argv = [str(output), "--node", NODE, "--duration", "0.2", *(["--force"] if force else [])]
    code, out, err = _main(argv, monkeypatch, capsys)
    assert code == 1 and "fastsam_record: wrote" not in out
    replaced = "was removed or replaced by another program during the recording"
    if force:
        assert output.read_bytes() == b"an older recording\n", "the older recording is left as it was"
        unfinished = re.fullmatch(
            rf"fastsam_record: error: '({re.escape(str(tmp_path))}/[^/']+)' {replaced}; "
            r"unfinished recording kept in '\1'\n",
            err,
        )
        assert unfinished is not None, err
        assert Path(unfinished[1]).read_bytes() == b"another program's file\n"
    else:
        assert err == f"fastsam_record: error: '{output}' {replaced}\n"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["--jpeg-quality", "0"], "argument --jpeg-quality: must be within 1..100, got 0"),
        (["--jpeg-quality", "101"], "argument --jpeg-quality: must be within 1..100, got 101"),
        (["--duration", "-0.5"], "argument --duration: must be in [0, inf], got '-0.5'"),
        (["--duration", "nan"], "argument --duration: must be a finite number, got 'nan'"),
        (["--duration", "inf"], "argument --duration: must be a finite number, got 'inf'"),
        (["--frames", "0"], "argument --frames: must be 1 or more, got 0"),
        (["--video-fps", "0"], "argument --video-fps: must be in (0, 1000], got '0'"),
        (["--video-fps", "1000.5"], "argument --video-fps: must be in (0, 1000], got '1000.5'"),
        (["--video-fps", "nan"], "argument --video-fps: must be a finite number, got 'nan'"),
        (["--node", "a b"], "--node/--camera: '/a b/instances' is not a valid topic name"),
        (["--camera", "front left"], "--node/--camera: '/fastsam/front left/instances' is not a valid topic name"),
    ],
)
def test_a_refused_command_line_is_one_line_exit_code_2_and_no_file(tmp_path, monkeypatch, capsys, options, reason):
    code, _, err = _main([str(tmp_path / "run.mcap"), *options], monkeypatch, capsys)
    assert (code, err) == (2, f"fastsam_record: error: {reason} (see --help)\n")
    assert list(tmp_path.iterdir()) == []


def test_the_edges_of_the_command_lines_ranges_are_taken(tmp_path, node_side, monkeypatch, capsys):
    argv = [str(tmp_path / "run.mcap"), "--node", f"{NODE}_silent", "--duration", "0", "--jpeg-quality", "1"]
    code, out, err = _main([*argv, "--frames", "1", "--video-fps", "1000"], monkeypatch, capsys)
    assert (code, err) == (0, "") and out.startswith(f"fastsam_record: wrote {tmp_path / 'run.mcap'} (")
    code, out, err = _main([str(tmp_path / "b.mcap"), "--duration", "0", "--jpeg-quality", "100"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert "no debug image arrived" not in out and "skipped" not in out, "no video was asked for, none skipped"


def test_a_cameras_outputs_are_recorded_under_its_name_at_the_chosen_quality(tmp_path, monkeypatch, capsys, bus):
    side = NodeSide("front")
    output = tmp_path / "front.mcap"
    try:
        publishing = Publishing(side, bus)
        with publishing:
            argv = [str(output), "--node", NODE, "--camera", "front", "--frames", "3", "--jpeg-quality", "35"]
            code, _, err = _main(argv, monkeypatch, capsys)
    finally:
        side.close()
    assert (code, err) == (0, "")
    written = _messages(output)
    topics = record.output_topics(NODE, "front")
    assert len(written[topics["instances"]]) == 3
    [(_, _, image), *_] = written[topics["debug_image"] + record.DEBUG_SUFFIX]
    assert bytes(image.data) == cv2.imencode(".jpg", bus, [cv2.IMWRITE_JPEG_QUALITY, 35])[1].tobytes()


def test_sighup_ends_a_recording_as_the_other_stop_signals_do(tmp_path, node_side, monkeypatch, capsys):
    """The handler main installs for SIGHUP (a closed terminal), called as the kernel would call it."""
    closer = SignalWhenReady(signal.SIGHUP)
    start = time.monotonic()
    code, out, _ = _main([str(tmp_path / "run.mcap"), "--node", NODE, "--duration", "30"], monkeypatch, capsys)
    closer.join()
    assert code == 0 and "fastsam_record: wrote" in out
    assert closer.ready_in_time, "the recording's own handler"
    assert time.monotonic() - start < 10.0, "ended by the hang-up, not by --duration"


def test_an_output_that_cannot_be_created_names_the_reason(tmp_path):
    target = tmp_path / "missing" / "run.mcap"
    with pytest.raises(record.RecordError) as refused:
        record.OutputFile(target, force=False)
    assert str(refused.value).startswith(f"cannot lock '{target}' ({record.HIDDEN_PREFIX}")
    assert str(refused.value).endswith(".lock): No such file or directory"), "the reason, not the whole OSError"


def test_an_output_name_the_file_system_refuses_is_named_with_the_reason_and_leaves_no_lock(tmp_path):
    target = tmp_path / ("x" * 256 + ".mcap")
    with pytest.raises(record.RecordError) as refused:
        record.OutputFile(target, force=False)
    assert str(refused.value) == f"cannot create '{target}': File name too long"
    assert list(tmp_path.iterdir()) == []


def test_an_output_replaced_by_a_symlink_to_it_is_no_longer_ours(tmp_path):
    target = tmp_path / "run.mcap"
    output = record.OutputFile(target, force=False)
    try:
        target.rename(tmp_path / "moved")
        target.symlink_to(tmp_path / "moved")
        with pytest.raises(record.RecordError, match="was removed or replaced by another program"):
            output.check_ours()
    finally:
        output.release()


def test_a_forced_output_gets_the_usual_permissions_where_the_file_system_keeps_them(tmp_path, monkeypatch):
    mask = os.umask(0o027)
    try:
        output = record.OutputFile(tmp_path / "run.mcap", force=True)
    finally:
        os.umask(mask)
    try:
        assert stat.S_IMODE(os.fstat(output.fd).st_mode) == 0o640, "as a file created by open() would get"
    finally:
        output.close_descriptor()
        output.discard()
        output.release()

    def no_modes(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", no_modes)  # as on a FAT drive
    target = tmp_path / "fat.mcap"
    output = record.OutputFile(target, force=True)
    try:
        with output.open() as stream:
            stream.write(b"a recording")
        output.commit()
        assert target.read_bytes() == b"a recording"
    finally:
        output.release()


def test_discarding_removes_what_this_run_created_and_never_another_programs_file(tmp_path):
    target = tmp_path / "run.mcap"
    output = record.OutputFile(target, force=False)
    try:
        output.close_descriptor()
        output.discard()
        assert not target.exists()
        output.discard()  # nothing left to remove: no error
    finally:
        output.release()
    output = record.OutputFile(target, force=False)
    try:
        output.close_descriptor()
        (tmp_path / "theirs").write_bytes(b"another program's file\n")
        os.replace(tmp_path / "theirs", target)
        output.discard()
        assert target.read_bytes() == b"another program's file\n"
    finally:
        output.release()


@pytest.fixture
def video(tmp_path) -> Iterator[record.VideoFile]:
    """The video reserved for tmp_path/run.mp4; its folder and the lock on the output's name go after the test."""
    output = record.OutputFile(tmp_path / "run.mp4", force=False)
    video = record.VideoFile(output)
    yield video
    video.discard()
    output.release()


def test_a_video_that_could_not_be_moved_onto_its_output_is_kept_and_named(tmp_path, video):
    assert video.kept() is None, "nothing written yet"
    with open(video.path, "wb") as stream:
        stream.write(b"frames")
    (tmp_path / "run.mp4").unlink()  # another program removed the output reserved for it
    with pytest.raises(record.RecordError, match="was removed or replaced by another program") as failed:
        video.finish()
    assert video.kept() == video.folder / record.VIDEO_NAME
    assert str(failed.value).endswith(f"; the video is kept in '{video.kept()}'")
    assert video.kept().read_bytes() == b"frames"
    video.discard()
    assert video.kept() is None and not video.folder.exists()


def test_a_videos_private_folder_is_hidden_beside_its_output_and_goes_with_it(tmp_path, video):
    assert video.folder.parent == tmp_path and video.folder.name.startswith(record.HIDDEN_PREFIX)
    assert video.path == f"/proc/self/fd/{video.folder_fd}/{record.VIDEO_NAME}"
    (video.folder / "theirs").write_bytes(b"another program's file\n")
    video.discard()
    assert (video.folder / "theirs").exists(), "a folder holding another file is left, without an error"
    video.discard()  # a second time: nothing to do
    (video.folder / "theirs").unlink()


def test_a_video_that_was_never_written_or_has_no_folder_is_an_error_naming_its_output(tmp_path, video):
    with pytest.raises(record.RecordError) as failed:
        video.finish()
    assert str(failed.value) == f"cannot write '{tmp_path / 'run.mp4'}': No such file or directory"
    folder = tmp_path / "outputs"
    folder.mkdir()
    output = record.OutputFile(folder / "run.mp4", force=False)
    try:
        folder.rename(tmp_path / "moved")  # the output's folder went away before the video's was made
        with pytest.raises(record.RecordError) as failed:
            record.VideoFile(output)
        assert str(failed.value) == f"cannot create a folder beside '{folder / 'run.mp4'}': No such file or directory"
    finally:
        (tmp_path / "moved").rename(folder)
        output.release()


def test_an_oserror_without_an_errno_is_named_by_its_text():
    assert record._reason(OSError(2, "No such file or directory")) == "No such file or directory"
    assert record._reason(OSError("the disk went away")) == "the disk went away"


def test_an_mp4_writer_that_cannot_open_ends_with_exit_code_2_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """OpenCV cannot write into a folder that does not exist: the probe finds out before any recording."""
    monkeypatch.setattr(record, "VIDEO_NAME", "missing/video.mp4")
    video = tmp_path / "run.mp4"
    code, _, err = _main([str(tmp_path / "run.mcap"), "--video", str(video)], monkeypatch, capsys)
    assert (code, err) == (
        2,
        f"fastsam_record: error: cannot write '{video}': OpenCV cannot open an MP4 writer for it\n",
    )
    assert list(tmp_path.iterdir()) == [], "no output, private folder or lock left"


def test_the_recorder_is_the_node_fastsam_record_on_the_graph_until_closed(tmp_path, node_side):
    recording = _recording(tmp_path)
    node_side.wait_for(recording)
    topic = record.output_topics(NODE, "")["instances"]

    def subscribers() -> list[tuple[str, str]]:
        return [(s.node_name, s.node_namespace) for s in node_side.node.get_subscriptions_info_by_topic(topic)]

    # The subscription may be matched before the name of its node has been discovered.
    wait_until(
        lambda: subscribers() == [("fastsam_record", "/")],
        10.0,
        lambda: recording.executor.spin_once(timeout_sec=0.02),
        "the subscriber's node name",
    )
    _close(recording)
    assert not recording.context.ok(), "closing leaves the graph: the recorder's own context is shut down"


def test_a_flush_with_nothing_new_writes_nothing(tmp_path, node_side):
    recording = _recording(tmp_path)
    node_side.wait_for(recording)
    node_side.publishers["instances"].publish(_stamped(1))
    wait_until(
        lambda: recording.recorder.counts[recording.instances_topic] == 1,
        10.0,
        lambda: recording.executor.spin_once(timeout_sec=0.02),
        "one instance message",
    )
    recording.recorder.flush()
    size = (tmp_path / "run.mcap").stat().st_size
    assert size > 0 and not recording.recorder.unflushed
    recording.recorder.flush()
    assert (tmp_path / "run.mcap").stat().st_size == size


def test_skipped_debug_images_are_counted_in_the_programs_last_line(tmp_path, node_side, monkeypatch, capsys):
    with Publishing(node_side, np.zeros((48, 64, 3), np.uint8), undecodable=2):
        code, out, err = _main([str(tmp_path / "run.mcap"), "--node", NODE, "--frames", "3"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert out.endswith("; 2 debug images skipped (undecodable, or not encodable as JPEG)\n"), out


def test_paths_that_cannot_become_a_recording_are_refused_before_anything_is_created(tmp_path, monkeypatch, capsys):
    video = tmp_path / "run.mp4"
    video.write_bytes(b"an older video\n")
    for argv, reason in (
        ([str(tmp_path / "missing" / "run.mcap")], f"output: folder '{tmp_path / 'missing'}' does not exist"),
        ([str(tmp_path / "run.mcap"), "--video", str(video)], f"--video: '{video}' already exists; use --force"),
    ):
        code, _, err = _main(argv, monkeypatch, capsys)
        assert code == 2 and err.startswith(f"fastsam_record: error: {reason}"), err
        assert [p.name for p in tmp_path.iterdir()] == ["run.mp4"]


def _run_then_replace(outputs: list[str]):
    """NodeRecording.run once the video has started, after which another program replaces the named
    outputs ('mcap', 'video'): the instance messages may be heard before the first debug image."""
    run = record.NodeRecording.run

    def run_then_replace(recording: record.NodeRecording, *args: object) -> None:
        wait_until(
            lambda: recording.video is not None,
            10.0,
            lambda: recording.executor.spin_once(timeout_sec=0.02),
            "the first debug image",
        )
        run(recording, *args)
        files = {"mcap": recording.recorder.output.path, "video": recording.video_file.output.path}
        for name in outputs:
            files[name].unlink()
            files[name].write_bytes(b"another program's file\n")

    return run_then_replace


def test_a_replaced_video_alone_is_named_once_with_where_the_video_is(tmp_path, node_side, monkeypatch, capsys):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    monkeypatch.setattr(record.NodeRecording, "run", _run_then_replace(["video"]))
    with Publishing(node_side, np.zeros((48, 64, 3), np.uint8)):
        code, _, err = _main([str(output), "--node", NODE, "--frames", "3", "--video", str(video)], monkeypatch, capsys)
    kept = _video_kept_after_replacing(video, tmp_path, err)
    assert code == 1 and kept is not None, err
    assert len(_messages(output)[record.output_topics(NODE, "")["instances"]]) == 3, "the MCAP is complete"


def test_forced_outputs_replace_the_files_there_once_the_recording_ends(tmp_path, node_side, monkeypatch, capsys):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    output.write_bytes(b"an older recording\n")
    video.write_bytes(b"an older video\n")
    monkeypatch.setattr(record.NodeRecording, "run", _run_then_replace([]))
    with Publishing(node_side, np.zeros((48, 64, 3), np.uint8)):
        argv = [str(output), "--node", NODE, "--frames", "2", "--video", str(video), "--force"]
        code, _, err = _main(argv, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert len(_messages(output)[record.output_topics(NODE, "")["instances"]]) == 2
    capture = cv2.VideoCapture(str(video))
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FRAME_COUNT) >= 1, "the new video"
    capture.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.mcap", "run.mp4"]


def test_a_forced_output_that_cannot_replace_its_target_names_the_reason(tmp_path):
    target = tmp_path / "run.mcap"
    output = record.OutputFile(target, force=True)
    try:
        (target / "inside").mkdir(parents=True)  # another program made a folder of the name meanwhile
        with pytest.raises(record.RecordError) as refused:
            output.commit()
        assert str(refused.value) == f"cannot replace '{target}': Is a directory"
        assert output.path.exists(), "the recording is kept where it was written"
    finally:
        output.path.unlink()
        output.release()


def test_forced_outputs_replaced_are_each_named_where_they_are_kept(tmp_path, node_side, monkeypatch, capsys):
    output, video = tmp_path / "run.mcap", tmp_path / "run.mp4"
    monkeypatch.setattr(record.NodeRecording, "run", _run_then_replace(["mcap", "video"]))
    argv = [str(output), "--node", NODE, "--frames", "3", "--video", str(video), "--force"]
    with Publishing(node_side, np.zeros((48, 64, 3), np.uint8)):
        code, _, err = _main(argv, monkeypatch, capsys)
    hidden = rf"{re.escape(str(tmp_path))}/{re.escape(record.HIDDEN_PREFIX)}[^/']+"
    kept = re.fullmatch(
        rf"fastsam_record: error: '({hidden})' was removed or replaced by another program during the recording"
        rf"; unfinished recording kept in '\1'; unfinished recording kept in '({hidden})'"
        rf"; the video is kept in '({hidden}/{record.VIDEO_NAME})'\n",
        err,
    )
    assert code == 1 and kept is not None, err
    assert Path(kept[2]).read_bytes() == b"another program's file\n"
    assert not output.exists() and not video.exists(), "nothing replaced the (absent) targets"


@contextlib.contextmanager
def _file_size_limit(size: int) -> Iterator[None]:
    """Writes that would take a file of this process past `size` bytes fail with EFBIG, as on a full
    disk (Python ignores the SIGXFSZ that comes with them). Every file of the process is held to it,
    pytest's capture file too: what is printed inside must stay within a line or two."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize(
    ("step", "written", "limit"),
    [("write", 0, 65536), ("flush", 524288, 65536), ("close", 524288, 65536), ("close", 16, 0)],
    ids=["a message larger than a chunk", "the flush of a chunk", "the close of a chunk", "the last buffered bytes"],
)
def test_a_write_the_file_system_refuses_is_an_error_naming_the_output(tmp_path, step, written, limit):
    """A message larger than a chunk is written at once, a smaller one at the next flush or at the close;
    the last few bytes go when the file is closed (a limit of 0: the size the file has now)."""
    path = tmp_path / "run.mcap"
    output = record.OutputFile(path, force=False)
    recorder = record.McapRecorder(output, {"/instances": "fastsam_msgs/msg/InstanceArray"})
    try:
        if written:
            recorder.write("/instances", os.urandom(written), 1)
        with _file_size_limit(limit or path.stat().st_size), pytest.raises(record.RecordError) as failed:
            if step == "write":
                recorder.write("/instances", os.urandom(3 * 1024 * 1024), 1)
            else:
                getattr(recorder, step)()
        assert str(failed.value) == f"cannot write '{path}': File too large"
        if step == "close":
            assert recorder.file.closed, "closed even though the summary could not be written"
    finally:
        recorder.file.close()
        output.release()


def test_the_schemas_are_ros_2_message_definitions_as_rosbag2_writes_them(tmp_path):
    """ROS 2's form: each nested type spelled with /msg/ and defined after a separator line; ROS 1's
    (`time stamp`, no separate definitions) would still decode here, but not in every reader."""
    from mcap.reader import make_reader

    output = record.OutputFile(tmp_path / "run.mcap", force=False)
    recorder = record.McapRecorder(output, {"/instances": "fastsam_msgs/msg/InstanceArray"})
    recorder.close()
    output.release()
    with (tmp_path / "run.mcap").open("rb") as stream:
        [schema] = make_reader(stream).get_summary().schemas.values()
    text = schema.data.decode()
    assert (schema.name, schema.encoding) == ("fastsam_msgs/msg/InstanceArray", "ros2msg")
    assert text.startswith("std_msgs/Header header\n")
    assert "\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n" in text
    assert "\nMSG: fastsam_msgs/Instance\n" in text


def test_messages_heard_within_one_flush_interval_share_a_chunk(tmp_path, node_side, monkeypatch):
    """A chunk per flush interval, not per message: each chunk costs an index entry and compresses alone.
    Three messages before the first flush, three more at once after it: at most one flush falls among those."""
    from mcap.reader import StreamReader
    from mcap.records import Chunk

    def publish_three(first: int) -> None:
        for stamp in range(first, first + 3):
            node_side.publishers["instances"].publish(_stamped(stamp))

    monkeypatch.setattr(record, "FLUSH_INTERVAL_S", 0.3)
    recording = _recording(tmp_path)
    node_side.wait_for(recording)
    publish_three(0)
    later = threading.Timer(0.6, publish_three, args=(3,))
    later.start()
    try:
        recording.run(duration=10.0, frames=6, shutdown=Shutdown())
    finally:
        later.join()
    _close(recording)
    with (tmp_path / "run.mcap").open("rb") as stream:
        chunks = sum(isinstance(r, Chunk) for r in StreamReader(stream, emit_chunks=True).records)
    assert 2 <= chunks <= 3, f"{chunks} chunks for two bursts of three messages"


def test_a_write_that_fails_during_the_recording_ends_it_and_is_kept(tmp_path, node_side, monkeypatch):
    monkeypatch.setattr(record, "FLUSH_INTERVAL_S", 0.1)
    recording = _recording(tmp_path)
    recording.recorder.write(recording.instances_topic, os.urandom(512 * 1024), 1)
    start = time.monotonic()
    with _file_size_limit(64 * 1024):
        recording.run(duration=30.0, frames=None, shutdown=Shutdown())
    assert time.monotonic() - start < 10.0, "ended by the failed flush, not by the duration"
    assert str(recording.error) == f"cannot write '{tmp_path / 'run.mcap'}': File too large"
