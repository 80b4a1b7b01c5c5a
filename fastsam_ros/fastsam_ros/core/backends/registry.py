"""The runtimes a network can run on, fastest first on the CPU, and why each cannot run here.

``runtime=auto`` walks this list: each runtime says whether it can run these weights on
this device on this machine and, when not, exactly why, so that the node's log names the
reason for every faster runtime it did not take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fastsam_ros.core.backends import onnx_runtime, openvino_runtime, torch_runtime
from fastsam_ros.core.backends.backend import LoadedNetwork
from fastsam_ros.core.backends.model_errors import ModelLoadError


@dataclass(frozen=True)
class LoadRequest:
    """Everything a runtime's loader may need, resolved: the weights are a local file or a downloadable name."""

    model: str
    """The name the user gave, for messages."""
    weights: str
    device: torch.device
    half: bool
    precision: str
    threads: tuple[int, ...]

    @property
    def onnx_file(self) -> bool:
        return Path(self.weights).suffix == ".onnx"


@dataclass(frozen=True)
class RuntimeBackend:
    """One runtime: whether it can run a request here, and how to load it."""

    name: str
    cpu_only: bool
    from_onnx: bool
    """Runs the ONNX export of .pt weights (or an ONNX file); else .pt weights and ultralytics' other exports."""
    installed: Callable[[bool], str]
    """Why the runtime's packages cannot run these weights (given whether they are ONNX already); '' if they can."""
    load: Callable[[LoadRequest], LoadedNetwork]

    def unavailable(self, request: LoadRequest) -> str:
        """Why this runtime cannot run the request here, said so that a user can act on it; '' when it can."""
        if self.cpu_only and request.device.type != "cpu":
            return f"runtime '{self.name}' runs on the CPU only; use runtime 'torch' on {request.device}"
        if self.from_onnx and torch_runtime.is_exported(request.weights):
            return f"'{request.weights}' is an exported model: use runtime 'torch' (or 'auto') to run it"
        if not self.from_onnx and request.onnx_file:
            return f"'{request.weights}' is an ONNX file: use runtime 'openvino', 'onnxruntime' or 'auto'"
        if self.from_onnx and not request.onnx_file and not Path(request.weights).is_file():
            return f"model '{request.model}' is not a local file; runtime '{self.name}' exports local .pt files"
        return self.installed(request.onnx_file)


def _cpu_network(request: LoadRequest) -> Path:
    """The ONNX file a CPU runtime starts from: the weights themselves, or their cached export."""
    if not request.onnx_file and not onnx_runtime.export_path(Path(request.weights)).is_file():
        torch_runtime.segmentation_network(request.model, request.weights)  # the torch path's errors, before exporting
    return onnx_runtime.exported_onnx(request.weights)


BACKENDS = (
    RuntimeBackend(
        "openvino",
        cpu_only=True,
        from_onnx=True,
        installed=openvino_runtime.unavailable_reason,
        load=lambda request: openvino_runtime.load(_cpu_network(request), request.precision, request.threads),
    ),
    RuntimeBackend(
        "onnxruntime",
        cpu_only=True,
        from_onnx=True,
        installed=onnx_runtime.unavailable_reason,
        load=lambda request: onnx_runtime.load(_cpu_network(request)),
    ),
    RuntimeBackend(
        "torch",
        cpu_only=False,
        from_onnx=False,
        installed=lambda onnx_file: "",
        load=lambda request: torch_runtime.load(request.model, request.weights, request.device, request.half),
    ),
)
"""Fastest first on the CPU (docs/RUNTIMES.md); torch, the only one on a GPU, last."""
RUNTIME_BACKENDS = {backend.name: backend for backend in BACKENDS}


def unavailable_runtimes(request: LoadRequest) -> dict[str, str]:
    """Every runtime that cannot run the request here, with why."""
    return {backend.name: reason for backend in BACKENDS if (reason := backend.unavailable(request))}


def runtime_plan(runtime: str, request: LoadRequest) -> tuple[list[str], dict[str, str]]:
    """The runtimes to try in order, and why each faster one is passed over.

    A named runtime is the only one tried (ModelLoadError when it cannot run the request
    here); 'auto' tries every runtime that can, fastest first.
    """
    unavailable = unavailable_runtimes(request)
    if runtime != "auto":
        if runtime not in RUNTIME_BACKENDS:
            raise ModelLoadError(f"runtime '{runtime}' is not one of auto, {', '.join(RUNTIME_BACKENDS)}")
        if runtime in unavailable:
            raise ModelLoadError(unavailable[runtime])
        return [runtime], {}
    candidates = [backend.name for backend in BACKENDS if backend.name not in unavailable]
    if not candidates:
        raise ModelLoadError(f"no runtime can run '{request.weights}' here: {'; '.join(unavailable.values())}")
    names = list(RUNTIME_BACKENDS)
    return candidates, {name: unavailable[name] for name in names[: names.index(candidates[0])]}
