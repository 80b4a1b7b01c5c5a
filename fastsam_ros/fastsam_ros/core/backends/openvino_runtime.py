"""OpenVINO as the CPU inference runtime: static shapes, reduced precision, cached compiles.

On this project's CPUs OpenVINO runs the network faster than ONNX Runtime when every
input shape is compiled on its own (static shapes) and in bf16 or int8 where the CPU
has the instructions (docs/RUNTIMES.md). The network comes from the same cached ONNX
export as the ONNX Runtime path. Each (batch, height, width) is compiled on first sight;
OpenVINO keeps the compiled models in its own cache (``CACHE_DIR``, under the network's
folder, keyed by the network and the OpenVINO version), so a warm start loads them instead
of compiling, new weights never meet an old compile, and a damaged entry is compiled again.
Measured against importing exported blobs by hand (a fresh process, reading the network to
the first inference of the cached 640x640 f32 model, on a shared 2-core machine, interleaved):
median 0.81 s with blobs and 0.79 s with CACHE_DIR in one run of 6 pairs, 0.55 s and 0.61 s in
another of 8; the spread within each run (0.36-1.05 s) is larger than the difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from fastsam_ros.core.backends.backend import LoadedNetwork, released_error
from fastsam_ros.core.backends.int8_quantisation import INT8_MODEL
from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.onnx_runtime import EXPORT_PACKAGES, cache_dir, export_available, export_fields
from fastsam_ros.core.backends.openvino_graph import gathers_instead_of_slices
from fastsam_ros.core.backends.precision import resolve_precision
from fastsam_ros.core.backends.torch_runtime import END_TO_END_TOP_K

MAX_COMPILED_SHAPES = 6
"""Input shapes kept compiled in memory; a camera gives one, a few cameras a few."""
PROBE_SHAPE = (1, 3, 640, 640)
"""Compiled at load: the square input of several cameras' batches and of warm-ups."""
METADATA = "metadata.json"
COMPILED = "compiled"
"""OpenVINO's compiled-model cache inside the network's folder."""


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def unavailable_reason(onnx_file: bool) -> str:
    """Why runtime openvino cannot run these weights here ('' when it can)."""
    if not openvino_available():
        return "openvino is not installed; runtime 'openvino' needs the package openvino: pip install it"
    if not onnx_file and not export_available():
        missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
        return f"openvino is installed but its exporter needs {', '.join(missing)}: pip install them"
    return ""


def model_key(onnx_path: Path) -> str:
    """Content key of a network for this OpenVINO version: changes when the weights do."""
    import openvino as ov

    return hashlib.sha256(onnx_path.read_bytes() + ov.__version__.encode()).hexdigest()[:16]


def model_dir(onnx_path: Path, cache: Path) -> Path:
    """Where compiled models, the int8 network and its quality verdict of this network live."""
    return cache / "openvino" / f"{onnx_path.stem}-{model_key(onnx_path)}"


def forward_ms(onnx_path: Path, precision: str, threads: tuple[int, ...], cache: Path, runs: int = 5) -> float:
    """Median ms of the network's forward pass at PROBE_SHAPE in this precision (compiled and cached),
    on the most of the thread counts: a lone frame's case."""
    compiled = OpenVinoNetwork(onnx_path, precision, threads, cache).compiled(PROBE_SHAPE)
    batch = np.zeros(PROBE_SHAPE, np.float32)
    compiled(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        compiled(batch)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def threads_text(counts: tuple[int, ...]) -> str:
    if len(counts) > 1:
        return f"inference threads follow the load: {counts[-1]} while frames do not queue, {counts[0]} while they do"
    if not counts[0]:
        return "OpenVINO chooses the inference threads"
    return f"{counts[0]} inference thread{'s' if counts[0] > 1 else ''}"


def load(onnx_path: Path, precision: str, threads: tuple[int, ...]) -> LoadedNetwork:
    """The network at the resolved precision, compiled for one shape now so that a failure shows at load."""
    folder = model_dir(onnx_path, cache_dir())
    chosen, why = resolve_precision(
        precision, folder, lambda candidate: forward_ms(onnx_path, candidate, threads, cache_dir())
    )
    if chosen == "int8" and not (folder / INT8_MODEL).is_file():
        raise ModelLoadError(
            "precision 'int8' needs the network calibrated once for these weights (about a minute): "
            "run `fastsam_export --precision int8`"
        )
    network = OpenVinoNetwork(onnx_path, chosen, threads, cache_dir())
    try:
        network.compiled(PROBE_SHAPE)
    except RuntimeError as error:
        raise ModelLoadError(f"OpenVINO could not compile '{onnx_path}' for the CPU: {error}") from error
    return LoadedNetwork(
        backend=network,
        class_names=network.names,
        stride=max(network.stride, 32),
        dynamic_shapes=True,
        precision=chosen,
        precision_reason=why,
        threads=threads_text(network.thread_counts),
        min_anchors=END_TO_END_TOP_K if network.end2end else 0,
    )


def onnx_metadata(onnx_path: Path, folder: Path) -> dict[str, str]:
    """The export's metadata (task, class names, stride), kept beside the compiled models: parsing
    the ONNX file again would cost a warm start seconds."""
    stored = folder / METADATA
    with contextlib.suppress(OSError, ValueError, RecursionError):  # else parsed again below and rewritten
        kept = json.loads(stored.read_text())
        if isinstance(kept, dict) and all(isinstance(value, str) for value in kept.values()):
            return kept
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # protobuf's and onnx's own kinds
        raise ModelLoadError(f"'{onnx_path}' is not a readable ONNX file: {error}") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    with contextlib.suppress(OSError):  # a read-only cache only costs the next start the parse
        folder.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(metadata))
    return metadata


class OpenVinoNetwork:
    """The network on OpenVINO, one compiled model per input shape (a ``Backend``).

    With more than one thread count the network follows the load (``follow_load``): the
    most threads while frames do not queue, so a lone frame is answered soonest, and the
    fewest while they do, so the cores left over receive frames and answer prompts. The
    thread count is not part of OpenVINO's cache key: each shape is compiled once and
    loaded from the cache once more per further thread count, on first use.
    """

    def __init__(self, onnx_path: Path, precision: str, threads: tuple[int, ...], cache: Path) -> None:
        import openvino as ov

        self.folder = model_dir(onnx_path, cache)
        self.thread_counts = tuple(sorted(set(threads)))
        self._threads = self.thread_counts[-1]
        self.names, self.stride, self.end2end = export_fields(onnx_metadata(onnx_path, self.folder), onnx_path)
        self._core = ov.Core()
        compiled_cache = self.folder / COMPILED
        with contextlib.suppress(OSError):
            compiled_cache.mkdir(parents=True, exist_ok=True)
        if os.access(compiled_cache, os.W_OK):  # a read-only cache only costs each start its compiles
            self._core.set_property({"CACHE_DIR": str(compiled_cache)})
        source = self.folder / INT8_MODEL if precision == "int8" else onnx_path
        try:
            self._model = gathers_instead_of_slices(self._core.read_model(str(source)))
        except RuntimeError as error:
            raise ModelLoadError(f"OpenVINO could not read '{source}' ({error}); delete it to rebuild it") from error
        self._configs = {
            count: {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                "INFERENCE_NUM_THREADS": count,
                # Unpinned, the OS can move inference threads off a core that the node's
                # callbacks (services, DDS, mask encoding) need at that moment.
                "ENABLE_CPU_PINNING": False,
            }
            for count in self.thread_counts
        }
        self._compiled: OrderedDict[tuple[int, ...], dict[int, object]] = OrderedDict()
        self._released = False

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        return list(self._compiled)

    @property
    def inference_threads(self) -> int:
        return self._threads

    def follow_load(self, queued: bool) -> None:
        """Threads for the next frames: the fewest when frames queue, else the most."""
        self._threads = self.thread_counts[0] if queued else self.thread_counts[-1]

    def forget_shape_caches(self) -> None:
        """Nothing to forget: OpenVINO never runs under CUDA graph capture."""

    def release(self) -> None:
        self._compiled.clear()
        self._model = None
        self._released = True

    def compiled(self, shape: tuple[int, ...]):
        """The compiled model of one input shape at the current thread count: from memory, else
        compiled now (OpenVINO loads it from its cache when it was compiled before)."""
        if self._released:
            raise released_error()
        by_threads = self._compiled.get(shape, {})
        found = by_threads.get(self._threads)
        if found is None:
            model = self._model.clone()
            model.reshape({model.inputs[0].get_any_name(): list(shape)})
            found = self._core.compile_model(model, "CPU", self._configs[self._threads])
            by_threads[self._threads] = found
        self._compiled[shape] = by_threads
        self._compiled.move_to_end(shape)
        if len(self._compiled) > MAX_COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return found

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        compiled = self.compiled(tuple(batch.shape))
        outputs = compiled(batch.numpy())
        return [torch.from_numpy(outputs[port]) for port in compiled.outputs]
