"""`make bench`: where the time goes, measured in one run, written to docs/PERFORMANCE.md.

Every ratio compares figures taken in this one process tree, interleaved frame by frame,
because these machines are noisy. Nothing here passes or fails: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks import follow_measure
from benchmarks.cpu_runtime_bench import openvino_export
from benchmarks.tracking_comparison import ALL_FRAMES
from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine
from fastsam_ros.core.prompts import select_by_box, select_by_points
from fastsam_ros.ros.convert import mask_set_to_msg
from fastsam_ros.tools.sample_frames import camera_frames, mosaic
from test_support.node_driver import NodeProcess

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
PROMPT_CONF = 0.1
"""Confidence for the crowded prompt frame: 53 real instances at 720p with yolo11n-seg."""
SETTLE_S = 0.05
"""Idle time between the reference path and the node: the runtimes' worker threads spin a
while after a pass, and would take CPU from the other side (8-10 ms more for a 1080p frame
to reach the node, measured)."""
Reference = Callable[[np.ndarray], object]
"""The path a frame through the node is compared with: ultralytics' OpenVINO export's predict."""


@dataclass
class Report:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        row = tuple(str(cell) for cell in cells)
        self.rows.append(row)
        print("  " + " | ".join(row), flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return (time.perf_counter() - start) * 1e3


def bench_processing(
    loaded, report: Report, label: str, repeats: int, frames_per_res: int, settings: EngineSettings | None = None
) -> None:
    """Raw ultralytics predict against the node's per-frame work, interleaved per frame."""
    from ultralytics import FastSAM

    raw = FastSAM(loaded.source)
    device = str(loaded.device)
    half = loaded.half
    engine = SegmentationEngine(loaded, settings)
    for res_label, (width, height) in RESOLUTIONS.items():
        frames = camera_frames(width, height, frames_per_res)
        for frame in frames[:2]:
            raw.predict(frame, device=device, half=half, verbose=False)
            raw.predict(frame, device=device, half=half, retina_masks=True, verbose=False)
            mask_set_to_msg(engine.segment(frame), _header())
        times: dict[str, list[float]] = {"raw": [], "raw_retina": [], "node": []}
        for _ in range(repeats):
            for frame in frames:
                times["raw"].append(timed(lambda f=frame: raw.predict(f, device=device, half=half, verbose=False)))
                times["raw_retina"].append(
                    timed(lambda f=frame: raw.predict(f, device=device, half=half, retina_masks=True, verbose=False))
                )
                times["node"].append(timed(lambda f=frame: mask_set_to_msg(engine.segment(f), _header())))
        medians = {name: float(np.median(values)) for name, values in times.items()}
        report.add(
            f"{label} {res_label}",
            f"{medians['raw']:.1f}",
            f"{medians['raw_retina']:.1f}",
            f"{medians['node']:.1f}",
            f"{medians['node'] / medians['raw']:.2f}x",
            f"{medians['node'] / medians['raw_retina']:.2f}x",
            len(times["node"]),
        )


def bench_cameras(loaded, report: Report, label: str, rounds: int, settings: EngineSettings | None = None) -> None:
    """Throughput with 1, 2 and 4 cameras' 720p frames per forward pass, interleaved by round.

    Each pass includes building every camera's InstanceArray, as the node does.
    """
    engine = SegmentationEngine(loaded, settings)
    frames = camera_frames(1280, 720, 4)
    sizes = (1, 2, 4)

    def one_pass(batch: list[np.ndarray]) -> None:
        for masks in engine.segment_batch(batch):
            mask_set_to_msg(masks, _header())

    for size in sizes:
        one_pass(frames[:size])
    times: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            times[size].append(timed(one_pass, frames[:size]))
    single_fps = 1e3 / float(np.median(times[1]))
    for size in sizes:
        per_pass = float(np.median(times[size]))
        fps = size * 1e3 / per_pass
        report.add(label, size, f"{per_pass:.1f}", f"{fps:.1f}", f"{fps / single_fps:.2f}x", len(times[size]))


def _header():
    from std_msgs.msg import Header

    return Header(frame_id="camera")


def bench_tracking_and_obstacles(loaded, report: Report, frames_per_res: int) -> None:
    """Per-frame cost of the robot-side stages on top of segmentation, in one process."""
    from fastsam_ros.core.obstacles import Intrinsics
    from fastsam_ros.core.perception import Perception

    engine = SegmentationEngine(loaded)
    for label, (width, height) in RESOLUTIONS.items():
        frames = camera_frames(width, height, max(frames_per_res, 6))
        depth = np.full((height, width), 3.0, np.float32)
        intrinsics = Intrinsics(width * 0.8, width * 0.8, width / 2, height / 2)
        for tracker in ("bytetrack", "botsort"):
            perception = Perception(tracker)
            tracking, obstacles, cloud, plain, points = [], [], [], [], []
            for index, frame in enumerate(frames * 2):
                masks = engine.segment(frame, index * 33_000_000)
                output = perception.process_masks(masks, frame, depth, intrinsics, want_cloud=True)
                tracking.append(output.tracking_ms)
                obstacles.append(output.obstacles_ms)
                cloud.append(output.cloud_ms)
                points.append(len(output.cloud))
                plain.append(engine.last_times.total_ms)
            report.add(
                label,
                tracker,
                f"{np.median(plain):.1f}",
                f"{np.median(tracking):.2f}",
                f"{np.median(obstacles):.2f}",
                f"{np.median(cloud):.2f}",
                f"{np.median(points):.0f}",
                f"{(np.median(obstacles) + np.median(cloud)) / np.median(plain):.1%}",
            )


def bench_tracking_on_video(report: Report, frames: int) -> None:
    """Track ids of the node (PyTorch, OpenVINO f32 and bf16) against ultralytics' track() (PyTorch,
    and its OpenVINO export) on every real video, same frames and weights."""
    from benchmarks.tracking_comparison import RUNTIMES, VIDEOS, comparison_rows, node_engines, reference_models
    from fastsam_ros.core.backends.model_loading import resolve_weights
    from fastsam_ros.tools.sample_videos import sample_video, video_frames

    engines = node_engines(RUNTIMES)
    references = reference_models(resolve_weights("yolo11n-seg.pt"))
    for name in VIDEOS:
        video = video_frames(sample_video(name), frames)
        for label, metrics in comparison_rows(engines, references, video):
            report.add(f"{name}, {len(video)} frames", label, *metrics.row().split(" / "))


def bench_follow(report: Report) -> list[str]:
    """Following each reference person through the clips: rows, and the notes (runtime, cost)."""
    rows, notes = follow_measure.follow_rows(load_model("yolo11n-seg.pt", "cpu", runtime="auto"))
    for row in rows:
        report.add(*row)
    return notes


def bench_bytes(loaded, report: Report) -> None:
    """Serialized InstanceArray size against one full-resolution mono8 plane per instance."""
    from rclpy.serialization import serialize_message

    engine = SegmentationEngine(loaded)
    cases = [(label, camera_frames(w, h, 2)[0], 0.25) for label, (w, h) in RESOLUTIONS.items()]
    cases.append(("720p crowded", mosaic(4, 3, 1280, 720), PROMPT_CONF))
    for label, frame, conf in cases:
        engine.settings = EngineSettings(conf=conf)
        masks = engine.segment(frame)
        msg = mask_set_to_msg(masks, _header())
        ours = len(serialize_message(msg))
        runs = sum(4 * len(instance.mask_runs) for instance in msg.instances)
        naive = ours - runs + len(masks) * masks.height * masks.width
        report.add(label, len(masks), f"{ours / 1024:.1f}", f"{naive / 1024:.1f}", f"{100 * ours / naive:.1f}%")


def bench_prompts_in_process(loaded, report: Report, calls: int) -> tuple[np.ndarray, object]:
    from fastsam_ros.core.text_prompts import ClassNameBackend

    frame = mosaic(4, 3, 1280, 720)
    masks = SegmentationEngine(loaded, EngineSettings(conf=PROMPT_CONF)).segment(frame)
    rng = np.random.default_rng(0)
    points = [_point_inside(masks, int(rng.integers(len(masks)))) for _ in range(calls)]
    boxes = [masks[int(rng.integers(len(masks)))].box for _ in range(calls)]
    text = ClassNameBackend(loaded.class_names)
    text.rank(masks, frame, ["a person"], 1)
    results = {
        "point": [timed(select_by_points, masks, [p], [1]) for p in points],
        "box": [timed(select_by_box, masks, b) for b in boxes],
        "text (class_names), new text": [
            timed(text.rank, masks, frame, [prompt], 1) for prompt in fresh_texts(calls // 4, "in-process")
        ],
        "text (class_names), repeated text": [
            timed(text.rank, masks, frame, ["a person"], 1) for _ in range(calls // 4)
        ],
    }
    for name, values in results.items():
        report.add(f"{name}, in-process", len(masks), f"{percentile(values, 50):.3f}", f"{percentile(values, 99):.3f}")
    return frame, masks


def fresh_texts(count: int, tag: str) -> list[str]:
    """Texts never sent before in this run, so the text encoder runs for each."""
    names = ["person", "bus", "bicycle", "dog", "traffic light", "chair", "backpack", "car"]
    return [f"a {names[i % len(names)]} seen {tag} {i}" for i in range(count)]


def _point_inside(masks, index: int) -> tuple[float, float]:
    instance = masks[index]
    rows, cols = np.nonzero(instance.mask)
    middle = len(rows) // 2
    return float(cols[middle] + instance.mask_offset[0]), float(rows[middle] + instance.mask_offset[1])


def bench_node(node: NodeProcess, report: Report, reference: Reference, frames_per_res: int) -> float:
    """Frames sent one at a time; the node's own processing time and publish-to-receive time.

    First with only ~/instances subscribed, then with a viewer on ~/label_image and
    ~/debug_image as well, which makes the node render them.
    """
    from fastsam_ros.tools.node_client import NodeClient

    inference = _node_rows(node.client, report, reference, frames_per_res, "")
    viewer = NodeClient(node.camera, name="fastsam_bench_viewer", outputs=("label_image", "debug_image"))
    try:
        viewer.warm_up()
        _node_rows(node.client, report, reference, frames_per_res, ", label+debug subscribed")
    finally:
        viewer.close()
    return inference


def _node_rows(client, report: Report, reference: Reference, frames_per_res: int, suffix: str) -> float:
    """Each frame through the reference path here, then through the node, in turn (the node idles meanwhile),
    with SETTLE_S between them."""
    inference = []
    for label, (width, height) in RESOLUTIONS.items():
        frames = camera_frames(width, height, frames_per_res)
        reference(frames[0])
        client.result_for(client.send(frames[0]))
        reference_ms, processing, end_to_end = [], [], []
        for frame in frames * 2:
            reference_ms.append(timed(reference, frame))
            time.sleep(SETTLE_S)
            sent = time.perf_counter()
            stamp = client.send(frame)
            msg = client.result_for(stamp)
            time.sleep(SETTLE_S)
            processing.append(msg.processing_ms)
            end_to_end.append((client.arrival[stamp] - sent) * 1e3)
        ref_ms, node_ms, e2e_ms = (float(np.median(values)) for values in (reference_ms, processing, end_to_end))
        if label == "720p":
            inference = processing
        report.add(
            label + suffix,
            f"{ref_ms:.1f}",
            f"{node_ms:.1f}",
            f"{e2e_ms:.1f}",
            f"{node_ms / ref_ms:.2f}x",
            f"{e2e_ms / ref_ms:.2f}x",
        )
    return float(np.median(inference))


def bench_prompts_over_ros(node: NodeProcess, report: Report, frame: np.ndarray, masks, calls: int) -> None:
    from geometry_msgs.msg import Point
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from fastsam_msgs.msg import BoundingBox
    from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt

    client = node.client
    conf = Parameter(name="conf", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=PROMPT_CONF))
    client.call(SetParameters, "/fastsam/set_parameters", SetParameters.Request(parameters=[conf]))
    result = client.result_for(client.send(frame))
    rng = np.random.default_rng(1)
    picks = [int(rng.integers(len(masks))) for _ in range(calls + 1)]
    points = [Point(x=x, y=y) for x, y in (_point_inside(masks, i) for i in picks)]
    boxes = [BoundingBox(x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for b in (masks[i].box for i in picks)]
    requests = {
        "point": (PointPrompt, "prompt_point", [PointPrompt.Request(points=[p], labels=[1]) for p in points]),
        "box": (BoxPrompt, "prompt_box", [BoxPrompt.Request(boxes=[b]) for b in boxes]),
        "text (class_names), new text": (
            TextPrompt,
            "prompt_text",
            [TextPrompt.Request(texts=[text]) for text in fresh_texts(calls // 4 + 1, "over ROS")],
        ),
        "text (class_names), repeated text": (
            TextPrompt,
            "prompt_text",
            [TextPrompt.Request(texts=["a person"])] * (calls // 4 + 1),
        ),
    }
    for name, (kind, service, batch) in requests.items():
        ros_client = client.service_client(kind, f"/fastsam/{service}", 30.0)
        latencies = []
        for request in batch:  # the first call warms up and is not counted
            start = time.perf_counter()
            future = ros_client.call_async(request)
            client.wait(future.done, 30.0, service)
            latencies.append((time.perf_counter() - start) * 1e3)
            if not future.result().success:
                raise RuntimeError(f"{service} failed: {future.result().message}")
        latencies = latencies[1:]
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        report.add(f"{name}, over ROS", len(result.instances), f"{p50:.3f}", f"{p99:.3f}")
        client.node.destroy_client(ros_client)
    conf.value.double_value = 0.25
    client.call(SetParameters, "/fastsam/set_parameters", SetParameters.Request(parameters=[conf]))


def bench_overload(node: NodeProcess, report: Report, inference_ms: float, seconds: float) -> None:
    """30 Hz of 720p into a slower model: latest frame wins, so latency must not grow."""
    client = node.client
    frames = camera_frames(1280, 720, 6)
    sent: dict[int, float] = {}
    period = 1 / 30
    start = time.perf_counter()
    next_send = start
    index = 0
    while time.perf_counter() - start < seconds:
        now = time.perf_counter()
        if now >= next_send:
            stamp = client.send(frames[index % len(frames)])
            sent[stamp] = time.perf_counter()
            index += 1
            next_send += period
        client.executor.spin_once(timeout_sec=max(0.0, min(next_send - time.perf_counter(), 0.005)))
    drain_until = time.perf_counter() + 2.0
    while time.perf_counter() < drain_until:
        client.spin()
    latencies = [(client.arrival[s] - t) * 1e3 for s, t in sent.items() if s in client.arrival]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    report.add(
        len(sent),
        len(latencies),
        f"{inference_ms:.1f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{p99 / inference_ms:.2f}x",
    )


def _gpu_configs() -> list[tuple[str, object, str]]:
    """(label, model, cuda_graphs) of the GPU rows: fp32 and fp16, each with graphs on and off."""
    fp32, fp16 = load_model("yolo11n-seg.pt", "cuda:0"), load_model("yolo11n-seg.pt", "cuda:0", half=True)
    return [
        ("cuda:0 graphs", fp32, "on"),
        ("cuda:0 eager", fp32, "off"),
        ("cuda:0 fp16 graphs", fp16, "on"),
        ("cuda:0 fp16 eager", fp16, "off"),
    ]


def machine_lines(device: str) -> list[str]:
    import rclpy
    import ultralytics

    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    cpu = names[0] if names else "unknown CPU"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; GPU: {gpu}; device benchmarked: {device}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, ultralytics {ultralytics.__version__}, "
        f"rclpy from ROS 2 Kilted wheels ({Path(rclpy.__file__).parent.parent.name})",
        "- model: yolo11n-seg.pt (COCO, offline default), imgsz 640, conf 0.25, iou 0.7",
    ]


def table(headers: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run(output: Path, quick: bool) -> int:
    torch.set_num_threads(os.cpu_count() or 1)
    repeats, per_res, calls, overload_s = (1, 2, 40, 3.0) if quick else (2, 6, 400, 20.0)
    device = "cpu"
    loaded = load_model("yolo11n-seg.pt", device)
    sections: list[tuple[str, list[str], Report, str]] = []

    print("[bench] per-frame processing, in-process (ms, median)")
    processing = Report()
    bench_processing(loaded, processing, f"{device} torch", repeats, per_res)
    onnx_loaded = load_model("yolo11n-seg.pt", device, runtime="onnxruntime")
    bench_processing(onnx_loaded, processing, f"{device} onnxruntime", repeats, per_res)
    if torch.cuda.is_available():
        print("[bench] per-frame processing on cuda:0, fp32 and fp16, CUDA graphs on and off")
        for label, loaded_gpu, graphs in _gpu_configs():
            bench_processing(loaded_gpu, processing, label, repeats, per_res, EngineSettings(cuda_graphs=graphs))
    sections.append(
        (
            "Per-frame processing in one process (median ms)",
            ["frames", "raw predict", "raw, retina_masks", "node work", "node / raw", "node / raw retina", "n"],
            processing,
            "raw predict: `FastSAM(weights).predict(frame)` in everything mode, masks at network resolution. "
            "raw retina: the same with `retina_masks=True`, masks at source resolution as the node publishes them. "
            "node work: what the node does per frame (segment and build the InstanceArray), without DDS, "
            "on the runtime the row names; raw predict is ultralytics on PyTorch in every row, re-measured "
            "interleaved with each row.",
        )
    )
    bench_cpu_runtime_sections(sections, quick)
    print("[bench] several cameras per forward pass (720p)")
    cameras = Report()
    bench_cameras(loaded, cameras, f"{device} torch", 3 if quick else 10)
    bench_cameras(onnx_loaded, cameras, f"{device} onnxruntime", 3 if quick else 10)
    default = load_model("yolo11n-seg.pt", device, runtime="auto")
    bench_cameras(default, cameras, f"{device} auto ({default.runtime} {default.precision})", 3 if quick else 10)
    if torch.cuda.is_available():
        for label, loaded_gpu, graphs in _gpu_configs():
            bench_cameras(loaded_gpu, cameras, label, 3 if quick else 50, EngineSettings(cuda_graphs=graphs))
    sections.append(
        (
            "Several cameras, one forward pass (720p)",
            ["device", "cameras", "ms per pass", "frames/s", "throughput / one camera", "n"],
            cameras,
            "Each pass segments one 720p frame per camera in one batch and builds each camera's InstanceArray, "
            "as the node does when frames of several cameras are waiting. Interleaved by round in one process.",
        )
    )
    print("[bench] tracking and obstacles per frame (ms, median)")
    robot = Report()
    bench_tracking_and_obstacles(loaded, robot, per_res)
    sections.append(
        (
            "Tracking and obstacles per frame (median ms)",
            [
                "frames",
                "tracker",
                "segmentation",
                "tracking",
                "obstacles: depth, 3D centroids and boxes, motion",
                "obstacle cloud",
                "cloud points",
                "obstacles and cloud / segmentation",
            ],
            robot,
            "Measured in one process on the same panned frames; obstacles use a flat depth image at 3 m, the "
            "default corridor region of interest and the default cloud settings (every 2nd row and column).",
        )
    )
    print("[bench] tracking on real video against ultralytics track()")
    video = Report()
    bench_tracking_on_video(video, 60 if quick else ALL_FRAMES)
    sections.append(
        (
            "Tracking on real video against ultralytics track()",
            ["video", "tracks from", "ids", "id switches", "matched pairs", "tracked detections"],
            video,
            "ByteTrack, conf 0.25, every frame of each of OpenCV's sample videos, in order. A switch: a "
            "detection matching one of the previous frame's (same class, box IoU > 0.5) under another id; every "
            "detection with an id counts, on both sides, on the detections' own boxes (track() returns "
            "Kalman-filtered boxes; its ids are put on the boxes of the detections they matched). 'before': the "
            "same run without the low-score detections a track matched, which the node did not publish before. "
            "track() runs on PyTorch and on ultralytics' OpenVINO export, at OpenVINO's default precision for this "
            "CPU and on its fixed 640x640 input, which alone changes some detections.",
        )
    )
    print("[bench] following a person through real video")
    follow = Report()
    follow_notes = bench_follow(follow)
    sections.append(
        (
            "Following a person through real video",
            follow_measure.HEADERS,
            follow,
            "Each person of fastsam_ros/benchmarks/data/follow_reference.json (boxes checked by hand) selected by "
            "a point on "
            "the first frame the reference has them, then followed by the node's Follower to the end of the clip "
            "(every frame, ByteTrack, the default runtime). followed right: box IoU >= 0.5 with the reference, "
            "of the frames the person is visible. 'track id only' is a selection kept by its track id alone; "
            "'motion only' re-acquires without the colour histogram. " + "; ".join(follow_notes) + ".",
        )
    )
    print("[bench] InstanceArray size")
    sizes = Report()
    bench_bytes(loaded, sizes)
    sections.append(
        (
            "Bytes per frame",
            ["frame", "instances", "InstanceArray KiB", "naive KiB", "ratio"],
            sizes,
            "naive: the same message with one full-resolution mono8 mask per instance.",
        )
    )
    print("[bench] prompts in-process (ms)")
    prompts = Report()
    frame, masks = bench_prompts_in_process(loaded, prompts, calls)

    print("[bench] the node over DDS")
    workdir = Path(tempfile.mkdtemp(prefix="fastsam_bench_"))
    print(f"[bench] the node's log: {workdir / 'node.log'}")
    export = openvino_export(loaded.source)

    def reference(frame: np.ndarray) -> object:
        return export.predict(frame, device="cpu", verbose=False)

    node = NodeProcess(workdir, ["-p", f"device:={device}"])
    try:
        through_node = Report()
        inference = bench_node(node, through_node, reference, per_res)
        sections.append(
            (
                "Through the node (median ms)",
                [
                    "frames",
                    "ultralytics OpenVINO export",
                    "node processing",
                    "end-to-end over DDS",
                    "node / export",
                    "end-to-end / export",
                ],
                through_node,
                "ultralytics OpenVINO export: its `predict` (masks at network resolution) on the frame in this "
                "process, just before the same frame goes to the node (interleaved, the node idle meanwhile, "
                f"{SETTLE_S * 1e3:.0f} ms of idle between the two). node processing: frame received to ~/instances "
                "published, measured by the node (InstanceArray.processing_ms), with the default runtime (auto; the "
                "node's log says what it chose) unless the row says otherwise. end-to-end: publish in this process "
                "to receive here, through fastsam_node in its own process.",
            )
        )
        print("[bench] prompts over ROS (ms)")
        bench_prompts_over_ros(node, prompts, frame, masks, calls)
        sections.append(
            (
                "Prompt latency (ms)",
                ["prompt", "instances", "p50", "p99"],
                prompts,
                "A 1280x720 mosaic of the two photos at conf 0.1. Over ROS: a service call from this process "
                "to the node's process and back. new text: a text not sent before, so the text encoder runs; "
                "repeated text: the same text every call, its vector cached.",
            )
        )
        print("[bench] overload: 30 Hz of 720p frames")
        overload = Report()
        bench_overload(node, overload, inference, overload_s)
        sections.append(
            (
                "Overload: 30 Hz input, latest frame wins",
                ["frames sent", "answered", "one inference (median)", "latency p50", "latency p99", "p99 / inference"],
                overload,
                "Latency: publish of a frame to the arrival of its InstanceArray, for the frames the node processed.",
            )
        )
    finally:
        node.close()
    print("[bench] the node on the torch runtime, for comparison")
    torch_node = NodeProcess(workdir, ["-p", f"device:={device}", "-p", "runtime:=torch"])
    try:
        _node_rows(torch_node.client, through_node, reference, per_res, ", runtime torch")
    finally:
        torch_node.close()
    memory = Report()
    memory.add("fastsam_node, default runtime (peak RSS)", f"{node.peak_rss / 2**20:.0f}")
    memory.add("fastsam_node, runtime torch (peak RSS)", f"{torch_node.peak_rss / 2**20:.0f}")
    memory.add("benchmark process (peak RSS)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    sections.append(("Memory (MiB)", ["process", "MiB"], memory, ""))
    gpu_note = (
        "Not measured in this run: no CUDA device. With one, `make bench` adds cuda:0 rows in fp32 and fp16, "
        "each with CUDA graphs on and off, to the per-frame and several-camera tables; "
        "`python -m benchmarks.core_benchmark` measures the same without ROS (README). No GPU was available "
        "to us, so those rows have never been "
        "filled in; TensorRT and torch.compile are not implemented."
        if not torch.cuda.is_available()
        else ""
    )
    write_report(output, device, sections, gpu_note)
    print(f"[bench] written {output}")
    return 0


def bench_cpu_runtime_sections(sections: list, quick: bool) -> None:
    """The CPU runtimes and precisions against ultralytics' own exports, their quality, threads, a warm start."""
    from benchmarks import cpu_runtime_bench as cpu

    weights = load_model("yolo11n-seg.pt", "cpu").source
    print("[bench] CPU runtimes against ultralytics' exports (ms, median)")
    runtimes, stages = cpu.bench_cpu_runtimes(weights, 1 if quick else 4, 2 if quick else 4, (0, 1))
    print("[bench] quality of the reduced precisions against OpenVINO f32")
    quality = cpu.bench_quality(weights)
    print("[bench] point prompts while frames stream, by OpenVINO thread count")
    streaming = cpu.bench_prompts_while_streaming(weights, (0, 1), 3.0 if quick else 10.0)
    print("[bench] several cameras on OpenVINO: one batch against a request per camera")
    camera_streams = cpu.bench_camera_streams(weights, 4 if quick else 20)
    print("[bench] warm start of a fresh process")
    start = [cpu.bench_warm_start(weights)]
    for title, headers, rows, note in (
        (
            "CPU runtimes against ultralytics' exports (median ms per frame)",
            cpu.TABLE_HEADERS,
            runtimes,
            cpu.TABLE_NOTE,
        ),
        ("Stages of the shipped default (median ms)", cpu.STAGE_HEADERS, stages, cpu.STAGE_NOTE),
        ("Quality of reduced precisions (against OpenVINO f32)", cpu.QUALITY_HEADERS, quality, cpu.QUALITY_NOTE),
        ("INT8: what loses instances", cpu.INT8_HEADERS, cpu.INT8_FINDINGS, cpu.INT8_NOTE),
        ("Prompts while frames stream, by inference threads (ms)", cpu.STREAM_HEADERS, streaming, cpu.STREAM_NOTE),
        (
            "Several cameras on OpenVINO: one batch or a request per camera (720p)",
            cpu.CAMERA_STREAM_HEADERS,
            camera_streams,
            cpu.CAMERA_STREAM_NOTE,
        ),
        ("Warm start (s)", ["runtime", "imports", "load and first 720p frame"], start, cpu.WARM_START_NOTE),
    ):
        sections.append((title, headers, Report(rows=[tuple(str(cell) for cell in row) for row in rows]), note))


def write_report(output: Path, device: str, sections, gpu_note: str) -> None:
    parts = [
        "# Performance",
        "",
        "Written by `make bench` (fastsam_ros/benchmarks/benchmark.py); every ratio compares figures taken in the "
        "same run.",
        "",
        *machine_lines(device),
        "",
    ]
    for title, headers, report, note in sections:
        parts += [f"## {title}", "", table(headers, report.rows), ""]
        if note:
            parts += [note, ""]
    if gpu_note:
        parts += ["## GPU", "", gpu_note, ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/PERFORMANCE.md"))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    args = parser.parse_args(argv)
    return run(args.output, args.quick)


if __name__ == "__main__":
    sys.exit(main())
