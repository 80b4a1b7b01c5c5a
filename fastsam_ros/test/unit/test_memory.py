"""glibc's heap settings: huge buffers go back to the system, frame-sized ones are reused.

Each check runs in a fresh interpreter, since the settings are process-wide and a heap
already shaped by earlier tests would hide what they do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fastsam_ros.core.memory import _libc

PROBE = textwrap.dedent(
    """
    import ctypes, json, resource
    from fastsam_ros.core.memory import _libc, bound_heap_growth, release_freed_memory

    libc = _libc()
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    PAGE = resource.getpagesize()

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def resident():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE

    def cycle(size):
        buffer = libc.malloc(size)
        libc.memset(buffer, 1, size)
        libc.free(buffer)

    assert bound_heap_growth()
    frame = 1920 * 1080 * 3
    cycle(frame)
    before = faults()
    for _ in range(10):
        cycle(frame)
    frame_faults = (faults() - before) / 10
    before = resident()
    cycle(30 * 2**20)
    cycle(20 * 2**20)
    kept = resident() - before
    chunks = [libc.malloc(2**20) for _ in range(24)]
    for chunk in chunks:
        libc.memset(chunk, 1, 2**20)
    for chunk in chunks:
        libc.free(chunk)
    before = resident()
    release_freed_memory()
    trimmed = before - resident()
    print(json.dumps({"frame_pages": frame // PAGE, "frame_faults": frame_faults, "kept": kept, "trimmed": trimmed}))
    """
)


@pytest.fixture(scope="module")
def heap() -> dict:
    if _libc() is None:
        pytest.skip("not glibc: the heap settings do not apply")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_a_1080p_frame_buffer_is_reused_not_faulted_in_again(heap):
    assert heap["frame_faults"] < heap["frame_pages"] / 10


def test_huge_buffers_go_back_to_the_system_when_freed(heap):
    assert heap["kept"] < 4 * 2**20


def test_freed_heap_below_the_trim_threshold_is_returned_on_request(heap):
    """24 MB of 1 MB buffers freed stay with the heap (below the 32 MB trim threshold) until trimmed."""
    assert heap["trimmed"] > 16 * 2**20
