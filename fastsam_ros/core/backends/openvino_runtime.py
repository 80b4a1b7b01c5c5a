"""OpenVINO as the CPU inference runtime: static shapes, reduced precision, cached compiles.

On this project's CPUs OpenVINO runs the network faster than ONNX Runtime when every
input shape is compiled on its own (static shapes) and in bf16 or int8 where the CPU
has the instructions (README, "CPU inference: OpenVINO"). The network comes from the same cached ONNX
export as the ONNX Runtime path. Each (batch, height, width) is compiled on first sight
and the compiled model is kept on disk under a key of the network's content and the
OpenVINO version, so a warm start imports it instead of compiling, and new weights never
meet an old compile.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from fastsam_ros.core.backends.model_errors import ModelLoadError

PRECISIONS = ("auto", "f32", "bf16", "int8")
MAX_COMPILED_SHAPES = 6
"""Input shapes kept compiled in memory and on disk; a camera gives one, a few cameras a few."""
PROBE_SHAPE = (1, 3, 640, 640)
"""Compiled at load when nothing is cached: the square input of several cameras' batches and of warm-ups."""
INT8_MODEL = "int8.xml"
METADATA = "metadata.json"
INT8_VERDICT = "int8-quality.json"
"""The quality guard's result for the calibrated int8 model, written beside it."""
PRECISION_TIMINGS = "precision-timings.json"
"""Forward times of the precisions on this CPU, for 'auto'; timed again on another CPU."""


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def cpu_capabilities() -> set[str]:
    """OpenVINO's optimisation capabilities of this CPU (FP32, BF16, INT8, ...)."""
    import openvino as ov

    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def model_key(onnx_path: Path) -> str:
    """Content key of a network for this OpenVINO version: changes when the weights do."""
    import openvino as ov

    return hashlib.sha256(onnx_path.read_bytes() + ov.__version__.encode()).hexdigest()[:16]


def model_dir(onnx_path: Path, cache: Path) -> Path:
    """Where compiled models, the int8 network and its quality verdict of this network live."""
    return cache / "openvino" / f"{onnx_path.stem}-{model_key(onnx_path)}"


def int8_verdict(folder: Path) -> dict | None:
    """The stored quality guard result of the int8 network in ``folder``, if it was checked."""
    path = folder / INT8_VERDICT
    if not (path.is_file() and (folder / INT8_MODEL).is_file()):
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resolve_precision(precision: str, folder: Path, forward_ms: Callable[[str], float]) -> tuple[str, str]:
    """The precision to compile and why.

    'auto' takes the fastest on this CPU, timed once with ``forward_ms`` and stored, of f32,
    bf16 where the CPU has it, and int8 only when its quality guard passed here: a CPU may
    announce bf16 and still run it slower than f32 (the VMs this was measured on did).
    """
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    capabilities = cpu_capabilities()
    if precision == "bf16" and "BF16" not in capabilities:
        raise ModelLoadError(
            f"precision 'bf16' needs a CPU with bf16 instructions; this one has {sorted(capabilities)}"
        )
    if precision != "auto":
        return precision, "requested"
    verdict = int8_verdict(folder)
    int8_passed = verdict is not None and verdict.get("passed") and "INT8" in capabilities
    int8 = "int8 not calibrated yet (fastsam_export --precision int8)" if verdict is None else "int8 failed the guard"
    if int8_passed:
        int8 = f"int8 passed the quality guard here ({verdict.get('summary', '')})"
    candidates = ["f32", *(["bf16"] if "BF16" in capabilities else []), *(["int8"] if int8_passed else [])]
    if len(candidates) == 1:
        return "f32", f"{int8}; the CPU has no bf16"
    timings = _precision_timings(folder, candidates, forward_ms)
    chosen = min(timings, key=timings.__getitem__)
    measured = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(timings.items(), key=lambda item: item[1]))
    return chosen, f"{int8}; fastest here per 640x640 forward: {measured}"


def _precision_timings(folder: Path, candidates: list[str], forward_ms: Callable[[str], float]) -> dict[str, float]:
    """Forward times of the candidate precisions on this CPU, from the stored timing when it is of
    the same CPU and candidates, else measured now and stored; a precision that fails is left out."""
    import openvino as ov

    cpu = str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    path = folder / PRECISION_TIMINGS
    with contextlib.suppress(OSError, ValueError):
        stored = json.loads(path.read_text())
        if stored.get("cpu") == cpu and sorted(stored.get("ms", {})) == sorted(candidates):
            return {name: float(ms) for name, ms in stored["ms"].items()}
    timings = {}
    for name in candidates:
        with contextlib.suppress(RuntimeError, ModelLoadError):
            timings[name] = forward_ms(name)
    if not timings:
        raise ModelLoadError(f"OpenVINO could not compile the network at any of {', '.join(candidates)}")
    if len(timings) == len(candidates):
        with contextlib.suppress(OSError):  # a read-only cache only costs the next start the timing
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"cpu": cpu, "ms": timings}) + "\n")
    return timings


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


def quantize_int8(onnx_path: Path, folder: Path, inputs: Iterable[np.ndarray], log: Callable[[str], None]) -> Path:
    """Post-training int8 quantisation with NNCF, calibrated on real network inputs; cached."""
    target = folder / INT8_MODEL
    if target.is_file():
        return target
    if importlib.util.find_spec("nncf") is None:
        raise ModelLoadError("precision 'int8' needs the package nncf to calibrate once: pip install it")
    import nncf
    import openvino as ov

    samples = list(inputs)
    log(f"calibrating int8 on {len(samples)} real frames (once per weights)")
    model = ov.Core().read_model(str(onnx_path))
    # The head's box decoding (distribution focal loss and anchor arithmetic) loses box
    # accuracy when quantised and costs little, so it stays in float.
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(
            patterns=[r".*/dfl/.*", r".*/model\.\d+/(Sub|Add|Mul|Div)(_\d+)?$"], validate=False
        ),
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            staged = Path(work) / INT8_MODEL
            ov.save_model(quantized, str(staged), compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
            os.replace(staged, target)
    except OSError as error:
        raise ModelLoadError(f"could not write the int8 network to {folder}: {error}") from error
    return target


def write_int8_verdict(folder: Path, passed: bool, summary: str) -> None:
    (folder / INT8_VERDICT).write_text(json.dumps({"passed": bool(passed), "summary": summary}) + "\n")


def load_network(onnx_path: Path, precision: str, threads: tuple[int, ...]) -> tuple[OpenVinoNetwork, str, str]:
    """The network at the resolved precision, compiled for one shape now so that a failure shows at load."""
    if not openvino_available():
        raise ModelLoadError("runtime 'openvino' needs the package openvino: pip install it")
    from fastsam_ros.core.backends.onnx_runtime import cache_dir

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
    if not network.compiled_shapes:
        try:
            network.compiled(PROBE_SHAPE)
        except RuntimeError as error:
            raise ModelLoadError(f"OpenVINO could not compile '{onnx_path}' for the CPU: {error}") from error
    return network, chosen, why


def onnx_metadata(onnx_path: Path, folder: Path) -> dict[str, str]:
    """The export's metadata (task, class names, stride), kept beside the compiled models: parsing
    the ONNX file again would cost a warm start seconds."""
    stored = folder / METADATA
    if stored.is_file():
        try:
            return json.loads(stored.read_text())
        except (OSError, ValueError):
            pass  # parsed again below and rewritten
    import onnx

    metadata = {prop.key: prop.value for prop in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    with contextlib.suppress(OSError):  # a read-only cache only costs the next start the parse
        folder.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(metadata))
    return metadata


class OpenVinoNetwork:
    """Called like ultralytics' AutoBackend: a float NCHW batch in, [detections, prototypes] out.

    With more than one thread count the network follows the load (``follow_load``): the
    most threads while frames do not queue, so a lone frame is answered soonest, and the
    fewest while they do, so the cores left over receive frames and answer prompts. A
    compiled model does not depend on its thread count: each shape is compiled once and
    imported once more per further thread count, on first use.
    """

    def __init__(self, onnx_path: Path, precision: str, threads: tuple[int, ...], cache: Path) -> None:
        import openvino as ov

        self.folder = model_dir(onnx_path, cache)
        self.precision = precision
        self.thread_counts = tuple(sorted(set(threads)))
        self.threads = self.thread_counts[-1]
        metadata = onnx_metadata(onnx_path, self.folder)
        if metadata.get("task", "segment") != "segment":
            raise ModelLoadError(f"'{onnx_path}' is a '{metadata['task']}' model; a segmentation model is required")
        self.names = {int(k): str(v) for k, v in ast.literal_eval(metadata.get("names", "{0: 'object'}")).items()}
        self.stride = int(metadata.get("stride", 32))
        self.end2end = metadata.get("end2end", "False") == "True"
        self._core = ov.Core()
        source = self.folder / INT8_MODEL if precision == "int8" else onnx_path
        try:
            self._model = self._core.read_model(str(source))
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
        for blob in sorted(self._blobs(), key=lambda path: path.stat().st_mtime)[-MAX_COMPILED_SHAPES:]:
            shape = tuple(int(n) for n in blob.stem.rsplit("-", 1)[1].split("x"))
            self._compiled[shape] = {self.threads: self._import(blob)}

    @property
    def compiled_shapes(self) -> list[tuple[int, ...]]:
        return list(self._compiled)

    def follow_load(self, queued: bool) -> None:
        """Threads for the next frames: the fewest when frames queue, else the most."""
        self.threads = self.thread_counts[0] if queued else self.thread_counts[-1]

    def _blobs(self) -> list[Path]:
        return list(self.folder.glob(f"{self.precision}-[0-9]*.blob")) if self.folder.is_dir() else []

    def _import(self, blob: Path):
        try:
            return self._core.import_model(blob.read_bytes(), "CPU", self._configs[self.threads])
        except (OSError, RuntimeError) as error:
            reason = [line for line in str(error).splitlines() if line.strip()][-1:] or [type(error).__name__]
            raise ModelLoadError(
                f"the compiled model cache '{blob}' is corrupt ({reason[0]}); delete it to compile again"
            ) from error

    def compiled(self, shape: tuple[int, ...]):
        """The compiled model of one input shape at the current thread count: from memory, from
        disk, or compiled now and stored."""
        by_threads = self._compiled.get(shape, {})
        found = by_threads.get(self.threads)
        if found is None:
            blob = self.folder / f"{self.precision}-{'x'.join(map(str, shape))}.blob"
            if blob.is_file():
                found = self._import(blob)
            else:
                model = self._model.clone()
                model.reshape({model.inputs[0].get_any_name(): list(shape)})
                found = self._core.compile_model(model, "CPU", self._configs[self.threads])
                self._store(found, blob)
            by_threads[self.threads] = found
        self._compiled[shape] = by_threads
        self._compiled.move_to_end(shape)
        if len(self._compiled) > MAX_COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return found

    def _store(self, compiled, blob: Path) -> None:
        # Blobs named with a thread count come from versions that compiled per thread count.
        stale = [
            *self.folder.glob(f"{self.precision}-t*.blob"),
            *sorted(self._blobs(), key=lambda path: path.stat().st_mtime)[: -MAX_COMPILED_SHAPES + 1],
        ]
        staged = blob.with_name(f"{blob.name}.{os.getpid()}.part")
        try:
            blob.parent.mkdir(parents=True, exist_ok=True)
            for old in stale:
                old.unlink(missing_ok=True)
            staged.write_bytes(compiled.export_model().getvalue())
            os.replace(staged, blob)
        except OSError:
            # A read-only cache only costs the next start a compile.
            staged.unlink(missing_ok=True)

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        compiled = self.compiled(tuple(batch.shape))
        outputs = compiled(batch.numpy())
        return [torch.from_numpy(outputs[port]) for port in compiled.outputs]
