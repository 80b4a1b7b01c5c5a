"""The registry of upstream workarounds, and a canary for each workaround that needs no ROS node.

A canary reproduces the upstream problem on the installed versions. It fails once the
problem is gone, with the entry's message: remove the workaround (or set `fixed_in`).
Canaries that need process-wide state untouched by other tests (the heap, sys.modules,
patched library globals, the environment) run in a fresh interpreter. The canaries that
need rclpy nodes are in test/graph/test_compat_ros.py.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_ros.core import compat
from fastsam_ros.core.compat import (
    GLIBC_DYNAMIC_MMAP_THRESHOLD,
    OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS,
    RCL_LOGGING_NEEDS_HOME,
    RCL_MIXED_NUMBER_LISTS,
    RCLPY_EXECUTOR_REQUEUE,
    ROSBAGS_UNBOUNDED_DECOMPRESSION,
    TORCHVISION_IMPORTS_DYNAMO,
    ULTRALYTICS_ANCHOR_CACHE,
    ULTRALYTICS_IMAGE_OPEN_PATCH,
    ULTRALYTICS_NMS_PYTHON_FALLBACK,
    WORKAROUNDS,
    Workaround,
    release,
)
from test_support.checkout import PACKAGE_FOLDER

CANARY_FILES = (Path(__file__), PACKAGE_FOLDER / "test" / "graph" / "test_compat_ros.py")


def run_python(script: str, env: dict[str, str] | None = None) -> str:
    """stdout of script run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# The registry


def test_each_entry_is_listed_once_under_its_own_name():
    assert len({entry.name for entry in WORKAROUNDS}) == len(WORKAROUNDS)
    for entry in WORKAROUNDS:
        assert getattr(compat, entry.name) is entry


def test_each_entry_names_upstream_versions_and_code_that_exist():
    for entry in WORKAROUNDS:
        assert entry.upstream and all(address.startswith("https://") for address in entry.upstream), entry.name
        release(entry.seen_in)
        assert entry.fixed_in is None or release(entry.fixed_in) > release(entry.seen_in), entry.name
        for place in entry.code:
            path, name = place.split(":")
            source = (PACKAGE_FOLDER / path).read_text()
            defined = rf"^\s*(def {name}\(|class {name}\b|{name}\s*[:=])"
            assert re.search(defined, source, re.MULTILINE), f"{entry.name}: {place} is not defined"


def test_each_entry_has_a_canary():
    canaries = "".join(path.read_text() for path in CANARY_FILES)
    for entry in WORKAROUNDS:
        assert f"{entry.name}.expired()" in canaries, f"{entry.name} has no canary"


def test_the_release_of_a_version_is_its_leading_numbers():
    assert release("2.14.1+cu130") == (2, 14, 1)
    assert release("10.0.4") > release("9.1.12")
    with pytest.raises(ValueError, match=r"^'unknown' does not start with a release number$"):
        release("unknown")


def test_a_workaround_is_needed_until_the_installed_release_has_the_fix():
    installed = RCLPY_EXECUTOR_REQUEUE.installed()
    assert installed is not None and installed[0] == "rclpy"
    assert not dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in=installed[1]).needed()
    later = ".".join(str(part + 1) for part in release(installed[1]))
    assert dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in=later).needed()
    assert dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in=None).needed()


def test_a_workaround_stays_when_the_version_cannot_be_read():
    unknown = Workaround("UNKNOWN", "", ("https://example.org",), ("no-such-distribution",), "1.0", "1.1", ())
    assert unknown.installed() is None
    assert unknown.needed()
    assert "version unknown" in unknown.expired()


def test_an_expired_workaround_says_what_to_remove_where_and_why():
    entry = dataclasses.replace(RCLPY_EXECUTOR_REQUEUE, fixed_in=None, code=("a.py:f", "b.py:g"))
    version = entry.installed()[1]
    assert entry.status() == "not fixed as of 9.1.2"
    assert entry.expired() == (
        f"RCLPY_EXECUTOR_REQUEUE: the problem is gone with rclpy {version} (registry: not fixed as of 9.1.2): "
        "remove the workaround at a.py:f, b.py:g, or set fixed_in where older releases still need it "
        "(https://github.com/ros2/rclpy/pull/1547)"
    )
    assert dataclasses.replace(entry, fixed_in="10.0.4").status() == "fixed in 10.0.4"


@pytest.mark.parametrize("reported", ["", "uclibc 1.0.45", None])
def test_no_glibc_version_is_read_from_another_c_library(monkeypatch, reported):
    if reported is None:  # a C library without the name at all
        monkeypatch.setattr(os, "confstr_names", {})
        monkeypatch.setattr(os, "confstr", lambda name: pytest.fail("asked for a name the library lacks"))
    else:
        monkeypatch.setattr(os, "confstr", lambda name: reported)
    assert compat.installed_version(compat.GLIBC) is None


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="not glibc")
def test_the_glibc_version_is_read_from_the_c_library():
    assert GLIBC_DYNAMIC_MMAP_THRESHOLD.installed() == (compat.GLIBC, platform.libc_ver()[1])


# Canaries


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="not glibc")
def test_canary_glibc_keeps_a_large_buffer_freed_after_a_larger_one():
    kept = run_python(
        """
        import ctypes, ctypes.util, resource
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

        def resident():
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * resource.getpagesize()

        def cycle(size):
            buffer = libc.malloc(size)
            libc.memset(buffer, 1, size)
            libc.free(buffer)

        cycle(30 * 2**20)
        before = resident()
        cycle(20 * 2**20)
        print(resident() - before)
        """
    )
    assert int(kept) > 16 * 2**20, GLIBC_DYNAMIC_MMAP_THRESHOLD.expired()


def test_canary_importing_torchvision_imports_torch_dynamo():
    """In this process while neither is imported yet (quicker: torch is), else in a fresh one."""
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        probe = "import sys, torchvision; print('torch._dynamo' in sys.modules)"
        imported = run_python(probe).strip() == "True"
    else:
        import torchvision  # noqa: F401

        imported = "torch._dynamo" in sys.modules
    assert imported, TORCHVISION_IMPORTS_DYNAMO.expired()


def test_canary_ultralytics_nms_without_torchvision_runs_its_python_loop(monkeypatch):
    from ultralytics.utils import nms

    loops = []
    python_nms = nms.TorchNMS.nms
    monkeypatch.setattr(nms.TorchNMS, "nms", lambda *args, **kwargs: loops.append(1) or python_nms(*args, **kwargs))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    generator = torch.Generator().manual_seed(0)
    centres, sizes = torch.rand(1, 2, 50, generator=generator) * 600, torch.rand(1, 2, 50, generator=generator) * 80
    prediction = torch.cat((centres, sizes, torch.rand(1, 3, 50, generator=generator)), 1)
    kept = nms.non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.7)
    assert len(kept[0]) > 0
    assert loops, ULTRALYTICS_NMS_PYTHON_FALLBACK.expired()


def test_canary_ultralytics_heads_cache_anchors_per_input_shape():
    from ultralytics.nn.modules.head import Segment

    head = Segment(nc=2, nm=4, npr=8, ch=(8, 16, 32)).eval()
    head.stride = torch.tensor([8.0, 16.0, 32.0])

    def features(side: int) -> list[torch.Tensor]:
        """One feature map per level, as the backbone gives them for a side x side input."""
        return [torch.zeros(1, 8 * level, side // (8 * level), side // (8 * level)) for level in (1, 2, 4)]

    with torch.no_grad():
        head(features(64))
        first = head.anchors
        head(features(64))
        same_shape = head.anchors
        head(features(96))
    # The workaround makes heads recompute them by clearing `shape` on layers with `anchors`.
    assert hasattr(head, "shape") and hasattr(head, "anchors"), ULTRALYTICS_ANCHOR_CACHE.expired()
    assert same_shape is first and head.anchors is not first, ULTRALYTICS_ANCHOR_CACHE.expired()


def test_canary_ultralytics_replaces_pil_image_open():
    import ultralytics.nn.autobackend  # noqa: F401 - what the node imports to load a model
    from PIL import Image

    assert Image.open.__module__ != "PIL.Image", ULTRALYTICS_IMAGE_OPEN_PATCH.expired()


def test_canary_openvino_refuses_a_gather_elements_after_a_slice_from_zero():
    import openvino as ov
    from openvino import opset8

    data = opset8.parameter([1, 8400, 116], np.float32)
    indices = opset8.parameter([1, 300, 4], np.int64)
    boxes = opset8.slice(data, np.array([0]), np.array([4]), np.array([1]), np.array([2]))
    model = ov.Model([opset8.gather_elements(boxes, indices, 1)], [data, indices])
    try:
        ov.Core().compile_model(model, "CPU")
    except RuntimeError as error:
        assert "GatherElements" in str(error)
    else:
        pytest.fail(OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS.expired())


def test_canary_rcl_refuses_a_list_of_integers_and_doubles():
    import rclpy

    context = rclpy.Context()
    try:
        context.init(args=["--ros-args", "-p", "obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]"])
    except RuntimeError as error:
        assert "Sequence should be of same type" in str(error)
    else:
        context.try_shutdown()
        pytest.fail(RCL_MIXED_NUMBER_LISTS.expired())


def test_canary_ros_logging_fails_without_home():
    env = {key: value for key, value in os.environ.items() if key not in ("HOME", "ROS_HOME", "ROS_LOG_DIR")}
    outcome = run_python(
        """
        import rclpy
        context = rclpy.Context()
        try:
            context.init()
        except RuntimeError as error:
            print("refused:", error)
        else:
            context.try_shutdown()
            print("started")
        """,
        env=env,
    )
    assert outcome.startswith("refused:") and "logging" in outcome, RCL_LOGGING_NEEDS_HOME.expired()


def test_canary_rosbags_decompresses_a_chunk_whole_before_checking_its_size():
    bomb = 32 * 2**20
    peak = run_python(
        f"""
        import tracemalloc
        from rosbags.rosbag2 import storage_mcap
        data = storage_mcap.zstd.compress(bytes({bomb}))
        assert len(data) < 64 * 1024
        tracemalloc.start()
        try:
            storage_mcap.decompress(data, "zstd", 16, 0)
        except Exception:
            pass
        print(tracemalloc.get_traced_memory()[1])
        """
    )
    assert int(peak) >= bomb, ROSBAGS_UNBOUNDED_DECOMPRESSION.expired()
