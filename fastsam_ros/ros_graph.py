"""Helpers for driving a fastsam node from another process: the demo, tests, benchmarks.

Starting the node as a real subprocess (DDS between processes, as on a robot) and
waiting on real graph events, never on fixed sleeps.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from fastsam_ros.ros_convert import array_to_image


def isolated_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for a private graph: own domain id, discovery on this host only."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(1, 100))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
    return env


def start_node(
    ros_args: list[str], env: dict[str, str], log_path: str | None = None, executable: str = "fastsam_node"
) -> subprocess.Popen:
    """fastsam_node in its own process; its output goes to log_path (or is inherited)."""
    command = [_venv_command(executable), "--ros-args", *ros_args]
    output = open(log_path, "w") if log_path else None  # noqa: SIM115 - owned by the process
    return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT if output else None)


def stop_node(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGINT, as Ctrl-C would; kill only if the node does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _venv_command(name: str) -> str:
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def wait_until(condition: Callable[[], bool], timeout: float, spin: Callable[[], None], what: str) -> None:
    """Spin until condition holds; TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        spin()


def stamp_from_ns(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def bgr_image_msg(image: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    msg = array_to_image(image, "bgr8")
    msg.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    return msg
