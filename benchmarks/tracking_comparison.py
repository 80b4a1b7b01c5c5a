"""The node's track ids against ultralytics' own ``track()`` on the same real video frames.

Both sides see every frame, in order, with the same weights. The metric needs no ground
truth: a detection that matches one of the previous frame's (same class, box IoU > 0.5)
is a matched pair, and a switch when the two carry different track ids. Only detections
with a track id and a score at or above the published confidence count, on both sides.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MATCH_IOU = 0.5


@dataclass(frozen=True)
class TrackedBox:
    box: tuple[float, float, float, float]
    score: float
    class_id: int
    track_id: int


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


def tracking_metrics(frames: Iterable[list[TrackedBox]], min_score: float) -> TrackingMetrics:
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


def node_tracks(engine, frames: list[np.ndarray], tracker: str = "bytetrack") -> list[list[TrackedBox]]:
    """What the node publishes per frame: its Perception pipeline, in process."""
    from fastsam_ros.core.perception import Perception

    perception = Perception(engine, tracker)
    out = []
    for frame in frames:
        masks = perception.process(frame, want_obstacles=False).masks
        out.append([TrackedBox(i.box, i.score, i.class_id, i.track_id) for i in masks.instances])
    return out


def ultralytics_tracks(weights: str, frames: list[np.ndarray], tracker: str = "bytetrack") -> list[list[TrackedBox]]:
    """``YOLO(weights).track(frame, persist=True)`` frame by frame, with its default settings."""
    from ultralytics import YOLO

    model = YOLO(weights)
    out = []
    for frame in frames:
        boxes = model.track(frame, persist=True, tracker=f"{tracker}.yaml", verbose=False)[0].boxes
        if boxes is None or boxes.id is None:
            out.append([])
            continue
        out.append(
            [
                TrackedBox(tuple(box), score, int(cls), int(track_id))
                for box, score, cls, track_id in zip(
                    boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), boxes.id.tolist(), strict=True
                )
            ]
        )
    return out


def compare(engine, weights: str, frames: list[np.ndarray], conf: float, tracker: str = "bytetrack"):
    """(node, ultralytics) metrics on the same frames, counted at the node's published confidence."""
    return (
        tracking_metrics(node_tracks(engine, frames, tracker), conf),
        tracking_metrics(ultralytics_tracks(weights, frames, tracker), conf),
    )


def comparison_rows(loaded, frames: list[np.ndarray], conf: float, tracker: str = "bytetrack") -> list[tuple[str, str]]:
    """Table rows: the node without low-score candidates (as before), the node, ultralytics track()."""
    from fastsam_ros.core.engine import EngineSettings, SegmentationEngine

    without = SegmentationEngine(loaded, EngineSettings(conf=conf, candidate_conf=conf))
    node = SegmentationEngine(loaded, EngineSettings(conf=conf))
    return [
        ("node, published detections only", tracking_metrics(node_tracks(without, frames, tracker), conf).row()),
        ("node", tracking_metrics(node_tracks(node, frames, tracker), conf).row()),
        ("ultralytics track()", tracking_metrics(ultralytics_tracks(loaded.source, frames, tracker), conf).row()),
    ]


def main(argv: list[str] | None = None) -> int:
    from fastsam_ros.core.backends.model_loading import load_model
    from fastsam_ros.core.engine import EngineSettings
    from fastsam_ros.tools.sample_videos import sample_video, video_frames

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="vtest.avi")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--tracker", default="bytetrack")
    parser.add_argument("--conf", type=float, default=EngineSettings.conf)
    args = parser.parse_args(argv)
    loaded = load_model("yolo11n-seg.pt", "cpu", runtime=args.runtime)
    frames = video_frames(sample_video(args.video), args.frames)
    print(f"{args.video}, {len(frames)} frames, {args.tracker}, conf {args.conf}, runtime {loaded.runtime}")
    print("ids / switches / matched pairs / tracked detections")
    for label, row in comparison_rows(loaded, frames, args.conf, args.tracker):
        print(f"{label}: {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
