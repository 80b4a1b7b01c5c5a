"""`make demo` (fastsam_demo) run in this process against a real fastsam_node process: the table
it prints, the overlays it writes, and what it says when the node cannot start."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_msgs.msg import Instance, InstanceArray
from fastsam_ros.tools import demo
from fastsam_ros.tools.node_client import NodeClient, isolated_ros_env
from fastsam_ros.tools.sample_frames import demo_sequence

ROW = re.compile(r"^\s*(\d+)  (\S+)\s+(\d+)x(\d+)\s+(\d+)\s+(\d+\.\d)\s+(\d+\.\d)  (.*)$")
"""A row of the demo's table: frame, source, size, instances, node ms, end-to-end ms, top instances."""


@pytest.fixture
def demo_environment(monkeypatch) -> None:
    """The demo sets its graph's variables in os.environ: this process's environment is put back
    after the test. Its camera topic is this process's own, so that two test processes that draw
    the same ROS domain (a mutation run's) never feed each other's node."""
    for key in isolated_ros_env():
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(demo, "CAMERA_TOPIC", f"/demo_test_{os.getpid()}/camera/image_raw")


def test_the_demo_segments_its_twelve_frames_and_writes_each_overlay(tmp_path, demo_environment, capsys, monkeypatch):
    names: list[str] = []

    class NamedClient(NodeClient):
        """The demo's own client, which keeps the name its node had in the graph."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            names.append(self.node.get_name())

    monkeypatch.setattr(demo, "NodeClient", NamedClient)
    output = tmp_path / "runs" / "demo"  # its folder is made, parents included
    code = demo.main(["--output", str(output), "--timeout", "120"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    frames = demo_sequence()
    assert out.splitlines()[:5] == [
        f"[demo] starting fastsam_node (model yolo11n-seg.pt); its log: {output / 'node.log'}",
        "[demo] waiting for the node to load its model and subscribe ...",
        f"[demo] publishing 12 frames on {demo.CAMERA_TOPIC}",
        "",
        "frame  source           size  inst  node ms   e2e ms  top instances",
    ], out
    assert names == ["fastsam_demo"]  # its node in `ros2 node list` while it runs
    rows = [match for line in out.splitlines() if (match := ROW.match(line))]
    assert [int(row[1]) for row in rows] == list(range(len(frames))), out
    for row, (source, frame) in zip(rows, frames, strict=True):
        height, width = frame.shape[:2]
        assert (row[2], int(row[3]), int(row[4])) == (source, width, height), row[0]
        assert int(row[5]) >= 1, row[0]
        # End to end is the node's processing and the trip both ways, in milliseconds.
        assert float(row[6]) <= float(row[7]) < 60_000, row[0]
        overlay = cv2.imread(str(output / f"frame_{int(row[1]):02d}.png"))
        assert overlay is not None and overlay.shape == frame.shape, row[0]
        assert np.abs(overlay.astype(int) - frame).mean() > 1.0, "the overlay is the frame as sent"
    assert all("bus" in row[8] for row in rows[:6]) and all("person" in row[8] for row in rows[6:]), out
    assert sorted(path.name for path in output.glob("frame_*.png")) == [f"frame_{i:02d}.png" for i in range(12)]
    assert f"[demo] {len(frames)}/{len(frames)} frames; median node processing" in out
    assert f"[demo] overlays written to {output.resolve()}/frame_*.png" in out
    assert "loading model 'yolo11n-seg.pt'" in (output / "node.log").read_text()


def test_the_demo_says_why_when_the_node_cannot_start(tmp_path, demo_environment, capsys):
    output = tmp_path / "demo"
    output.mkdir()  # an earlier run's folder is used again
    code = demo.main(["--output", str(output), "--model", str(tmp_path / "missing.pt"), "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == "[demo] error: node process exited with code 2\n", out + err
    assert "model weights not found" in (output / "node.log").read_text()
    assert not list(output.glob("frame_*.png"))


def test_the_demo_names_what_it_waited_for_when_the_node_is_slow_to_subscribe(tmp_path, demo_environment, capsys):
    """The node takes seconds to import torch and load its model: one second is not enough."""
    output = tmp_path / "demo"
    code = demo.main(["--output", str(output), "--timeout", "1"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == "[demo] error: timed out after 1 s waiting for fastsam_node to subscribe\n", out + err
    assert "[demo] publishing" not in out
    assert not list(output.glob("frame_*.png"))


def test_a_frame_the_node_never_answers_is_named_and_the_next_ones_still_run(
    tmp_path, demo_environment, capsys, monkeypatch
):
    """The second of three frames is lost on its way (never published): the demo names it, goes
    on with the third, and exits 1. Its wait for the lost frame is cut from 60 s to 2 s."""
    frames = [demo_sequence()[index] for index in (0, 6, 7)]
    lost = frames[1][1]

    class LossyClient(NodeClient):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.lost_stamps: set[int] = set()

        def send(self, image, *args, **kwargs) -> int:
            if image is not lost:
                return super().send(image, *args, **kwargs)
            self.lost_stamps.add(stamp := time.time_ns())
            return stamp

        def result_for(self, stamp, topic="instances", timeout=60.0):
            return super().result_for(stamp, topic, 2.0 if stamp in self.lost_stamps else timeout)

    monkeypatch.setattr(demo, "NodeClient", LossyClient)
    monkeypatch.setattr(demo, "demo_sequence", lambda: frames)
    output = tmp_path / "demo"
    code = demo.main(["--output", str(output), "--timeout", "120"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    lines = out.splitlines()
    table = lines[lines.index("frame  source           size  inst  node ms   e2e ms  top instances") + 1 :]
    assert ROW.match(table[0]).group(1, 2) == ("0", "bus.jpg"), out
    assert table[1] == "    1  zidane.jpg  no result within 60 s", out
    assert ROW.match(table[2]).group(1, 2) == ("2", "zidane.jpg"), out
    assert "[demo] 2/3 frames; median node processing" in out
    assert sorted(path.name for path in output.glob("frame_*.png")) == ["frame_00.png", "frame_02.png"]
    assert err == ""


def test_the_demo_fails_when_the_node_did_not_exit_cleanly(tmp_path, demo_environment, capsys, monkeypatch):
    """Every frame answered, but the node died before it was asked to stop: exit 1, naming its log."""

    class DyingNodeClient(NodeClient):
        def close(self) -> None:
            self.process.kill()
            self.process.wait()
            super().close()

    monkeypatch.setattr(demo, "NodeClient", DyingNodeClient)
    monkeypatch.setattr(demo, "demo_sequence", lambda: demo_sequence()[:1])
    output = tmp_path / "demo"
    code = demo.main(["--output", str(output), "--timeout", "120"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "[demo] 1/1 frames; median node processing" in out
    assert err == f"[demo] fastsam_node exited with code -9; see {output / 'node.log'}\n"


def test_the_demo_writes_to_demo_output_with_the_small_model_and_waits_three_minutes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(demo, "run", lambda *args: calls.append(args) or 0)
    assert demo.main([]) == 0
    assert calls == [(Path("demo_output"), "yolo11n-seg.pt", 180.0)]
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "`make demo`: the node segmenting a real image sequence, seen from another process." in usage
    for option, meaning in [
        ("--output OUTPUT", "folder for PNGs and the node log"),
        ("--model MODEL", "weights path or model name"),
        ("--timeout TIMEOUT", "seconds to wait for the node to start"),
    ]:
        assert f"{option} {meaning}" in usage


def test_the_summary_names_the_three_highest_scores_first():
    scores = {"bus": 0.5, "person": 0.91, "": 0.7, "tie": 0.2, "dog": 0.655}
    message = InstanceArray(instances=[Instance(class_name=name, score=score) for name, score in scores.items()])
    assert demo.summarise(message) == "person 0.91, object 0.70, dog 0.66"
    assert demo.summarise(InstanceArray()) == ""
