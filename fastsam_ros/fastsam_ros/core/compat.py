"""Workarounds for upstream limitations: what each works around, where it lives, when it can go.

Every workaround in the package is listed here once, with the upstream report (or the upstream
code, where nobody reported it), the first release that fixes it (None: not fixed as of
`seen_in`, the newest release it was reproduced with) and where its code lives. `needed()`
compares the installed release, read from the distribution's metadata (importlib.metadata,
nothing imported) or, for glibc, from `os.confstr`, with the fixing release. Where no release
fixes it, or the version cannot be read (ROS built with colcon or installed from Debian
packages has no Python distribution metadata), the workaround is needed.

Each entry has a canary test (test/unit/test_compat.py, and test/graph/test_compat_ros.py for
the ones that need rclpy nodes) that reproduces the problem on the installed versions and
fails, naming the entry, once upstream no longer has it: then the workaround goes, or the
entry's `fixed_in` is set where a version check keeps it for older releases.

Standard library only, and no ROS: the core and the ROS shell both read it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass

GLIBC = "glibc"
"""Stands for the C library in `distributions`; its version comes from os.confstr, not metadata."""


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: '2.14.1+cu130' -> (2, 14, 1)."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    if match is None:
        raise ValueError(f"'{version}' does not start with a release number")
    return tuple(int(part) for part in match.group().split("."))


def installed_version(distribution: str) -> str | None:
    """The installed version of a Python distribution (or of glibc for GLIBC); None if absent."""
    if distribution == GLIBC:
        text = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
        return text.split()[-1] if text and text.startswith("glibc ") else None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Workaround:
    """One upstream limitation and the package's way around it."""

    name: str
    problem: str
    upstream: tuple[str, ...]
    """Issue, pull request or code addresses; the first is the one to watch."""
    distributions: tuple[str, ...]
    """Where the version is read: the first of these that is installed (wheels name ROS packages ros-*)."""
    seen_in: str
    """The newest release the problem was reproduced with (the canary reproduces it on the installed one)."""
    fixed_in: str | None
    """The first release without the problem; None where none is known."""
    code: tuple[str, ...]
    """'path:name' of each place the workaround lives, from the repository root."""

    def installed(self) -> tuple[str, str] | None:
        """(distribution, version) of the first of `distributions` that is installed, or None."""
        for distribution in self.distributions:
            version = installed_version(distribution)
            if version is not None:
                return distribution, version
        return None

    def needed(self) -> bool:
        """True unless the installed release is known to have the fix."""
        found = self.installed()
        return self.fixed_in is None or found is None or release(found[1]) < release(self.fixed_in)

    def status(self) -> str:
        """'fixed in X' or 'not fixed as of Y', as the registry knows it."""
        return f"fixed in {self.fixed_in}" if self.fixed_in else f"not fixed as of {self.seen_in}"

    def expired(self) -> str:
        """What a canary says once the installed versions no longer show the problem."""
        found = self.installed()
        shown = " ".join(found) if found else f"{self.distributions[0]} (version unknown)"
        return (
            f"{self.name}: the problem is gone with {shown} "
            f"(registry: {self.status()}): remove the workaround at {', '.join(self.code)}, or set fixed_in "
            f"where older releases still need it ({self.upstream[0]})"
        )


RCLPY_EXECUTOR_REQUEUE = Workaround(
    name="RCLPY_EXECUTOR_REQUEUE",
    problem=(
        "rclpy's MultiThreadedExecutor offers a callback it has handed to its pool again at once, without "
        "waiting, until a pool thread starts it: a busy loop holding the GIL that delays the pool thread"
    ),
    upstream=("https://github.com/ros2/rclpy/pull/1547", "https://github.com/ros2/rclpy/issues/1452"),
    distributions=("rclpy",),
    seen_in="9.1.2",
    fixed_in="10.0.4",  # Rolling; a backport to Kilted and Jazzy was requested, none released as of 9.1.2
    code=("fastsam_ros/ros/executor.py:CallbackPoolExecutor", "fastsam_ros/ros/executor.py:node_executor"),
)

GLIBC_DYNAMIC_MMAP_THRESHOLD = Workaround(
    name="GLIBC_DYNAMIC_MMAP_THRESHOLD",
    problem=(
        "glibc raises its mmap threshold when a large mmap'ed block is freed (up to 32 MiB), so later large "
        "buffers come from the heap, whose freed pages it keeps (documented behaviour of M_MMAP_THRESHOLD)"
    ),
    upstream=("https://man7.org/linux/man-pages/man3/mallopt.3.html",),
    distributions=(GLIBC,),
    seen_in="2.36",
    fixed_in=None,
    code=("fastsam_ros/core/memory.py:bound_heap_growth", "fastsam_ros/core/memory.py:release_freed_memory"),
)

TORCHVISION_IMPORTS_DYNAMO = Workaround(
    name="TORCHVISION_IMPORTS_DYNAMO",
    problem=(
        "importing torchvision imports torch._dynamo (through torchvision.ops.roi_align), seconds of every "
        "start, although the node needs only its compiled NMS operator"
    ),
    upstream=("https://github.com/pytorch/vision/blob/main/torchvision/ops/roi_align.py",),
    distributions=("torchvision",),
    seen_in="0.29.1",
    fixed_in=None,
    code=("fastsam_ros/core/detection_nms.py:nms_kernel",),
)

ULTRALYTICS_NMS_PYTHON_FALLBACK = Workaround(
    name="ULTRALYTICS_NMS_PYTHON_FALLBACK",
    problem=(
        "ultralytics' non_max_suppression uses torchvision's NMS kernel only when torchvision is already "
        "imported, and otherwise a Python loop with a device synchronisation per kept box"
    ),
    upstream=("https://github.com/ultralytics/ultralytics/blob/main/ultralytics/utils/nms.py",),
    distributions=("ultralytics", "ultralytics-opencv-headless"),
    seen_in="8.4.190",
    fixed_in=None,
    code=("fastsam_ros/core/detection_nms.py:select_detections",),
)

ULTRALYTICS_ANCHOR_CACHE = Workaround(
    name="ULTRALYTICS_ANCHOR_CACHE",
    problem=(
        "ultralytics' detection heads cache anchors and strides per input shape in tensors they replace when "
        "the shape changes, so a CUDA graph captured for one shape would read memory freed by another"
    ),
    upstream=("https://github.com/ultralytics/ultralytics/blob/main/ultralytics/nn/modules/head.py",),
    distributions=("ultralytics", "ultralytics-opencv-headless"),
    seen_in="8.4.190",
    fixed_in=None,
    code=("fastsam_ros/core/backends/cuda_graphs.py:forget_anchor_caches",),
)

ULTRALYTICS_IMAGE_OPEN_PATCH = Workaround(
    name="ULTRALYTICS_IMAGE_OPEN_PATCH",
    problem=(
        "importing ultralytics replaces PIL.Image.open with a version that pip-installs a HEIF plugin when it "
        "meets data PIL cannot identify, so compressed frames are sized through PIL's format registry instead"
    ),
    upstream=("https://github.com/ultralytics/ultralytics/blob/main/ultralytics/utils/patches.py",),
    distributions=("ultralytics", "ultralytics-opencv-headless"),
    seen_in="8.4.190",
    fixed_in=None,
    code=("fastsam_ros/core/image_codec.py:_header_size",),
)

OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS = Workaround(
    name="OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS",
    problem=(
        "OpenVINO's CPU compiler removes a Slice from index 0 that feeds a GatherElements (its "
        "NopSliceBeforeGatherElements pass) and then refuses that GatherElements, whose data and indices no longer "
        "agree off the gathered axis, so YOLO26's NMS-free head does not compile"
    ),
    upstream=("https://github.com/openvinotoolkit/openvino/pull/18614",),
    distributions=("openvino",),
    seen_in="2026.4.1",
    fixed_in=None,
    code=("fastsam_ros/core/backends/openvino_graph.py:gathers_instead_of_slices",),
)

FASTDDS_RESPONSES_TO_EVERY_CLIENT = Workaround(
    name="FASTDDS_RESPONSES_TO_EVERY_CLIENT",
    problem=(
        "Fast DDS hands each response of a service to every client of that service, and a client keeps only "
        "its newest `depth` responses whoever they are for, so its own can be pushed out before it takes it"
    ),
    upstream=("https://github.com/ros2/rclcpp/issues/2397", "https://github.com/ros2/rmw_fastrtps/issues/559"),
    distributions=("ros-rmw-fastrtps-cpp", "ros-kilted-rmw-fastrtps-cpp"),
    seen_in="9.3.3",
    fixed_in=None,
    code=("fastsam_ros/ros/qos.py:SERVICE_QOS",),
)

RCL_MIXED_NUMBER_LISTS = Workaround(
    name="RCL_MIXED_NUMBER_LISTS",
    problem=(
        "rcl's YAML parameter parser refuses a sequence that mixes integers and doubles, "
        "such as -p 'obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]', before the node exists"
    ),
    upstream=("https://github.com/ros2/rcl/issues/463",),
    distributions=("ros-rcl", "ros-rcl-yaml-param-parser"),
    seen_in="10.1.3",
    fixed_in=None,
    code=("fastsam_ros/ros/arguments.py:widen_number_lists",),
)

RCLPY_OVERRIDE_TYPE = Workaround(
    name="RCLPY_OVERRIDE_TYPE",
    problem=(
        "rclpy refuses a parameter override whose type differs from the declared default's, "
        "an integer for a double parameter (-p conf:=1) included"
    ),
    upstream=("https://github.com/ros2/rclcpp/issues/979",),
    distributions=("rclpy",),
    seen_in="9.1.2",
    fixed_in=None,
    code=("fastsam_ros/ros/node.py:_declare_parameters", "fastsam_ros/ros/node.py:_coerce_parameters"),
)

RCL_LOGGING_NEEDS_HOME = Workaround(
    name="RCL_LOGGING_NEEDS_HOME",
    problem="ROS logging, and with it rclpy.init, fails when none of HOME, ROS_HOME and ROS_LOG_DIR is set",
    upstream=("https://github.com/ros2/rcl_logging/issues/72",),
    distributions=("ros-rcl-logging-spdlog",),
    seen_in="3.2.3",
    fixed_in=None,
    code=("fastsam_ros/ros/process.py:_log_dir_without_home",),
)

ROSBAGS_UNBOUNDED_DECOMPRESSION = Workaround(
    name="ROSBAGS_UNBOUNDED_DECOMPRESSION",
    problem=(
        "rosbags decompresses an MCAP chunk or a compressed message whole before it compares the result with "
        "the size declared, so a few kilobytes of a bag can take gigabytes"
    ),
    upstream=("https://gitlab.com/ternaris/rosbags/-/blob/master/src/rosbags/rosbag2/storage_mcap.py",),
    distributions=("rosbags",),
    seen_in="0.11.9",
    fixed_in=None,
    code=("fastsam_ros/tools/frame_sources.py:bound_bag_decompression",),
)

WORKAROUNDS = (
    RCLPY_EXECUTOR_REQUEUE,
    GLIBC_DYNAMIC_MMAP_THRESHOLD,
    TORCHVISION_IMPORTS_DYNAMO,
    ULTRALYTICS_NMS_PYTHON_FALLBACK,
    ULTRALYTICS_ANCHOR_CACHE,
    ULTRALYTICS_IMAGE_OPEN_PATCH,
    OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS,
    FASTDDS_RESPONSES_TO_EVERY_CLIENT,
    RCL_MIXED_NUMBER_LISTS,
    RCLPY_OVERRIDE_TYPE,
    RCL_LOGGING_NEEDS_HOME,
    ROSBAGS_UNBOUNDED_DECOMPRESSION,
)
"""Every workaround of an upstream limitation in the package."""
