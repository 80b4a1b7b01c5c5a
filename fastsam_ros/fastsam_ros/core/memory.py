"""Keeping the process's memory bounded after huge messages.

glibc serves large allocations with mmap and returns them on free, but after the first
such free it raises that threshold (up to 32 MB), so later big frames come from the heap,
whose freed pages it keeps: ten refused 30 MB depth frames left the process 0.5 GB larger.
Fixing the threshold keeps every buffer of 8 MB and more (a 4K frame, a huge depth image)
on mmap, returned to the system when freed. Fixing it also fixes glibc's trim threshold at
its 128 KiB default, so each freed frame-sized buffer at the top of the heap went back to
the system and the next frame faulted its pages in again (figures in the README,
Performance). The trim threshold is therefore set too, to keep the few buffers of a 1080p
frame (6 MB each: DDS's copy, the message, the pixels) for reuse.
After a message larger than any camera frame, ``release_freed_memory`` also trims the heap.
Upstream entry: fastsam_ros.core.compat.GLIBC_DYNAMIC_MMAP_THRESHOLD.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 8 * 2**20
TRIM_THRESHOLD_BYTES = 32 * 2**20


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_heap_growth() -> bool:
    """Serve every allocation of MMAP_THRESHOLD_BYTES or more from mmap, and keep up to
    TRIM_THRESHOLD_BYTES of freed heap for the next frame; False where not glibc."""
    libc = _libc()
    return bool(
        libc is not None
        and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def release_freed_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
