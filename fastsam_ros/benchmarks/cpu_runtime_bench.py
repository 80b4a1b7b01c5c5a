"""CPU runtimes against what an ultralytics user would run on the same CPU, interleaved.

Rows: ultralytics' `YOLO.predict` on PyTorch, on its own ONNX export and on its own
OpenVINO export (with and without retina masks), against the node's per-frame work
(engine.segment and the InstanceArray) on each CPU runtime and OpenVINO precision. Every
path runs once per frame in turn, so machine load hits all of them alike. The node's rows
also split the frame into the network's forward pass and everything else.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fastsam_ros.core.backends.model_loading import LoadedModel, load_model
from fastsam_ros.core.backends.precision import cpu_capabilities
from fastsam_ros.core.engine import SegmentationEngine, StageTimes
from fastsam_ros.core.int8_calibration import calibrate_int8, precision_quality
from fastsam_ros.core.parameters import inference_thread_counts
from fastsam_ros.ros.convert import mask_set_to_msg
from fastsam_ros.tools.int8_frames import calibration_frames, guard_frames, guard_sources
from fastsam_ros.tools.sample_frames import camera_frames

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}
REFERENCE = "ultralytics OpenVINO export"
STAGE_HEADERS = [
    "frames",
    "preprocess",
    "forward",
    "NMS",
    "mask decode",
    "encode and message",
    "frame",
    "outside share",
    "n",
]
STAGE_NOTE = (
    "The shipped default's frames of the table above, stage by stage (medians of each column, so they need not add "
    "up): preprocess is the letterbox; encode and message: run-length encoding the masks and building the "
    "InstanceArray; outside share: the frame's time outside the forward pass."
)
TABLE_HEADERS = [
    "frames",
    "path",
    "ms",
    "forward",
    "outside the network",
    "outside share",
    "/ ultralytics OpenVINO",
    "n",
]
QUALITY_HEADERS = [
    "precision",
    "source",
    "frames",
    "f32 instances",
    "instances",
    "kept",
    "median mask IoU",
    "min mask IoU",
    "guard",
]
STREAM_HEADERS = ["runtime", "frame median", "point prompt p50", "point prompt p99", "prompts"]
STREAM_NOTE = (
    "One thread segments 720p frames nonstop on OpenVINO (precision auto) while this one answers a point prompt "
    "every 2 ms, in one process; threads auto: OpenVINO's own choice (every core)."
)
INT8_HEADERS = ["int8 variant", "kept in float", "photos", "vtest.avi", "Megamind.avi", "vs f32"]
INT8_FINDINGS = [
    ("CNN scheme, 21 photo frames (before)", "box decoding", "78.8% 0.975", "79.1% 0.978", "48.8% 0.969", ""),
    ("CNN scheme, 110 photo and video frames", "box decoding", "76.9% 0.978", "89.5% 0.981", "53.7% 0.967", "1.27x"),
    ("same, fast_bias_correction off", "box decoding", "76.9% 0.978", "89.5% 0.981", "53.7% 0.967", ""),
    ("same", "+ class branch (cv3)", "76.9% 0.978", "91.8% 0.979", "58.5% 0.969", ""),
    ("same", "+ box branch (cv2)", "76.9% 0.978", "91.8% 0.980", "58.5% 0.969", ""),
    ("same", "+ mask coefficients (cv4)", "80.8% 0.978", "91.8% 0.981", "56.1% 0.970", ""),
    ("same", "+ prototypes (proto)", "78.8% 0.978", "93.0% 0.981", "53.7% 0.968", ""),
    ("same", "whole head (model.23)", "76.9% 0.980", "95.3% 0.979", "61.0% 0.970", "1.09x"),
    ("same", "head + attention (model.10)", "78.8% 0.983", "90.8% 0.980", "61.0% 0.971", ""),
    ("same", "head + stem (model.0-1)", "76.9% 0.981", "97.6% 0.984", "70.7% 0.972", "1.09x"),
    ("same", "head + neck (only the backbone int8)", "76.9% 0.982", "93.1% 0.983", "56.1% 0.975", ""),
    ("same", "head + backbone (only the neck int8)", "82.7% 0.990", "94.1% 0.992", "95.1% 0.990", "1.04x"),
    ("transformer scheme, same 110 frames", "box decoding", "80.8% 0.979", "96.4% 0.984", "65.9% 0.975", "1.53x"),
    ("shipped, 118 frames, new guard", "box decoding", "71.4% 0.974", "95.3% 0.984", "85.0% 0.980", "1.41x"),
    ("same, SmoothQuant on convolutions (alpha 0.15)", "box decoding", "69.6% 0.974", "86.2% 0.982", "71.1% 0.981", ""),
    ("same, weights retrained 4 epochs (QAT)", "box decoding", "80.7% 0.981", "89.4% 0.989", "80.0% 0.983", ""),
]
INT8_NOTE = (
    "Measured by hand on this CPU (Xeon with AMX, 2 cores), not by `make bench`: each variant quantised with NNCF "
    "(preset mixed) and checked by the quality guard against OpenVINO f32 on the previous guard's 12 photo frames "
    "(10 of them also calibration windows, an overlap the guard no longer has) and on 10 frames each of vtest.avi "
    "and Megamind.avi that the calibration did not see; the last row on the guard's present frames "
    "(fastsam_ros/fastsam_ros/tools/int8_frames.py). Cells: instances kept, median mask IoU. vs f32: ms per 720p "
    "frame of f32 "
    "over int8's, both in one process, frames interleaved (in the same runs bf16 was 1.42x, 1.71x and 1.68x; the "
    "CNN scheme 1.27x and 1.31x). No group of layers loses the instances on its own: "
    "keeping the whole head in float (class, box, mask-coefficient branches and prototypes) leaves the photos at "
    "77%, and only keeping all but the neck in float brings the video near the guard, at f32's speed. The "
    "instances lost are mostly the weak ones: of 93 f32 instances on the photos and Megamind.avi with the head in "
    "float, 11 (scores 0.26-0.40) had no same-class box in int8, 12 (scores 0.34-0.87) had their mask moved below "
    "IoU 0.95 and 5 their box below IoU 0.9; bf16 loses 4, all scored 0.26-0.31. NNCF's CNN scheme also "
    "quantises both inputs of every SiLU's multiply (289 quantisers against 115); the transformer scheme "
    "quantises only the inputs of convolutions and matrix products, keeps more instances and runs faster, so it "
    "is the one shipped, calibrated on 118 photo and video frames. NNCF's accuracy-controlled quantisation with "
    "the guard's kept share as its metric (on 54 calibration frames, allowed drop 0.03) started at a drop of 0.17 "
    "and, after putting 13 convolutions back in float one at a time (spread over backbone, attention, neck and "
    "head) in 25 minutes, was still at 0.10, so it was stopped. "
    "How activation ranges are estimated is no lever either: on the shipped scheme and frames, NNCF's MINMAX, "
    "HISTOGRAM and MEAN_QUANTILE range estimators kept 85.2%, 85.2% and 71.7% of the guard's instances against the "
    "default's 86.1% (photos 80.7, 80.4 and 57.1% against 71.4%; vtest.avi 94.2, 92.0 and 79.8% against 95.3%; "
    "Megamind.avi 72.5, 75.6 and 75.0% against 85.0%), a few instances either way. "
    "Quantisation-aware training does not get past it either (NNCF's PyTorch fake quantisation in the shipped "
    "scheme, trained on the 118 calibration frames to reproduce the f32 network's outputs: class scores, boxes "
    "and mask coefficients weighted by score, and prototypes; Adam at a learning rate of 2e-6, 4 epochs, about "
    "half an hour on the 2 cores): the fake-quantised network kept 82.5% of the guard's instances before training"
    " and 81.3, 83.7, 84.9 and 86.1% after each epoch; its retrained weights, exported and quantised as shipped "
    "(last row), kept 85.6%, while the same retrained weights in f32 kept only 85.6% of the original network's "
    "instances: retraining moves the weak instances as much as quantisation does (at a learning rate of 1e-5 one "
    "epoch left 76.4%). "
    "It still fails the guard on the photos "
    "and Megamind.avi, so precision auto keeps to f32 or bf16, and on this CPU bf16 is faster than int8 anyway "
    "(table above)."
)
WARM_START_NOTE = (
    "A new Python process with the compiled models already cached: load_model(runtime auto) and the first frame, "
    "after importing the modules."
)
TABLE_NOTE = (
    "Real photos panned at 720p and 1080p; every path runs once per frame in turn, in one process. ultralytics "
    "rows: `YOLO(...).predict` on the .pt weights and on ultralytics' own ONNX and OpenVINO exports (imgsz 640, "
    "static 640x640 input for its OpenVINO export); retina masks: `retina_masks=True`, full-resolution masks as "
    "the node publishes them. node rows: engine.segment and the InstanceArray, on the runtime and precision named "
    "(threads: OpenVINO's own choice unless named). forward: the network alone; outside the network: letterbox, "
    "NMS, mask decode and the message. The row a CPU user should pick is the default (runtime auto)."
)
QUALITY_NOTE = (
    "Each precision against OpenVINO f32 on the quality guard's frames "
    "(fastsam_ros/fastsam_ros/tools/int8_frames.py): the "
    "photos and camera windows of them mirrored, every 20th of the first 200 frames of OpenCV's vtest.avi "
    "(pedestrians, 768x576) and every 27th of Megamind.avi (an interview, 720x528). An instance is kept when the "
    "other side has one of the same class with box IoU >= 0.9 and mask IoU >= 0.95; the guard passes at >= 95% "
    "kept. int8 is calibrated once (fastsam_export --precision int8) on other frames: the photos unmirrored, "
    "vtest.avi from frame 300, other frames of Megamind.avi and tree.avi; none of them is a guard frame."
)


@functools.cache
def ultralytics_exports(weights: str) -> dict[str, str]:
    """ultralytics' own ONNX and OpenVINO exports of the weights, as a user would make them (once a run)."""
    from ultralytics import YOLO

    copy = Path(tempfile.mkdtemp(prefix="fastsam_ultralytics_exports_")) / Path(weights).name
    copy.write_bytes(Path(weights).read_bytes())
    return {
        "onnx": str(YOLO(str(copy)).export(format="onnx", imgsz=640, verbose=False)),
        "openvino": str(YOLO(str(copy)).export(format="openvino", imgsz=640, verbose=False)),
    }


def openvino_export(weights: str):
    """ultralytics' OpenVINO export loaded as its user would: the fastest CPU path outside the node."""
    from ultralytics import YOLO

    return YOLO(ultralytics_exports(weights)["openvino"], task="segment")


def node_runtimes(weights: str, threads: tuple[int, ...]) -> tuple[dict[str, LoadedModel], str]:
    """The node's CPU runtimes and precisions that work here, by label, and the shipped default's label."""
    runtimes = {"node, onnxruntime f32": load_model(weights, "cpu", runtime="onnxruntime")}
    precisions = ["f32", *(["bf16"] if "BF16" in cpu_capabilities() else []), "int8"]
    for precision in precisions:
        for count in threads:
            suffix = f", {count} threads" if count else ""
            runtimes[f"node, openvino {precision}{suffix}"] = load_model(
                weights, "cpu", runtime="openvino", precision=precision, threads=(count,)
            )
    # The node's own thread counts: this bench sends one frame at a time, so they never queue.
    default = load_model(weights, "cpu", runtime="auto", threads=inference_thread_counts(0))
    default_label = f"node, default (auto: {default.runtime} {default.precision}, lone frames)"
    runtimes[default_label] = default
    return runtimes, default_label


def bench_cpu_runtimes(
    weights: str, rounds: int, frames_per_res: int, threads: tuple[int, ...]
) -> tuple[list[tuple], list[tuple]]:
    """Median ms per frame of every path, interleaved; the rows of that table and of the default's stages."""
    from std_msgs.msg import Header
    from ultralytics import YOLO

    header = Header(frame_id="camera")
    report = calibrate_int8(weights, calibration_frames(), guard_frames(), log=lambda line: print(f"[bench] {line}"))
    print(f"[bench] int8 quality guard: {report.summary()}")
    exports = ultralytics_exports(weights)
    users = {
        "ultralytics PyTorch": YOLO(weights),
        "ultralytics ONNX export": YOLO(exports["onnx"], task="segment"),
        REFERENCE: openvino_export(weights),
    }
    loaded_runtimes, default = node_runtimes(weights, threads)
    node = {label: SegmentationEngine(loaded) for label, loaded in loaded_runtimes.items()}
    rows, breakdown = [], []
    for res_label, (width, height) in RESOLUTIONS.items():
        frames = camera_frames(width, height, frames_per_res)
        paths: dict[str, Callable[[np.ndarray], object]] = {}
        for label, model in users.items():
            paths[label] = lambda f, m=model: m.predict(f, device="cpu", verbose=False)
            paths[f"{label}, retina masks"] = lambda f, m=model: m.predict(
                f, device="cpu", retina_masks=True, verbose=False
            )
        for label, engine in node.items():
            paths[label] = lambda f, e=engine: mask_set_to_msg(e.segment(f), header)
        for path in paths.values():
            path(frames[0])
        times = {label: [] for label in paths}
        stages: dict[str, list[StageTimes]] = {label: [] for label in node}
        for _ in range(rounds):
            for frame in frames:
                for label, path in paths.items():
                    start = time.perf_counter()
                    path(frame)
                    times[label].append((time.perf_counter() - start) * 1e3)
                    if label in node:
                        stages[label].append(node[label].last_times)
        reference = float(np.median(times[REFERENCE]))
        for label, values in times.items():
            median = float(np.median(values))
            if label in stages:
                network = float(np.median([stage.forward_ms for stage in stages[label]]))
                split = (f"{network:.1f}", f"{median - network:.1f}", f"{100 * (median - network) / median:.0f}%")
            else:
                split = ("", "", "")
            rows.append((res_label, label, f"{median:.1f}", *split, f"{median / reference:.2f}x", len(values)))
            print("  " + " | ".join(str(cell) for cell in rows[-1]), flush=True)
        breakdown.append(stage_row(res_label, list(zip(stages[default], times[default], strict=True))))
    return rows, breakdown


def stage_row(res_label: str, stages: list[tuple[StageTimes, float]]) -> tuple:
    """Median ms of each stage of a frame; encode and message: the rest of the frame's time."""
    columns = [
        [times.preprocess_ms for times, _ in stages],
        [times.forward_ms for times, _ in stages],
        [times.nms_ms for times, _ in stages],
        [times.mask_decode_ms for times, _ in stages],
        [total - times.total_ms for times, total in stages],
        [total for _, total in stages],
        [100 * (total - times.forward_ms) / total for times, total in stages],
    ]
    medians = [float(np.median(column)) for column in columns]
    return (res_label, *(f"{value:.1f}" for value in medians[:-1]), f"{medians[-1]:.0f}%", len(stages))


def bench_quality(weights: str) -> list[tuple]:
    """The quality guard of each reduced precision against OpenVINO f32, per set of real frames."""
    rows = []
    precisions = [*(["bf16"] if "BF16" in cpu_capabilities() else []), "int8"]
    for precision, (source, frames) in itertools.product(precisions, guard_sources().items()):
        report = precision_quality(weights, precision, frames)
        ious = np.array(report.mask_ious) if report.mask_ious else np.array([np.nan])
        rows.append(
            (
                precision,
                source,
                len(frames),
                report.reference_instances,
                report.candidate_instances,
                f"{100 * report.kept_share:.1f}%",
                f"{np.median(ious):.3f}",
                f"{np.min(ious):.3f}",
                "pass" if report.passed else "FAIL",
            )
        )
        print("  " + " | ".join(str(cell) for cell in rows[-1]), flush=True)
    return rows


WARM_START = """
import sys, time
started = time.perf_counter()
from fastsam_ros.core.parameters import inference_thread_counts
from fastsam_ros.core.engine import SegmentationEngine
from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.tools.sample_frames import camera_frames
imported = time.perf_counter()
loaded = load_model(sys.argv[1], "cpu", runtime="auto", threads=inference_thread_counts(0))
engine = SegmentationEngine(loaded)
engine.segment(camera_frames(1280, 720, 1)[0])
done = time.perf_counter()
print(f"{imported - started:.2f} {done - imported:.2f} {loaded.runtime} {loaded.precision}")
"""


def bench_warm_start(weights: str) -> tuple[str, ...]:
    """A fresh process after the benchmark cached the compiled models: imports, then load and first 720p frame."""
    output = subprocess.run(
        [sys.executable, "-c", WARM_START, weights], capture_output=True, text=True, check=True
    ).stdout.split()
    row = (f"{output[2]} {output[3]}", f"{float(output[0]):.2f}", f"{float(output[1]):.2f}")
    print("  " + " | ".join(row), flush=True)
    return row


def bench_prompts_while_streaming(weights: str, threads: tuple[int, ...], seconds: float) -> list[tuple[str, ...]]:
    """Point prompts answered in this process while another thread segments 720p frames nonstop.

    Tells whether OpenVINO's inference threads leave the CPU to the node's other callbacks.
    """
    import threading

    from fastsam_ros.core.prompts import select_by_points

    frames = camera_frames(1280, 720, 4)
    rows = []
    for count in threads:
        engine = SegmentationEngine(load_model(weights, "cpu", runtime="openvino", threads=(count,)))
        masks = engine.segment(frames[0])
        instance = masks[0]
        point = (
            instance.mask_offset[0] + instance.mask.shape[1] // 2,
            instance.mask_offset[1] + instance.mask.shape[0] // 2,
        )
        stop = threading.Event()
        frame_ms: list[float] = []

        def stream(engine=engine, stop=stop, frame_ms=frame_ms) -> None:
            index = 0
            while not stop.is_set():
                start = time.perf_counter()
                engine.segment(frames[index % len(frames)])
                frame_ms.append((time.perf_counter() - start) * 1e3)
                index += 1

        worker = threading.Thread(target=stream)
        worker.start()
        latencies = []
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            start = time.perf_counter()
            select_by_points(masks, [point], [1])
            latencies.append((time.perf_counter() - start) * 1e3)
            time.sleep(0.002)
        stop.set()
        worker.join()
        rows.append(
            (
                f"openvino {engine.loaded.precision}, threads {count or 'auto'}",
                f"{np.median(frame_ms):.1f}",
                f"{np.percentile(latencies, 50):.3f}",
                f"{np.percentile(latencies, 99):.3f}",
                str(len(latencies)),
            )
        )
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


CAMERA_STREAM_HEADERS = ["precision", "cameras", "how", "ms per pass", "p99 ms", "throughput / one camera", "n"]
CAMERA_STREAM_NOTE = (
    "The network alone (the node's OpenVINO model at the 384x640 input of a letterboxed 720p frame, outputs read "
    "back), every core. one batch: the frames of all cameras in one request on a latency-compiled model, as the "
    "node runs them. a request per camera: OpenVINO's throughput mode, one stream per core, each camera's frame "
    "its own request, all in flight together. throughput / one camera: frames per second over those of one frame "
    "on the latency-compiled model. Interleaved by round in one process; p99 over the rounds."
)


def bench_camera_streams(weights: str, rounds: int) -> list[tuple[str, ...]]:
    """Several cameras' frames as one batch against OpenVINO's throughput mode (a request per frame)."""
    import openvino as ov

    from fastsam_ros.core.backends.onnx_runtime import exported_onnx

    cores = len(os.sched_getaffinity(0))
    core = ov.Core()
    source = core.read_model(str(exported_onnx(weights)))
    frame = np.random.default_rng(0).random((1, 3, 384, 640), dtype=np.float32)

    def compiled(precision: str, batch: int, streams: int):
        model = source.clone()
        model.reshape({model.inputs[0].get_any_name(): [batch, 3, 384, 640]})
        hint = "THROUGHPUT" if streams > 1 else "LATENCY"
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint, "NUM_STREAMS": streams}
        return core.compile_model(model, "CPU", config)

    def one_batch(model, cameras: int) -> Callable[[], None]:
        frames = np.repeat(frame, cameras, axis=0)
        return lambda: model(frames)

    def request_per_camera(model, cameras: int) -> Callable[[], None]:
        requests = [model.create_infer_request() for _ in range(cameras)]

        def run() -> None:
            for request in requests:
                request.start_async({0: frame})
            for request in requests:
                request.wait()
            for port in range(len(model.outputs)):
                np.concatenate([request.get_output_tensor(port).data for request in requests])

        return run

    passes: dict[tuple[str, int, str], Callable[[], None]] = {}
    for precision in ["f32", *(["bf16"] if "BF16" in cpu_capabilities() else [])]:
        passes[(precision, 1, "one frame")] = one_batch(compiled(precision, 1, 1), 1)
        for cameras in (2, 4):
            passes[(precision, cameras, "one batch")] = one_batch(compiled(precision, cameras, 1), cameras)
            passes[(precision, cameras, "a request per camera")] = request_per_camera(
                compiled(precision, 1, min(cameras, cores)), cameras
            )
    times: dict[tuple[str, int, str], list[float]] = {key: [] for key in passes}
    for run in passes.values():
        run()
    for _ in range(rounds):
        for key, run in passes.items():
            start = time.perf_counter()
            run()
            times[key].append((time.perf_counter() - start) * 1e3)
    rows = []
    for (precision, cameras, how), measured in times.items():
        per_pass = float(np.median(measured))
        one = float(np.median(times[(precision, 1, "one frame")]))
        rows.append(
            (
                precision,
                str(cameras),
                how,
                f"{per_pass:.1f}",
                f"{np.percentile(measured, 99):.1f}",
                f"{cameras * one / per_pass:.2f}x",
                str(len(measured)),
            )
        )
    return rows
