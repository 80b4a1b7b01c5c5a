"""The installed `fastsam_export` as a process of its own, stopped with Ctrl-C halfway through.

A SIGINT is sent to a child process, not to the test process: in a pytest-xdist worker the
signal would reach whichever handler another library installed there."""

from __future__ import annotations

import os
import signal
import subprocess

from fastsam_ros.tools.node_client import installed_command


def test_an_export_stopped_by_ctrl_c_says_so_in_one_line_exits_130_and_leaves_no_file(tmp_path):
    cache = tmp_path / "cache"
    exporter = subprocess.Popen(
        [installed_command("fastsam_export")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FASTSAM_ROS_CACHE": str(cache)},
    )
    try:
        started = exporter.stdout.readline()
        assert started.startswith("Ultralytics "), "ultralytics announces the export it has begun"
        exporter.send_signal(signal.SIGINT)
        _, error = exporter.communicate(timeout=120)
    finally:
        exporter.kill()
    assert (exporter.returncode, error) == (130, "fastsam_export: interrupted\n")
    assert [path for path in cache.rglob("*") if path.is_file()] == [], "the cache is written by renames only"
