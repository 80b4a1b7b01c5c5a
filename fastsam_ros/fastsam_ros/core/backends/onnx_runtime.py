"""ONNX Runtime as the CPU inference runtime for the same network.

On the CPU, ONNX Runtime runs yolo11n-seg about 1.4x faster than PyTorch at the
node's usual input shape (docs/PERFORMANCE.md). The .pt weights are exported once with
ultralytics' exporter (dynamic input shape) into a cache directory keyed by the
weights' content and the ultralytics version, so later starts skip the export and a
read-only install still works.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import shutil
import warnings
from pathlib import Path

import torch

from fastsam_ros.core.backends.backend import LoadedNetwork, released_error
from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.torch_runtime import END_TO_END_TOP_K, nms_free_head
from fastsam_ros.core.backends.work_folder import work_folder

EXPORT_PACKAGES = ("onnx", "onnxslim")
"""What ultralytics' ONNX exporter needs; both CPU runtimes (ONNX Runtime, OpenVINO) start from its export."""


def cache_dir() -> Path:
    """$FASTSAM_ROS_CACHE, else $XDG_CACHE_HOME/fastsam_ros, else ~/.cache/fastsam_ros."""
    explicit = os.environ.get("FASTSAM_ROS_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastsam_ros"


def export_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in EXPORT_PACKAGES)


def onnx_available() -> bool:
    return export_available() and importlib.util.find_spec("onnxruntime") is not None


def unavailable_reason(onnx_file: bool) -> str:
    """Why runtime onnxruntime cannot run these weights here ('' when it can)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed; runtime 'onnxruntime' needs the package onnxruntime: pip install it"
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing and not onnx_file:
        return f"onnxruntime is installed but its exporter needs {', '.join(missing)}: pip install them"
    return ""


def export_path(source: Path) -> Path:
    """Where the ONNX export of these weights is cached: keyed by their content and the ultralytics version."""
    import ultralytics

    digest = hashlib.sha256(source.read_bytes() + ultralytics.__version__.encode()).hexdigest()[:16]
    return cache_dir() / f"{source.stem}-{digest}.onnx"


def exported_onnx(weights: str) -> Path:
    """An ONNX file of these weights: the file itself if it is one, else a cached export."""
    source = Path(weights)
    if source.suffix == ".onnx":
        return source
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelLoadError(f"the export to ONNX needs the packages {', '.join(missing)}: pip install them")
    target = export_path(source)
    if target.is_file():
        return target
    try:
        with work_folder(target.parent) as work:
            copy = work / source.name
            shutil.copyfile(source, copy)
            from ultralytics import YOLO

            network = YOLO(str(copy))
            head = nms_free_head(network.model)  # ultralytics' default exports a head that needs NMS
            with warnings.catch_warnings():
                # The trace fixes the NMS-free head's top k for any input: the engine pads to enough anchors.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                exported = network.export(format="onnx", dynamic=True, simplify=True, imgsz=640, verbose=False, **head)
            os.replace(exported, target)
    except OSError as error:
        raise ModelLoadError(f"could not write the ONNX export to {target.parent}: {error}") from error
    except Exception as error:  # the exporter raises many kinds
        raise ModelLoadError(f"could not export '{weights}' to ONNX: {error}") from error
    return target


def load(onnx_path: Path) -> LoadedNetwork:
    """The network on ONNX Runtime's CPU provider."""
    network = OnnxNetwork(onnx_path)
    return LoadedNetwork(
        backend=network,
        class_names=network.names,
        stride=max(network.stride, 32),
        dynamic_shapes=network.dynamic,
        precision="f32",
        min_anchors=END_TO_END_TOP_K if network.end2end else 0,
    )


def export_fields(metadata: dict[str, str], path: Path) -> tuple[dict[int, str], int, bool]:
    """Class names, stride and whether the head is NMS-free, from an ONNX export's metadata as
    ultralytics writes it; ModelLoadError for a file that is not a segmentation export of it."""
    if metadata.get("task", "segment") != "segment":
        raise ModelLoadError(f"'{path}' is a '{metadata['task']}' model; a segmentation model is required")
    try:
        names = ast.literal_eval(metadata.get("names", "{0: 'object'}"))
        fields = {int(k): str(v) for k, v in names.items()}, int(metadata.get("stride", 32))
    except (ValueError, TypeError, SyntaxError, AttributeError, MemoryError, RecursionError) as error:
        raise ModelLoadError(f"'{path}' has metadata that is not an ultralytics export's: {error}") from None
    return (*fields, metadata.get("end2end", "False") == "True")


class OnnxNetwork:
    """The network on ONNX Runtime (a ``Backend``); its threads are ONNX Runtime's own choice."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Idle worker threads would otherwise spin after each run and take the CPU from
        # mask decoding, publishing and DDS on small machines.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"ONNX Runtime could not load '{path}': {error}") from error
        self.names, self.stride, self.end2end = export_fields(self.session.get_modelmeta().custom_metadata_map, path)
        self._input = self.session.get_inputs()[0].name
        self.dynamic = isinstance(self.session.get_inputs()[0].shape[2], str)

    @property
    def inference_threads(self) -> None:
        return None

    def follow_load(self, queued: bool) -> None:
        """ONNX Runtime keeps its thread count."""

    def forget_shape_caches(self) -> None:
        """Nothing to forget: ONNX Runtime never runs under CUDA graph capture."""

    def release(self) -> None:
        self.session = None

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        if self.session is None:
            raise released_error()
        outputs = self.session.run(None, {self._input: batch.numpy()})
        return [torch.from_numpy(output) for output in outputs]
