"""PyTorch as the runtime: ultralytics' AutoBackend on the CPU or a GPU, and the exports it runs.

The only runtime that runs on a GPU (in fp16 there if asked) and the one that runs
ultralytics' other export formats (TensorRT, TorchScript, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fastsam_ros.core.backends.backend import LoadedNetwork, released_error
from fastsam_ros.core.backends.cuda_graphs import forget_anchor_caches
from fastsam_ros.core.backends.model_errors import ModelLoadError

END_TO_END_TOP_K = 300
"""Detections an NMS-free head picks (its top k; fixed in an export): ultralytics' default max_det, assumed of
networks exported elsewhere too."""
EXPORTED_SUFFIXES = (".engine", ".torchscript", ".tflite", ".pb", ".mlpackage", ".xml")
"""Files of other formats ultralytics exports, run by its AutoBackend (TensorRT, TorchScript, ...)."""


def is_exported(weights: str) -> bool:
    return Path(weights).suffix in EXPORTED_SUFFIXES


def segmentation_network(model: str, weights: str) -> torch.nn.Module:
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


def nms_free_head(network: torch.nn.Module) -> dict[str, object]:
    """How the network's NMS-free (one-to-one) head runs, as ultralytics' predict and export arguments;
    {} when it has none (YOLO11, YOLOv8, FastSAM).

    ultralytics' default (``nms=None``) runs NMS over the one-to-many head that YOLO26 also has;
    ``nms=False`` selects the NMS-free head. YOLOE's predict keeps one class per box
    (``agnostic_nms``): its open vocabulary may name overlapping classes.
    """
    from ultralytics.nn.tasks import YOLOEModel

    layers = getattr(network, "model", None)
    if not isinstance(layers, torch.nn.Sequential) or getattr(layers[-1], "one2one_cv2", None) is None:
        return {}
    return {"nms": False, "max_det": END_TO_END_TOP_K, "agnostic_nms": isinstance(network, YOLOEModel)}


def load(model: str, weights: str, device: torch.device, half: bool) -> LoadedNetwork:
    """The network on ``device`` through ultralytics' AutoBackend; fp16 on CUDA only.

    A network with an NMS-free head runs that head (``nms_free_head``), as ultralytics' ``predict(nms=False)``.
    """
    use_half = half and device.type == "cuda"
    network = weights if is_exported(weights) else segmentation_network(model, weights)
    head = {} if isinstance(network, str) else nms_free_head(network)
    if head:
        network.set_head_attr(max_det=head["max_det"], agnostic_nms=head["agnostic_nms"])
    end_to_end = True if head else None  # None: as the export or checkpoint has it
    try:
        from ultralytics.nn.autobackend import AutoBackend

        backend = AutoBackend(
            network, device=device, fp16=use_half, fuse=not is_exported(weights), verbose=False, end2end=end_to_end
        )
        backend.eval()
    except Exception as error:  # ultralytics raises many kinds
        raise ModelLoadError(f"could not place model '{model}' on {device}: {error}") from error
    task = getattr(backend, "task", None) or "segment"
    if task != "segment":
        raise ModelLoadError(f"model '{model}' is a '{task}' model; a segmentation model is required")
    return LoadedNetwork(
        backend=TorchNetwork(backend),
        class_names={int(k): str(v) for k, v in dict(backend.names).items()},
        stride=max(int(backend.stride), 32),
        dynamic_shapes=not is_exported(weights),  # exports are usually built for one square input
        precision="fp16" if use_half else "f32",
    )


class TorchNetwork:
    """ultralytics' AutoBackend as a ``Backend``; torch chooses its own threads."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module: torch.nn.Module | None = module
        self.end2end = bool(getattr(module, "end2end", False))  # AutoBackend sets it only for some formats

    def __call__(self, batch: torch.Tensor) -> Sequence[Any]:
        if self.module is None:
            raise released_error()
        return self.module(batch)

    @property
    def inference_threads(self) -> None:
        return None

    def follow_load(self, queued: bool) -> None:
        """torch keeps its thread count."""

    def forget_shape_caches(self) -> None:
        if self.module is not None:
            forget_anchor_caches(self.module)

    def release(self) -> None:
        self.module = None
