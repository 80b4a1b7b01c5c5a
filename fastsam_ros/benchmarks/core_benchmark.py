"""`python -m benchmarks.core_benchmark`: the engine against raw ultralytics, with torch and ultralytics only (no ROS).

It runs where ROS is not installed, e.g. a bare GPU machine, and prints, interleaved in one
run: raw ultralytics ``predict`` against the node's per-frame work (segment, then run-length
encode every mask) at 720p, 1080p and on a crowded frame; the stage breakdown; and the
throughput of 1, 2, 4 and 8 cameras in one forward pass. On CUDA it adds fp32 and fp16
rows with CUDA graphs on and off. Nothing here passes or fails: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from fastsam_ros.core.backends.model_loading import LoadedModel, load_model
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine
from fastsam_ros.core.mask_encoding import encode_runs
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.tools.sample_frames import camera_frames, mosaic

CROWDED_CONF = 0.1
"""Confidence for the crowded frame: 50+ real instances at 720p with yolo11n-seg."""
CAMERA_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Case:
    label: str
    frames: list[np.ndarray]
    conf: float


@dataclass(frozen=True)
class Config:
    """One way of running the engine: a loaded model, its label and its engine settings."""

    label: str
    loaded: LoadedModel
    cuda_graphs: str


def cases(frames_per_case: int) -> list[Case]:
    return [
        Case("720p", camera_frames(1280, 720, frames_per_case), 0.25),
        Case("1080p", camera_frames(1920, 1080, frames_per_case), 0.25),
        Case("720p crowded", [mosaic(4, 3, 1280, 720)], CROWDED_CONF),
    ]


def configs(model: str, device: str, runtime: str) -> list[Config]:
    """The CPU: the node's runtime. CUDA: fp32 and fp16, each with CUDA graphs on and off."""
    if device.startswith("cuda"):
        fp32, fp16 = load_model(model, device), load_model(model, device, half=True)
        return [
            Config(f"{device} fp32 graphs", fp32, "on"),
            Config(f"{device} fp32 eager", fp32, "off"),
            Config(f"{device} fp16 graphs", fp16, "on"),
            Config(f"{device} fp16 eager", fp16, "off"),
        ]
    loaded = load_model(model, device, runtime=runtime)
    return [Config(f"{device} {loaded.runtime}", loaded, "off")]


def node_work(engine: SegmentationEngine, frames: list[np.ndarray]) -> list[MaskSet]:
    """What the node does per batch before building messages: segment, run-length encode every mask."""
    results = engine.segment_batch(frames)
    for masks in results:
        for instance in masks.instances:
            encode_runs(instance.mask)
    return results


def synchronized(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def timed(work: Callable[[], object]) -> float:
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1e3

    return timed


def bench_frames(config: Config, all_cases: list[Case], repeats: int) -> None:
    """Raw predict against node work and the stage breakdown, interleaved frame by frame."""
    from ultralytics import FastSAM

    raw = FastSAM(config.loaded.source)
    device = str(config.loaded.device)
    precision = {"quantize": 16} if config.loaded.half else {}
    engine = SegmentationEngine(config.loaded, EngineSettings(cuda_graphs=config.cuda_graphs))
    timed = synchronized(config.loaded.device)
    print(f"\n### {config.label}: per frame (median ms)\n")
    print(
        "| frames | instances | raw predict | node work | node / raw | node fps "
        "| preprocess | forward | NMS | mask decode | encode | n |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in all_cases:
        engine.settings = replace(engine.settings, conf=case.conf)

        def predict(frame: np.ndarray, conf: float = case.conf) -> object:
            return raw.predict(frame, device=device, conf=conf, verbose=False, **precision)

        for frame in case.frames[:2]:
            predict(frame)
            node_work(engine, [frame])
        rows: dict[str, list[float]] = {name: [] for name in ("raw", "node", "pre", "fwd", "nms", "dec", "enc", "n")}
        for _ in range(repeats):
            for frame in case.frames:
                rows["raw"].append(timed(lambda f=frame: predict(f)))
                start = time.perf_counter()
                [masks] = engine.segment_batch([frame])
                segmented = time.perf_counter()
                for instance in masks.instances:
                    encode_runs(instance.mask)
                end = time.perf_counter()
                times = engine.last_times
                rows["node"].append((end - start) * 1e3)
                rows["pre"].append(times.preprocess_ms)
                rows["fwd"].append(times.forward_ms)
                rows["nms"].append(times.nms_ms)
                rows["dec"].append(times.mask_decode_ms)
                rows["enc"].append((end - segmented) * 1e3)
                rows["n"].append(len(masks))
        med = {name: float(np.median(values)) for name, values in rows.items()}
        print(
            f"| {case.label} | {med['n']:.0f} | {med['raw']:.2f} | {med['node']:.2f} | {med['node'] / med['raw']:.2f}x "
            f"| {1e3 / med['node']:.0f} | {med['pre']:.2f} | {med['fwd']:.2f} | {med['nms']:.2f} | {med['dec']:.2f} "
            f"| {med['enc']:.2f} | {len(rows['node'])} |",
            flush=True,
        )


def bench_cameras(config: Config, rounds: int) -> None:
    """Node work on 1, 2, 4 and 8 cameras' 720p frames per forward pass, interleaved by round."""
    engine = SegmentationEngine(config.loaded, EngineSettings(cuda_graphs=config.cuda_graphs))
    frames = camera_frames(1280, 720, max(CAMERA_COUNTS))
    timed = synchronized(config.loaded.device)
    engine.warm_up([(720, 1280)], CAMERA_COUNTS)
    times: dict[int, list[float]] = {count: [] for count in CAMERA_COUNTS}
    for _ in range(rounds):
        for count in CAMERA_COUNTS:
            times[count].append(timed(lambda c=count: node_work(engine, frames[:c])))
    print(f"\n### {config.label}: cameras in one forward pass, 720p\n")
    print("| cameras | ms per pass | frames/s | throughput / one camera | n |")
    print("|---|---|---|---|---|")
    single_fps = 1e3 / float(np.median(times[1]))
    for count in CAMERA_COUNTS:
        per_pass = float(np.median(times[count]))
        fps = count * 1e3 / per_pass
        print(f"| {count} | {per_pass:.2f} | {fps:.1f} | {fps / single_fps:.2f}x | {len(times[count])} |", flush=True)


def machine_lines(device: str) -> list[str]:
    import ultralytics

    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"- CPU: {names[0] if names else 'unknown'}, {os.cpu_count()} cores; GPU: {gpu}; device: {device}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, ultralytics {ultralytics.__version__}",
        "- imgsz 640, iou 0.7; conf 0.25 (crowded frame: 0.1)",
    ]


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return info.read().splitlines()
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolo11n-seg.pt", help="weights file (default: the bundled yolo11n-seg)")
    parser.add_argument("--device", default="auto", help="auto (cuda:0 when present, else cpu), cpu or cuda:N")
    parser.add_argument("--runtime", default="auto", help="runtime on the CPU: auto, torch or onnxruntime")
    parser.add_argument("--frames", type=int, default=4, help="frames per resolution")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the frames")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the camera-count comparison")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    device = args.device if args.device != "auto" else ("cuda:0" if torch.cuda.is_available() else "cpu")
    print("# Core benchmark (no ROS)\n")
    print("\n".join(machine_lines(device)))
    print(f"- model: {args.model}")
    print(
        "\nraw predict: ultralytics `FastSAM(weights).predict(frame)` (PyTorch), everything mode. node work: "
        "`SegmentationEngine.segment` plus run-length encoding of every mask, the node's per-frame work "
        "without building ROS messages. Stages: the engine's own breakdown; encode: the run-length encoding."
    )
    all_cases = cases(args.frames)
    all_configs = configs(args.model, device, args.runtime)
    for config in all_configs:
        bench_frames(config, all_cases, args.repeats)
    for config in all_configs:
        bench_cameras(config, args.rounds)
    if not device.startswith("cuda"):
        print("\nNo CUDA device in this run: the fp32/fp16 and CUDA graph rows were not measured.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
