"""The network's forward pass captured once per input shape as a CUDA graph, then replayed.

The nano model is bound by kernel-launch overhead on a GPU: on an H100 its eager forward
took 5.5-11 ms and the same work replayed as a graph 1.3-1.4 ms. A graph replays fixed
kernels on fixed memory, so there is one graph per (batch size, input shape, dtype), each
with a static input buffer that the preprocessing writes into, and outputs that stay valid
until the next replay of that graph. A capture that fails is logged once and that shape runs
eagerly from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

CUDA_GRAPH_MODES = ("auto", "on", "off")
"""auto: on for the torch runtime on CUDA; on: the same, with a warning where graphs cannot run; off: eager."""

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
WARM_UP_RUNS = 3
"""Eager runs on a side stream before capture, so lazy initialisation is not captured."""


def graphs_wanted(mode: str, device: torch.device, runtime: str) -> tuple[bool, str]:
    """Whether to capture graphs, and why not when a user asked for them ('' otherwise)."""
    if mode not in CUDA_GRAPH_MODES:
        raise ValueError(f"cuda_graphs '{mode}' is not one of {', '.join(CUDA_GRAPH_MODES)}")
    if mode == "off":
        return False, ""
    possible = device.type == "cuda" and runtime == "torch"
    if possible:
        return True, ""
    reason = f"cuda_graphs 'on' needs the torch runtime on a CUDA device, not {runtime} on {device}; running eagerly"
    return False, reason if mode == "on" else ""


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    batch: torch.Tensor
    outputs: tuple[torch.Tensor, torch.Tensor]


class GraphedForward:
    """Calls forward through one captured CUDA graph per input (shape, dtype)."""

    def __init__(self, forward: Forward, forget_shape_caches: Callable[[], None], log: Callable[[str], None]) -> None:
        self._forward = forward
        self._forget_shape_caches = forget_shape_caches
        self._log = log
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype], _Captured] = {}
        self._eager: set[tuple[tuple[int, ...], torch.dtype]] = set()

    def input_buffer(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Where to write the next batch of this shape: the graph's static input once captured."""
        captured = self._graphs.get((tuple(shape), dtype))
        return captured.batch if captured is not None else torch.empty(shape, dtype=dtype, device=device)

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(batch.shape), batch.dtype)
        if key in self._eager:
            return self._forward(batch)
        captured = self._graphs.get(key) or self._capture(key, batch)
        if captured is None:
            return self._forward(batch)
        if captured.batch.data_ptr() != batch.data_ptr():
            captured.batch.copy_(batch)
        captured.graph.replay()
        return captured.outputs

    def _capture(self, key: tuple[tuple[int, ...], torch.dtype], batch: torch.Tensor) -> _Captured | None:
        static = batch.clone()
        try:
            side = torch.cuda.Stream(batch.device)
            side.wait_stream(torch.cuda.current_stream(batch.device))
            with torch.cuda.stream(side):
                for _ in range(WARM_UP_RUNS):
                    self._forward(static)
            torch.cuda.current_stream(batch.device).wait_stream(side)
            self._forget_shape_caches()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._forward(static)
        except Exception as error:  # capture fails in many driver- and op-specific ways
            self._eager.add(key)
            self._forget_shape_caches()
            self._log(f"CUDA graph capture failed for input {key[0]} {key[1]}, running it eagerly: {error}")
            return None
        captured = _Captured(graph, static, outputs)
        self._graphs[key] = captured
        return captured


def forget_anchor_caches(module: torch.nn.Module) -> None:
    """Make detection heads recompute their anchor grids on the next call.

    ultralytics' heads cache anchors per input shape in tensors they replace when the
    shape changes. Recomputed inside the capture, the anchors live in the graph's own
    memory, so another shape's call cannot free memory the graph still reads. AutoBackend
    (ultralytics 8.4) keeps the network in a PyTorch backend that is not a module itself,
    so its layers are not among AutoBackend's own: the walk goes into that network too.
    """
    network = getattr(getattr(module, "backend", None), "model", None)
    roots = [module, network] if isinstance(network, torch.nn.Module) else [module]
    for layer in (layer for root in roots for layer in root.modules()):
        if hasattr(layer, "anchors") and hasattr(layer, "shape"):
            layer.shape = None
