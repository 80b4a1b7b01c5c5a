"""Calibrating the int8 network once per weights, and checking every reduced precision.

The calibration inputs are real frames passed through the engine's own preprocessing,
so int8 is calibrated on exactly what it will see. After calibration the quality guard
(runtime_quality) compares int8 with f32 on other real frames and its verdict is stored
beside the int8 network: precision 'auto' uses int8 only where that verdict passed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fastsam_ros.core.backends.backend import Backend
from fastsam_ros.core.backends.int8_quantisation import INT8_MODEL, quantize_int8, write_int8_verdict
from fastsam_ros.core.backends.model_loading import LoadedModel, load_model
from fastsam_ros.core.backends.onnx_runtime import cache_dir, exported_onnx
from fastsam_ros.core.backends.openvino_runtime import model_dir
from fastsam_ros.core.backends.runtime_quality import QualityReport, compare_frames
from fastsam_ros.core.engine import SegmentationEngine


def network_inputs(loaded: LoadedModel, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The network input tensors the engine builds from these frames, one frame at a time."""
    recording = _RecordingBackend(loaded.backend)
    engine = SegmentationEngine(dataclasses.replace(loaded, backend=recording))
    for frame in frames:
        engine.segment(frame)
    return recording.inputs


class _RecordingBackend:
    """A ``Backend`` that keeps a copy of every batch it passes on to the network."""

    def __init__(self, network: Backend) -> None:
        self.network = network
        self.end2end = network.end2end
        self.inputs: list[np.ndarray] = []

    def __call__(self, batch: torch.Tensor) -> Sequence[Any]:
        self.inputs.append(batch.numpy().copy())
        return self.network(batch)

    @property
    def inference_threads(self) -> int | None:
        return self.network.inference_threads

    def follow_load(self, queued: bool) -> None:
        self.network.follow_load(queued)

    def forget_shape_caches(self) -> None:
        self.network.forget_shape_caches()

    def release(self) -> None:
        """The network stays with its owner."""


def precision_quality(weights: str, precision: str, frames: Sequence[np.ndarray], threads: int = 0) -> QualityReport:
    """The quality guard of one OpenVINO precision against f32 on these frames."""
    reference = SegmentationEngine(load_model(weights, "cpu", runtime="openvino", precision="f32", threads=(threads,)))
    candidate = SegmentationEngine(
        load_model(weights, "cpu", runtime="openvino", precision=precision, threads=(threads,))
    )
    expected = [reference.segment(frame) for frame in frames]
    found = [candidate.segment(frame) for frame in frames]
    return compare_frames(expected, found)


def calibration_frames_in_guard(
    calibration_frames: Sequence[np.ndarray], guard_frames: Sequence[np.ndarray]
) -> list[int]:
    """Indices of the guard frames that are also calibration frames, pixel for pixel."""
    seen = {frame.tobytes() for frame in calibration_frames}
    return [index for index, frame in enumerate(guard_frames) if frame.tobytes() in seen]


def calibrate_int8(
    weights: str,
    calibration_frames: Sequence[np.ndarray],
    guard_frames: Sequence[np.ndarray],
    log: Callable[[str], None] = print,
    threads: int = 0,
) -> QualityReport:
    """Quantise to int8 (unless cached: delete its INT8_MODEL to calibrate again), run the guard, store its verdict.

    The guard must not see a calibration frame: a verdict on frames int8 was tuned to would flatter it."""
    shared = calibration_frames_in_guard(calibration_frames, guard_frames)
    if shared:
        raise ValueError(f"guard frames {shared} are also calibration frames: the guard needs frames of its own")
    onnx_path = exported_onnx(weights)
    folder = model_dir(onnx_path, cache_dir())
    reference = load_model(weights, "cpu", runtime="openvino", precision="f32", threads=(threads,))
    if not (folder / INT8_MODEL).is_file():
        quantize_int8(onnx_path, folder, network_inputs(reference, calibration_frames), log)
    candidate = load_model(weights, "cpu", runtime="openvino", precision="int8", threads=(threads,))
    expected, found = SegmentationEngine(reference), SegmentationEngine(candidate)
    report = compare_frames(
        [expected.segment(frame) for frame in guard_frames], [found.segment(frame) for frame in guard_frames]
    )
    write_int8_verdict(folder, report.passed, report.summary())
    log(f"int8 quality guard {'passed' if report.passed else 'FAILED'}: {report.summary()}")
    return report
