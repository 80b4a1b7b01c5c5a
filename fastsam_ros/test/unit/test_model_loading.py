"""Weights and devices: clear errors instead of tracebacks."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
import torch

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import (
    RuntimeChoice,
    bundled_weights_path,
    load_model,
    resolve_device,
    resolve_weights,
)
from fastsam_ros.core.backends.registry import LoadRequest, runtime_plan, unavailable_runtimes


def test_default_weights_are_bundled_offline(loaded_model):
    path = bundled_weights_path("yolo11n-seg.pt")
    assert path is not None and path.stat().st_size == 6_182_636
    assert loaded_model.source == str(path)
    assert loaded_model.has_classes and len(loaded_model.class_names) == 80


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(missing), "cpu")
    assert str(refused.value) == f"model weights not found: '{missing}' is not a readable file"


def _refusal(model: str) -> str:
    with pytest.raises(ModelLoadError) as refused:
        resolve_weights(model)
    return str(refused.value)


def test_weights_are_a_file_here_a_bundled_file_or_a_pt_name_to_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _refusal("") == "parameter 'model' is empty: give a weights path or a model name"
    (tmp_path / "mine.pt").write_bytes(b"weights")
    assert resolve_weights("mine.pt") == "mine.pt"
    assert resolve_weights("~/mine.pt") == str(tmp_path / "mine.pt"), "~ is the user's home"
    assert resolve_weights("yolo11n-seg.pt") == str(bundled_weights_path("yolo11n-seg.pt"))
    assert resolve_weights("FastSAM-s.pt") == "FastSAM-s.pt", "a bare .pt name is ultralytics' to download"
    assert _refusal("FastSAM-s") == "model 'FastSAM-s' is neither a file nor a .pt model name ultralytics can download"
    (tmp_path / "folder.pt").mkdir()
    assert _refusal("folder.pt") == "model weights not found: 'folder.pt' is not a readable file", (
        "a folder of that name is not downloaded over"
    )


@pytest.mark.parametrize(
    ("model", "reason"),
    [("x" * 300 + ".pt", "File name too long"), ("~no_such_user_here/weights.pt", "Could not determine home")],
)
def test_weights_that_cannot_be_looked_up_are_a_clear_error(model, reason):
    with pytest.raises(ModelLoadError) as refused:
        load_model(model, "cpu")
    assert str(refused.value).startswith(f"model weights not found: '{model}' cannot be looked up: ")
    assert reason in str(refused.value)


def test_corrupt_weights_file(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(corrupt), "cpu")
    reason = str(refused.value).removeprefix(f"could not load model '{corrupt}' ({corrupt}): ")
    assert reason != str(refused.value) and reason.strip() == reason and "\n" not in reason
    assert reason == str(refused.value.__cause__).strip().splitlines()[0], "the first line of ultralytics' reason"


def test_a_checkpoint_of_another_task_or_another_format_is_refused(tmp_path, loaded_model):
    checkpoint = torch.load(loaded_model.source, weights_only=False)
    checkpoint["model"].task = "detect"
    detector = tmp_path / "detector.pt"
    torch.save(checkpoint, detector)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(detector), "cpu")
    assert str(refused.value) == f"model '{detector}' is a 'detect' model; a segmentation model is required"
    other_format = tmp_path / "weights.safetensors"
    other_format.write_bytes(b"\0" * 64)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(other_format), "cpu")
    assert str(refused.value) == f"could not load model '{other_format}' ({other_format}): not a PyTorch checkpoint"


def test_an_export_ultralytics_cannot_open_is_refused_naming_the_device(tmp_path):
    broken = tmp_path / "broken.torchscript"
    broken.write_bytes(b"not a TorchScript archive" * 10)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(broken), "cpu", runtime="auto")
    message = str(refused.value)
    assert message.startswith(f"could not place model '{broken}' on cpu: ") and len(message) > len(str(broken)) + 30


class _EndsEarly:
    """Unpickles by calling ``next`` on an empty iterator: a load error without a message."""

    def __reduce__(self):
        return (next, (iter([]),))


def test_weights_whose_loading_fails_without_a_message_are_refused_by_the_error_type(tmp_path):
    weights = tmp_path / "ends-early.pt"
    torch.save({"model": _EndsEarly()}, weights)
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(weights), "cpu")
    assert str(refused.value) == f"could not load model '{weights}' ({weights}): StopIteration"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on machines without CUDA")
def test_cuda_without_gpu_is_an_error(loaded_model, tmp_path):
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        resolve_device("cuda:0")
    onnx_file = tmp_path / "weights.onnx"
    onnx_file.write_bytes(b"checked after the device")
    for weights in (loaded_model.source, str(onnx_file)):
        with pytest.raises(ModelLoadError, match=r"^device 'cuda:0' was requested but CUDA is not available"):
            load_model(weights, "cuda:0")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "reason"),
    [
        ("tpu", "device 'tpu' is not a torch device name (Expected one of cpu, cuda, "),
        ("cuda:x", "device 'cuda:x' is not a torch device name (Invalid device string: 'cuda:x')"),
        ("meta", "device 'meta' is not supported: use auto, cpu or cuda:N"),
        ("mps", "device 'mps' is not supported: use auto, cpu or cuda:N"),
    ],
)
def test_unknown_device_is_an_error(device, reason):
    with pytest.raises(ModelLoadError) as refused:
        resolve_device(device)
    assert str(refused.value).startswith(reason), str(refused.value)
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("cpu:0") == torch.device("cpu:0")


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
    metadata = {"config.txt": ""}
    module = torch.jit.load(exported, _extra_files=metadata)
    detector = tmp_path / "detector.torchscript"
    as_detector = {**json.loads(metadata["config.txt"]), "task": "detect"}
    torch.jit.save(module, detector, _extra_files={"config.txt": json.dumps(as_detector)})
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(detector), "cpu", runtime="auto")
    assert str(refused.value) == f"model '{detector}' is a 'detect' model; a segmentation model is required"


def _request(weights: str, device: str = "cpu") -> LoadRequest:
    return LoadRequest(weights, weights, torch.device(device), False, "auto", (0,))


def test_each_runtime_says_why_it_cannot_run_here(loaded_model, tmp_path, monkeypatch):
    local = loaded_model.source
    assert unavailable_runtimes(_request(local)) == {}, "every runtime runs local .pt weights on the CPU here"
    on_gpu = unavailable_runtimes(_request(local, "cuda:0"))
    assert on_gpu == {
        "openvino": "runtime 'openvino' runs on the CPU only; use runtime 'torch' on cuda:0",
        "onnxruntime": "runtime 'onnxruntime' runs on the CPU only; use runtime 'torch' on cuda:0",
    }
    assert unavailable_runtimes(_request("FastSAM-s.pt")) == {
        "openvino": "model 'FastSAM-s.pt' is not a local file; runtime 'openvino' exports local .pt files",
        "onnxruntime": "model 'FastSAM-s.pt' is not a local file; runtime 'onnxruntime' exports local .pt files",
    }
    assert set(unavailable_runtimes(_request(str(tmp_path / "weights.onnx")))) == {"torch"}
    assert set(unavailable_runtimes(_request(str(tmp_path / "weights.engine")))) == {"openvino", "onnxruntime"}
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when not installed
    assert unavailable_runtimes(_request(local)) == {
        "onnxruntime": "onnxruntime is not installed; runtime 'onnxruntime' needs the package onnxruntime: "
        "pip install it"
    }
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    reasons = unavailable_runtimes(_request(local))
    assert reasons["openvino"] == "openvino is installed but its exporter needs onnxslim: pip install them"
    assert unavailable_runtimes(_request(str(tmp_path / "weights.onnx"))).keys() == {"torch", "onnxruntime"}, (
        "an ONNX file needs no exporter"
    )


def test_auto_tries_the_runtimes_that_can_run_here_fastest_first_and_says_why_it_passed_others_over(loaded_model):
    assert runtime_plan("auto", _request(loaded_model.source)) == (["openvino", "onnxruntime", "torch"], {})
    candidates, passed_over = runtime_plan("auto", _request(loaded_model.source, "cuda:0"))
    assert candidates == ["torch"] and list(passed_over) == ["openvino", "onnxruntime"]
    assert runtime_plan("onnxruntime", _request(loaded_model.source)) == (["onnxruntime"], {})
    with pytest.raises(ModelLoadError, match="runs on the CPU only"):
        runtime_plan("openvino", _request(loaded_model.source, "cuda:0"))
    cpu_only = "runs on the CPU only; use runtime 'torch' on cuda:0"
    with pytest.raises(ModelLoadError) as nowhere:
        runtime_plan("auto", _request("weights.onnx", "cuda:0"))
    assert str(nowhere.value) == (
        f"no runtime can run 'weights.onnx' here: runtime 'openvino' {cpu_only}; runtime 'onnxruntime' {cpu_only}; "
        "'weights.onnx' is an ONNX file: use runtime 'openvino', 'onnxruntime' or 'auto'"
    )
    with pytest.raises(ModelLoadError, match=r"^runtime 'tensorrt' is not one of auto, openvino, onnxruntime, torch$"):
        runtime_plan("tensorrt", _request(loaded_model.source))


def test_a_load_by_default_runs_torch_on_the_gpu_if_there_is_one(loaded_model, monkeypatch):
    monkeypatch.delenv("YOLO_VERBOSE", raising=False)
    monkeypatch.delenv("YOLO_AUTOINSTALL", raising=False)
    loaded = load_model(loaded_model.source)
    assert loaded.device == resolve_device("auto") and loaded.runtime == "torch"
    assert (os.environ["YOLO_VERBOSE"], os.environ["YOLO_AUTOINSTALL"]) == ("False", "False"), (
        "ultralytics, imported on the first load, neither logs each frame nor installs packages at run time"
    )
    monkeypatch.setenv("YOLO_AUTOINSTALL", "True")
    load_model(loaded_model.source)
    assert os.environ["YOLO_AUTOINSTALL"] == "True", "a setting of the user's own is kept"


def test_what_was_chosen_is_one_frozen_record(loaded_model):
    assert loaded_model.choice_record == RuntimeChoice(requested="torch", runtime="torch", precision="f32")
    assert (loaded_model.runtime, loaded_model.precision, loaded_model.half) == ("torch", "f32", False)
    assert loaded_model.choice == "" and loaded_model.fallback == "", "a named runtime has nothing to explain"
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded_model.choice_record.runtime = "openvino"
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded_model.backend = None
    record = RuntimeChoice(
        requested="auto",
        runtime="torch",
        precision="f32",
        passed_over=(("openvino", "openvino is not installed"),),
        failed=(("onnxruntime", "could not write the ONNX export"),),
    )
    assert record.summary == (
        "runtime auto chose torch (openvino is not installed; "
        "onnxruntime unavailable (could not write the ONNX export))"
    )
    assert record.fallback == "onnxruntime unavailable (could not write the ONNX export); using torch"
    two_failed = dataclasses.replace(record, failed=(("openvino", "no compile"), ("onnxruntime", "no export")))
    assert two_failed.fallback == "openvino unavailable (no compile); onnxruntime unavailable (no export); using torch"
    fastest = RuntimeChoice(
        requested="auto", runtime="openvino", precision="int8", precision_reason="guard passed", threads="2 threads"
    )
    assert fastest.summary == (
        "runtime auto chose openvino (the fastest CPU runtime installed); precision int8 (guard passed); 2 threads"
    )
    assert fastest.fallback == ""
    named = dataclasses.replace(fastest, requested="openvino", threads="")
    assert named.summary == "precision int8 (guard passed)", "a named runtime explains its precision only"
