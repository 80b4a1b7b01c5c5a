"""The node's track ids against ultralytics' own ``track()`` on the same real video frames.

Both sides see every frame, in order, with the same weights. The metric needs no ground
truth: a detection that matches one of the previous frame's (same class, box IoU > 0.5)
is a matched pair, and a switch when the two carry different track ids. Every detection
with a track id counts, on both sides: ``track()`` returns the low-score detections its
tracks matched, and so does the node (marked ``tracked_low_score``).

Both sides are counted on the detections' own boxes (those the masks belong to, which the
node publishes): ``track()`` returns its tracks' Kalman-filtered boxes instead, smoother
from frame to frame, which alone changes what the metric pairs. Fed the same detections,
the node's tracker state equals ``track()``'s, so any difference left is the detections'.
``track()`` also runs on ultralytics' own OpenVINO export, as its users would run it on a
CPU: at OpenVINO's default precision for the CPU (bf16 where the CPU has it) and on a fixed
640x640 input (PyTorch and the node letterbox to the frame's own aspect), so its detections
differ from both; it shows how much precision and input shape alone move the figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fastsam_ros.core.engine import SegmentationEngine

MATCH_IOU = 0.5
VIDEOS = ("vtest.avi", "Megamind.avi", "Megamind_bugy.avi", "tree.avi")
"""OpenCV's sample videos (Debian's opencv-doc): pedestrians, two animated clips, a tree in the wind."""
ALL_FRAMES = 1_000_000
"""More frames than any of the videos has."""
RUNTIMES = ("torch", "openvino f32", "openvino bf16")
"""The node's runtimes compared: PyTorch, and OpenVINO at each precision the CPU default may take."""


@dataclass(frozen=True)
class TrackedBox:
    box: tuple[float, float, float, float]
    score: float
    class_id: int
    track_id: int
    tracked_low_score: bool = False


@dataclass(frozen=True)
class TrackingMetrics:
    ids: int
    """Distinct track ids seen."""
    switches: int
    matched_pairs: int
    tracked: int
    """Detections that carry a track id."""

    def row(self) -> str:
        return f"{self.ids} / {self.switches} / {self.matched_pairs} / {self.tracked}"


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def tracking_metrics(frames: Iterable[list[TrackedBox]], min_score: float = 0.0) -> TrackingMetrics:
    """Ids, switches, matched pairs and tracked detections over a sequence of frames.

    Consecutive frames are matched one to one, greedily by IoU, within a class.
    """
    ids: set[int] = set()
    switches = pairs = tracked = 0
    previous: list[TrackedBox] = []
    for frame in frames:
        current = [d for d in frame if d.track_id >= 0 and d.score >= min_score]
        tracked += len(current)
        ids.update(d.track_id for d in current)
        if previous and current:
            iou = box_iou(np.array([d.box for d in current]), np.array([d.box for d in previous]))
            same_class = np.array([[c.class_id == p.class_id for p in previous] for c in current])
            iou[~same_class] = 0.0
            while True:
                i, j = np.unravel_index(np.argmax(iou), iou.shape)
                if iou[i, j] <= MATCH_IOU:
                    break
                pairs += 1
                switches += current[i].track_id != previous[j].track_id
                iou[i, :], iou[:, j] = 0.0, 0.0
        previous = current
    return TrackingMetrics(len(ids), switches, pairs, tracked)


def node_tracks(
    engine: SegmentationEngine, frames: list[np.ndarray], tracker: str = "bytetrack"
) -> list[list[TrackedBox]]:
    """What the node publishes per frame: its Perception pipeline, in process."""
    from fastsam_ros.core.perception import Perception

    perception = Perception(tracker)
    out = []
    for frame in frames:
        masks = perception.process_masks(engine.segment(frame), frame, want_obstacles=False).masks
        out.append([TrackedBox(i.box, i.score, i.class_id, i.track_id, i.tracked_low_score) for i in masks.instances])
    return out


def ultralytics_tracks(model_path: str, frames: list[np.ndarray], tracker: str = "bytetrack") -> list[list[TrackedBox]]:
    """``YOLO(model_path).track(frame, persist=True)`` frame by frame, with its default settings
    (``model_path``: weights, or an export ultralytics made of them).

    Each id ``track()`` returned is put on the box of the detection its track matched: a
    callback that runs before the tracker's keeps the frame's detections, and every
    confirmed track names its detection's index (the same rows ``track()`` returns).
    """
    from ultralytics import YOLO

    model = YOLO(model_path, task="segment")
    detected: list[np.ndarray] = []
    model.add_callback(
        "on_predict_postprocess_end", lambda predictor: detected.append(predictor.results[0].boxes.data.cpu().numpy())
    )
    out = []
    for frame in frames:
        returned = model.track(frame, persist=True, tracker=f"{tracker}.yaml", verbose=False)[0].boxes
        detections = detected.pop()
        confirmed = [track for track in model.predictor.trackers[0].tracked_stracks if track.is_activated]
        ids = [] if returned.id is None else returned.id.int().tolist()
        if sorted(track.track_id for track in confirmed) != sorted(ids):
            raise RuntimeError("the tracker's confirmed tracks are not those track() returned")
        frame_boxes = []
        for track in confirmed:
            x1, y1, x2, y2, score, class_id = detections[track.idx][:6].tolist()
            frame_boxes.append(TrackedBox((x1, y1, x2, y2), score, int(class_id), track.track_id))
        out.append(frame_boxes)
    return out


def comparison_rows(
    engines: dict[str, SegmentationEngine],
    references: dict[str, str],
    frames: list[np.ndarray],
    tracker: str = "bytetrack",
) -> list[tuple[str, TrackingMetrics]]:
    """For each engine (by runtime) the node as it publishes and, from the same run, without the
    low-score matches it did not publish before; then ultralytics track() on each reference
    (label: weights or export)."""
    rows = []
    for runtime, engine in engines.items():
        published = node_tracks(engine, frames, tracker)
        before = [[box for box in frame if not box.tracked_low_score] for frame in published]
        rows.append((f"node, {runtime}, without low-score matches (before)", tracking_metrics(before)))
        rows.append((f"node, {runtime}", tracking_metrics(published)))
    for label, model_path in references.items():
        rows.append(
            (f"ultralytics track(), {label}", tracking_metrics(ultralytics_tracks(model_path, frames, tracker)))
        )
    return rows


def node_engines(runtimes: Iterable[str]) -> dict[str, SegmentationEngine]:
    """One engine per runtime ("torch", "openvino f32", "openvino bf16", "auto"), keyed by what it
    resolved to (auto: OpenVINO where installed, at the precision it timed fastest)."""
    from fastsam_ros.core.backends.model_loading import load_model
    from fastsam_ros.core.engine import SegmentationEngine

    engines = {}
    for spec in runtimes:
        runtime, _, precision = spec.partition(" ")
        loaded = load_model("yolo11n-seg.pt", "cpu", runtime=runtime, precision=precision or "auto")
        label = f"{loaded.runtime} {loaded.precision}" if loaded.runtime == "openvino" else loaded.runtime
        engines[label] = SegmentationEngine(loaded)
    return engines


def reference_models(weights: str) -> dict[str, str]:
    """What track() runs on: the weights (PyTorch), and ultralytics' OpenVINO export of them,
    labelled with the precision OpenVINO's CPU plugin defaults to here."""
    import openvino

    from benchmarks.cpu_runtime_bench import ultralytics_exports

    precision = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    return {"torch": weights, f"its OpenVINO export ({precision}, 640x640)": ultralytics_exports(weights)["openvino"]}


def main(argv: list[str] | None = None) -> int:
    from fastsam_ros.core.backends.model_loading import resolve_weights
    from fastsam_ros.tools.sample_videos import sample_video, video_frames

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=list(VIDEOS))
    parser.add_argument("--frames", type=int, default=0, help="at most this many frames of each video (0: all)")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), help='e.g. torch "openvino f32"')
    parser.add_argument("--tracker", default="bytetrack")
    args = parser.parse_args(argv)
    engines = node_engines(args.runtimes)
    references = reference_models(resolve_weights("yolo11n-seg.pt"))
    print("video | frames | tracks from | ids / switches / matched pairs / tracked detections")
    for video in args.videos:
        frames = video_frames(sample_video(video), args.frames or ALL_FRAMES)
        for label, metrics in comparison_rows(engines, references, frames, args.tracker):
            print(f"{video} | {len(frames)} | {label} | {metrics.row()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
