"""Weights and devices: clear errors instead of tracebacks."""

from __future__ import annotations

import pytest
import torch

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import bundled_weights_path, load_model, resolve_device


def test_default_weights_are_bundled_offline(loaded_model):
    path = bundled_weights_path("yolo11n-seg.pt")
    assert path is not None and path.stat().st_size == 6_182_636
    assert loaded_model.source == str(path)
    assert loaded_model.has_classes and len(loaded_model.class_names) == 80


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(str(tmp_path / "nowhere" / "weights.pt"), "cpu")


def test_corrupt_weights_file(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_model(str(corrupt), "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on machines without CUDA")
def test_cuda_without_gpu_is_an_error():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


def test_unknown_device_is_an_error():
    with pytest.raises(ModelLoadError):
        resolve_device("tpu")


def test_other_exported_formats_run_through_ultralytics_autobackend(tmp_path, bus, engine):
    """A TorchScript export (the format testable without a GPU; TensorRT .engine files take the
    same path) loads under runtime auto, runs as torch and finds what the .pt weights find."""
    import shutil

    from ultralytics import YOLO

    from fastsam_ros.core.engine import SegmentationEngine

    weights = tmp_path / "yolo11n-seg.pt"
    shutil.copyfile(bundled_weights_path("yolo11n-seg.pt"), weights)
    exported = YOLO(str(weights)).export(format="torchscript", imgsz=640, verbose=False)
    loaded = load_model(exported, "cpu", runtime="auto")
    assert loaded.runtime == "torch" and not loaded.dynamic_shapes
    names = [i.class_name for i in SegmentationEngine(loaded).segment(bus).instances]
    expected = [i.class_name for i in engine.segment(bus).instances]
    # The export takes a square 640x640 input where the .pt network takes 640x480: a weak
    # detection may come and go, the objects stay.
    assert "bus" in names and names.count("person") >= 3 and set(names) <= set(expected)
    with pytest.raises(ModelLoadError, match="is an exported model: use runtime 'torch'"):
        load_model(exported, "cpu", runtime="onnxruntime")
