"""Rolling health figures of the node, and when they deserve a warning.

Kept apart from ROS so the thresholds are tested alone; the node turns a HealthReport
into a diagnostic_msgs/DiagnosticStatus once a second.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from fastsam_ros.core.parameters import default_of

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class HealthLimits:
    max_latency_ms: float = default_of("diagnostics_max_latency_ms")
    """p95 processing latency above this is a warning."""
    max_drop_ratio: float = default_of("diagnostics_max_drop_ratio")
    """Dropped frames above this share of received frames is a warning."""
    stale_after_s: float = 5.0
    """No processed frame for this long (after the first one) is a warning."""


@dataclass(frozen=True)
class HealthReport:
    level: int
    message: str
    values: dict[str, str]


class HealthMonitor:
    """Counts frames over a sliding window of `window_s` seconds."""

    def __init__(self, limits: HealthLimits | None = None, window_s: float = 5.0) -> None:
        self.limits = limits or HealthLimits()
        self.window_s = window_s
        self._lock = threading.Lock()
        self._processed: deque[tuple[float, float]] = deque()
        self._dropped: deque[float] = deque()
        self._received: deque[float] = deque()
        self._passes: deque[tuple[float, int]] = deque()
        self.totals = {"processed": 0, "dropped": 0, "rejected": 0, "failed": 0, "passes": 0, "worker restarts": 0}
        self._last_processed: float | None = None
        self._worker_fault: str | None = None

    def received(self, now: float | None = None) -> None:
        with self._lock:
            self._received.append(now if now is not None else time.monotonic())

    def processed(self, latency_ms: float, now: float | None = None) -> None:
        stamp = now if now is not None else time.monotonic()
        with self._lock:
            self._processed.append((stamp, latency_ms))
            self._last_processed = stamp
            self._worker_fault = None
            self.totals["processed"] += 1

    def dropped(self, count: int = 1, now: float | None = None) -> None:
        stamp = now if now is not None else time.monotonic()
        with self._lock:
            self._dropped.extend([stamp] * count)
            self.totals["dropped"] += count

    def forward_pass(self, frames: int, now: float | None = None) -> None:
        """One forward pass over frames from that many cameras; shows whether batching happens."""
        stamp = now if now is not None else time.monotonic()
        with self._lock:
            self._passes.append((stamp, frames))
            self.totals["passes"] += 1

    def rejected(self) -> None:
        """A frame refused as bad input (its encoding, size or data)."""
        with self._lock:
            self.totals["rejected"] += 1

    def failed(self, frames: int = 1) -> None:
        """Frames that were valid input but failed inside the pipeline (a bug or a runtime error)."""
        with self._lock:
            self.totals["failed"] += frames

    def worker_restarted(self, reason: str) -> None:
        """The inference worker died and was restarted: an error until the next processed frame."""
        with self._lock:
            self.totals["worker restarts"] += 1
            self._worker_fault = reason

    def report(self, now: float | None = None, extra: dict[str, str] | None = None) -> HealthReport:
        now = now if now is not None else time.monotonic()
        with self._lock:
            for queue in (self._dropped, self._received):
                while queue and queue[0] < now - self.window_s:
                    queue.popleft()
            for pairs in (self._processed, self._passes):
                while pairs and pairs[0][0] < now - self.window_s:
                    pairs.popleft()
            batch_sizes = [frames for _, frames in self._passes]
            latencies = [latency for _, latency in self._processed]
            received, dropped = len(self._received), len(self._dropped)
            last = self._last_processed
            totals = dict(self.totals)
            fault = self._worker_fault
        p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
        p95 = float(np.percentile(latencies, 95)) if latencies else float("nan")
        drop_ratio = dropped / received if received else 0.0
        problems = []
        if latencies and p95 > self.limits.max_latency_ms:
            problems.append(f"latency p95 {p95:.0f} ms above {self.limits.max_latency_ms:.0f} ms")
        if received and drop_ratio > self.limits.max_drop_ratio:
            problems.append(f"{drop_ratio:.0%} of frames dropped (limit {self.limits.max_drop_ratio:.0%})")
        if last is not None and now - last > self.limits.stale_after_s:
            problems.append(f"no frame processed for {now - last:.0f} s")
        if fault is not None:
            level, message = ERROR, "; ".join([f"inference worker died and was restarted: {fault}", *problems])
        elif problems:
            level, message = WARN, "; ".join(problems)
        elif last is None:
            level, message = OK, "waiting for the first frame"
        else:
            level, message = OK, "segmenting"
        values = {
            "fps": f"{len(latencies) / self.window_s:.2f}",
            "latency p50 ms": f"{p50:.1f}",
            "latency p95 ms": f"{p95:.1f}",
            "dropped in window": str(dropped),
            "received in window": str(received),
            "frames processed": str(totals["processed"]),
            "frames dropped": str(totals["dropped"]),
            "frames rejected": str(totals["rejected"]),
            "frames failed": str(totals["failed"]),
            "worker restarts": str(totals["worker restarts"]),
            "forward passes": str(totals["passes"]),
            "frames per forward pass": f"{np.mean(batch_sizes):.2f}" if batch_sizes else "nan",
            **(extra or {}),
        }
        return HealthReport(level, message, values)
