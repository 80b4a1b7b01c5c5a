"""What the engine asks of a network, whichever runtime runs it.

Every runtime (torch, ONNX Runtime, OpenVINO) hands the engine a ``Backend``: the engine
calls only what is declared here, so a new runtime is added by implementing this, not by
the engine probing for attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Backend(Protocol):
    """A network on one runtime: a float NCHW batch in, [detections, prototypes] out."""

    end2end: bool
    """The network selects its own detections (no NMS needed, ultralytics only filters its rows)."""

    def __call__(self, batch: torch.Tensor) -> Sequence[Any]: ...

    @property
    def inference_threads(self) -> int | None:
        """The thread count the runtime uses now, where it is ours to set (0: the runtime's own choice)."""
        ...

    def follow_load(self, queued: bool) -> None:
        """Whether frames queue, for a runtime whose thread count follows the load."""
        ...

    def forget_shape_caches(self) -> None:
        """Drop per-input-shape caches, so a CUDA graph capture computes them in its own memory."""
        ...

    def release(self) -> None:
        """Free the runtime's memory; the network is not called afterwards."""
        ...


@dataclass(frozen=True)
class LoadedNetwork:
    """What one runtime's loader hands back: the network and the facts the engine needs about it."""

    backend: Backend
    class_names: dict[int, str]
    stride: int
    dynamic_shapes: bool
    """Takes any stride-aligned input shape (else one square input, as most exports)."""
    precision: str
    precision_reason: str = ""
    """Why this precision, where the runtime chose one (OpenVINO's 'auto')."""
    threads: str = ""
    """How the runtime sets its thread count, where that is ours to set."""
    min_anchors: int = 0
    """Anchors an input must give at least: an exported NMS-free head picks a fixed number of them."""


def released_error() -> RuntimeError:
    return RuntimeError("the network was released")
