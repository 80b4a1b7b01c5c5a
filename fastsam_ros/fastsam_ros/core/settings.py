"""A whole parameter set: its checks (each value alone, then what a value names) and the
typed settings the node builds from it.

Separate from the parameter table (fastsam_ros.core.parameters) because reading a tracker
settings file needs ultralytics' tracker defaults, and the settings are the core's own
dataclasses, while the table must stay a standard-library leaf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastsam_ros.core.engine import EngineSettings
from fastsam_ros.core.health import HealthLimits
from fastsam_ros.core.obstacles import ObstacleSettings
from fastsam_ros.core.parameters import DEFAULTS, coerce, inference_thread_counts, validate
from fastsam_ros.core.prompts import PromptLimits
from fastsam_ros.core.tracking import TrackerConfigError, tracker_settings


def problems(values: dict[str, Any], current: dict[str, Any] | None = None) -> list[str]:
    """Reasons why values cannot be used (empty when they can), each naming its parameter.

    ``current`` holds the other parameters' values, for checks that involve two parameters
    (a tracker settings file is read for the tracker it configures).
    """
    reasons = validate(values)
    if reasons:
        return reasons
    coerced, _ = coerce(values)
    merged = {**(current or DEFAULTS), **coerced}
    if {"tracker", "tracker_config"} & set(coerced) and merged["tracker"] != "none":
        try:
            tracker_settings(merged["tracker"], merged["tracker_config"])
        except TrackerConfigError as error:
            return [f"tracker_config: {error}"]
    return []


@dataclass(frozen=True)
class ModelSettings:
    """What configure loads; read-only parameters, so they change only with a new configure."""

    model: str
    device: str
    half: bool
    runtime: str
    precision: str
    inference_threads: tuple[int, ...]
    """The thread counts of runtime openvino (``inference_thread_counts``)."""


@dataclass(frozen=True)
class TrackerSettings:
    kind: str
    config_path: str


@dataclass(frozen=True)
class CameraSettings:
    """What each camera channel reads at run time, swapped as a whole when one value changes."""

    max_pixels: int
    depth_slop_s: float
    prompt_limits: PromptLimits


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of the node, typed and grouped by the part that uses it."""

    autostart: bool
    model: ModelSettings
    engine: EngineSettings
    tracker: TrackerSettings
    obstacles: ObstacleSettings
    camera: CameraSettings
    health: HealthLimits
    cameras: tuple[str, ...]
    compressed_input: bool
    reliable_images: bool
    drop_log_period_s: float


def node_settings(values: dict[str, Any]) -> NodeSettings:
    """The settings of a complete parameter set that ``problems`` found usable.

    The text prompt parameters are left out: the text backends read them from the parameter set.
    """
    return NodeSettings(
        autostart=values["autostart"],
        model=ModelSettings(
            model=values["model"],
            device=values["device"],
            half=values["half"],
            runtime=values["runtime"],
            precision=values["precision"],
            inference_threads=inference_thread_counts(values["inference_threads"]),
        ),
        engine=EngineSettings(
            imgsz=values["imgsz"],
            conf=values["conf"],
            iou=values["iou"],
            max_det=values["max_det"],
            retina_masks=values["retina_masks"],
            cuda_graphs=values["cuda_graphs"],
        ),
        tracker=TrackerSettings(values["tracker"], values["tracker_config"]),
        obstacles=ObstacleSettings(
            roi=tuple(values["obstacle_roi"]),
            min_area=values["obstacle_min_area"],
            min_overlap=values["obstacle_min_overlap"],
            max_distance=values["max_distance"],
            cloud_decimation=values["obstacle_cloud_decimation"],
            cloud_max_range=values["obstacle_cloud_max_range"],
        ),
        camera=CameraSettings(
            max_pixels=values["max_pixels"],
            depth_slop_s=values["depth_slop"],
            prompt_limits=PromptLimits(
                max_points=values["max_prompt_points"],
                max_boxes=values["max_prompt_boxes"],
                max_texts=values["max_prompt_texts"],
                max_text_length=values["max_text_length"],
            ),
        ),
        health=HealthLimits(
            max_latency_ms=values["diagnostics_max_latency_ms"],
            max_drop_ratio=values["diagnostics_max_drop_ratio"],
        ),
        cameras=tuple(values["cameras"]),
        compressed_input=values["input"] == "compressed",
        reliable_images=values["image_qos"] == "reliable",
        drop_log_period_s=values["drop_log_period"],
    )
