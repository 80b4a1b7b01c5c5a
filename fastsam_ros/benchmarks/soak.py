"""`make soak`: thousands of frames through the real node while clients hammer the prompts.

Checks what a robot running unattended needs: resident memory stays flat after
warm-up, the log has no exceptions, latency at the end is like latency at the start,
and every prompt answer matches the InstanceArray of the frame it names.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastsam_ros.tools.node_client import isolated_ros_env
from fastsam_ros.tools.sample_frames import camera_frames
from test_support.node_driver import NodeProcess

GROWTH_LIMIT_MB = 50.0
LATENCY_RATIO_LIMIT = 1.2
ERROR_MARKERS = ("Traceback", "Exception", "[ERROR]")


@dataclass
class SoakResult:
    frames: int
    seconds: float
    growth_mb: float
    rss_warm_mb: float
    p99_first_ms: float
    p99_last_ms: float
    p50_first_ms: float
    p50_last_ms: float
    errors: list[str] = field(default_factory=list)
    calls: int = 0
    failed_calls: list[str] = field(default_factory=list)
    unanswered: int = 0
    inconsistent: list[str] = field(default_factory=list)
    call_p99_ms: float = float("nan")
    call_max_ms: float = float("nan")
    exit_code: int = 0

    @property
    def latency_ratio(self) -> float:
        return self.p99_last_ms / self.p99_first_ms

    def problems(self) -> list[str]:
        found = []
        if self.growth_mb > GROWTH_LIMIT_MB:
            found.append(f"memory grew {self.growth_mb:.1f} MB after warm-up (limit {GROWTH_LIMIT_MB:.0f})")
        if self.errors:
            found.append(f"{len(self.errors)} error line(s) in the node log, first: {self.errors[0]}")
        if self.latency_ratio > LATENCY_RATIO_LIMIT:
            found.append(f"latency p99 of the last 10% is {self.latency_ratio:.2f}x the first 10%")
        if self.failed_calls or self.unanswered:
            found.append(f"{len(self.failed_calls)} failed and {self.unanswered} unanswered prompt calls")
        if self.inconsistent:
            found.append(f"{len(self.inconsistent)} answers disagree with their frame, first: {self.inconsistent[0]}")
        if self.exit_code != 0:
            found.append(f"the node exited with code {self.exit_code}")
        return found

    def summary(self) -> str:
        return (
            f"{self.frames} frames in {self.seconds:.0f} s ({self.frames / self.seconds:.1f} fps); "
            f"RSS after warm-up {self.rss_warm_mb:.0f} MB, growth {self.growth_mb:+.1f} MB; "
            f"latency p99 first 10% {self.p99_first_ms:.1f} ms, last 10% {self.p99_last_ms:.1f} ms "
            f"({self.latency_ratio:.2f}x), p50 {self.p50_first_ms:.1f} -> {self.p50_last_ms:.1f} ms; "
            f"{self.calls} prompt calls, p99 {self.call_p99_ms:.1f} ms, slowest {self.call_max_ms:.0f} ms; "
            f"{len(self.errors)} log errors"
        )


def run_soak(
    workdir: Path,
    frames: int,
    clients: int,
    rate: float,
    width: int = 640,
    height: int = 480,
    kinds: tuple[str, ...] = ("point",),
) -> SoakResult:
    """Stream `frames` frames as fast as the node answers them, with prompt clients running.

    Client i calls the service kinds[i % len(kinds)].
    """
    node = NodeProcess(workdir, ["-p", "device:=cpu"])
    driver = node.client
    images = camera_frames(width, height, 8)
    driver.first_result(images[-1])  # the clients' first prompts then fall inside the image
    driver.received["instances"].clear()
    driver.arrival.clear()
    stop_file = workdir / "stop"
    loads = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.prompt_load_generator", "--rate", str(rate), "--duration", "3600",
             "--x", str(width / 2), "--y", str(height / 2), "--out", str(workdir / f"client{i}.jsonl"),
             "--stop-file", str(stop_file), "--kind", kinds[i % len(kinds)]],
            env=isolated_ros_env(int(driver.context.get_domain_id())),
        )
        for i in range(clients)
    ]  # fmt: skip
    boxes: dict[int, dict[int, tuple[float, ...]]] = {}
    latencies: list[float] = []
    warm = max(frames // 10, 1)
    rss_warm = 0
    try:
        _wait_until_calling(loads, [workdir / f"client{i}.jsonl" for i in range(clients)], timeout=120.0)
        started = time.perf_counter()
        for index in range(frames):
            sent = time.perf_counter()
            stamp = driver.send(images[index % len(images)])
            msg = driver.result_for(stamp, timeout=60.0)
            latencies.append((driver.arrival[stamp] - sent) * 1e3)
            boxes[stamp] = {i.id: (i.box.x1, i.box.y1, i.box.x2, i.box.y2) for i in msg.instances}
            driver.received["instances"].clear()
            driver.arrival.clear()
            if index == warm:
                rss_warm = node.rss()
        seconds = time.perf_counter() - started
        rss_end = node.rss()
    finally:
        stop_file.touch()
        for load in loads:
            load.wait(60)
        exit_code = node.close()
    tenth = max(len(latencies) // 10, 1)
    result = SoakResult(
        frames=frames,
        seconds=seconds,
        growth_mb=(rss_end - rss_warm) / 2**20,
        rss_warm_mb=rss_warm / 2**20,
        p99_first_ms=float(np.percentile(latencies[:tenth], 99)),
        p99_last_ms=float(np.percentile(latencies[-tenth:], 99)),
        p50_first_ms=float(np.median(latencies[:tenth])),
        p50_last_ms=float(np.median(latencies[-tenth:])),
        exit_code=exit_code,
    )
    np.savetxt(workdir / "latency_ms.txt", latencies, fmt="%.2f")
    result.errors = [line for line in node.log_path.read_text().splitlines() if any(m in line for m in ERROR_MARKERS)]
    _check_answers(result, workdir, clients, boxes)
    return result


def _wait_until_calling(loads: list[subprocess.Popen], outputs: list[Path], timeout: float) -> None:
    """Return once every client has had its first answer, so all of them call throughout.

    A client opens its output file only after its first answer; on a busy machine
    that can take longer than a short soak's frames.
    """
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in outputs):
        ended = [load.args for load in loads if load.poll() is not None]
        if ended:
            raise RuntimeError(f"a prompt client ended before its first answer: {ended[0]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt clients not answered within {timeout:.0f} s")
        time.sleep(0.1)


def _check_answers(result: SoakResult, workdir: Path, clients: int, boxes: dict) -> None:
    call_latencies = []
    for i in range(clients):
        for line in (workdir / f"client{i}.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "unanswered" in record:
                result.unanswered += record["unanswered"]
                continue
            result.calls += 1
            call_latencies.append(record["latency_ms"])
            if not record["success"]:
                result.failed_calls.append(record["message"])
                continue
            frame = boxes.get(record["stamp"])
            if frame is None:
                continue  # a warm-up frame sent before the soak's own frames
            for instance_id, *box in record["instances"]:
                if instance_id not in frame or not np.allclose(frame[instance_id], box):
                    result.inconsistent.append(f"frame {record['stamp']} instance {instance_id}")
    if call_latencies:
        result.call_p99_ms = float(np.percentile(call_latencies, 99))
        result.call_max_ms = float(max(call_latencies))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="prompt calls per second per client")
    parser.add_argument("--kinds", default="point", help="services the clients call in turn, e.g. point,box,text")
    args = parser.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="fastsam_soak_"))
    clients = f"{args.clients} prompt clients ({', '.join(kinds)}) at {args.rate:.0f} Hz"
    print(f"[soak] {args.frames} frames of 640x480, {clients}; logs in {workdir}")
    result = run_soak(workdir, args.frames, args.clients, args.rate, kinds=kinds)
    print(f"[soak] {result.summary()}")
    problems = result.problems()
    for problem in problems:
        print(f"[soak] FAIL: {problem}")
    if not problems:
        print("[soak] all targets met")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
