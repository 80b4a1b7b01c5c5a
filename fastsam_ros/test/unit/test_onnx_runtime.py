"""The ONNX Runtime path: the same network exported once, same detections as torch."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import load_model, resolve_runtime
from fastsam_ros.core.backends.onnx_runtime import (
    cache_dir,
    export_fields,
    export_path,
    exported_onnx,
    unavailable_reason,
)
from fastsam_ros.core.engine import SegmentationEngine


@pytest.fixture(scope="module")
def onnx_engine():
    return SegmentationEngine(load_model("yolo11n-seg.pt", "cpu", runtime="onnxruntime"))


def test_onnx_engine_finds_what_the_torch_engine_finds(onnx_engine, engine, bus, zidane):
    assert onnx_engine.loaded.runtime == "onnxruntime" and engine.loaded.runtime == "torch"
    assert onnx_engine.loaded.precision == "f32", "ONNX Runtime runs the export as exported"
    assert onnx_engine.class_names == engine.class_names
    for image in (bus, zidane):
        ours, reference = onnx_engine.segment(image), engine.segment(image)
        assert [i.class_name for i in ours.instances] == [i.class_name for i in reference.instances]
        boxes = torch.tensor([i.box for i in ours.instances])
        assert torch.allclose(boxes, torch.tensor([i.box for i in reference.instances]), atol=0.1)
        for mine, theirs in zip(ours.full_masks(), reference.full_masks(), strict=True):
            assert (mine & theirs).sum() / (mine | theirs).sum() > 0.98


def test_onnx_engine_batches_frames_of_any_size(onnx_engine, bus, zidane):
    batch = onnx_engine.segment_batch([bus, zidane])
    assert [(m.height, m.width) for m in batch] == [(1080, 810), (720, 1280)]
    assert "bus" in {i.class_name for i in batch[0].instances}
    assert "person" in {i.class_name for i in batch[1].instances}


def test_export_is_cached_and_reused(onnx_engine):
    [exported] = cache_dir().glob("yolo11n-seg-*.onnx")
    before = exported.stat().st_mtime_ns
    again = load_model("yolo11n-seg.pt", "cpu", runtime="onnxruntime")
    assert exported.stat().st_mtime_ns == before, "no second export"
    onnx_file = load_model(str(exported), "auto", runtime="auto")
    assert (onnx_file.runtime, onnx_file.device.type) == ("openvino", "cpu")
    assert onnx_file.class_names == again.class_names


def test_auto_picks_a_cpu_runtime_on_the_cpu_and_torch_on_a_gpu(loaded_model):
    weights = loaded_model.source
    assert resolve_runtime("auto", torch.device("cpu"), weights) == "openvino"
    assert resolve_runtime("auto", torch.device("cuda:0"), weights) == "torch"
    assert resolve_runtime("auto", torch.device("cpu"), "FastSAM-s.pt") == "torch", "downloads go through torch"


@pytest.mark.parametrize(
    ("runtime", "device", "weights", "reason"),
    [
        ("onnxruntime", "cuda:0", "weights.pt", "CPU only"),
        ("openvino", "cuda:0", "weights.pt", "CPU only"),
        ("torch", "cpu", "weights.onnx", "ONNX file"),
        ("tensorrt", "cpu", "weights.pt", "not one of"),
        ("openvino", "cpu", "FastSAM-s.pt", "^model 'FastSAM-s.pt' is not a local file; runtime 'openvino' exports"),
    ],
)
def test_impossible_runtime_choices_are_refused(runtime, device, weights, reason):
    with pytest.raises(ModelLoadError, match=reason):
        resolve_runtime(runtime, torch.device(device), weights)


def test_corrupt_weights_are_refused_before_any_export(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 100)
    named = re.escape(str(corrupt))
    with pytest.raises(ModelLoadError, match=rf"^could not load model '{named}' \({named}\): "):
        load_model(str(corrupt), "cpu", runtime="onnxruntime")
    assert not list(cache_dir().glob("corrupt-*"))


def test_idle_onnx_runtime_threads_sleep_instead_of_spinning(onnx_engine):
    options = onnx_engine.loaded.backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0", (
        "spinning workers would take the CPU from mask decoding, publishing and DDS"
    )


def test_blank_frame_gives_no_instances(onnx_engine):
    assert len(onnx_engine.segment(np.zeros((480, 640, 3), np.uint8))) == 0


def test_an_unwritable_cache_is_a_clear_error(monkeypatch, tmp_path, loaded_model):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("FASTSAM_ROS_CACHE", str(blocker))
    with pytest.raises(ModelLoadError, match="could not write the ONNX export"):
        load_model(loaded_model.source, "cpu", runtime="onnxruntime")
    fallen_back = load_model(loaded_model.source, "cpu", runtime="auto")
    assert fallen_back.runtime == "torch" and "could not write the ONNX export" in fallen_back.fallback


def test_the_cache_is_fastsam_ros_cache_else_the_xdg_cache_else_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSAM_ROS_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("FASTSAM_ROS_CACHE", "")
    assert cache_dir() == tmp_path / "xdg" / "fastsam_ros", "an empty setting is no setting"
    monkeypatch.delenv("FASTSAM_ROS_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "fastsam_ros"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "fastsam_ros"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "fastsam_ros"


def test_an_export_is_cached_under_the_digest_of_the_weights_and_of_the_ultralytics_version(monkeypatch, tmp_path):
    import ultralytics

    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"first weights")
    first = export_path(weights)
    assert first.parent == cache_dir() and re.fullmatch(r"weights-[0-9a-f]{16}\.onnx", first.name), first.name
    assert export_path(weights) == first
    weights.write_bytes(b"other weights")
    assert export_path(weights) != first, "new weights are exported again"
    weights.write_bytes(b"first weights")
    monkeypatch.setattr(ultralytics, "__version__", "0.0.1")
    assert export_path(weights) != first, "so is the same file under another ultralytics"


def test_onnx_runtime_names_every_package_its_exporter_lacks(monkeypatch, loaded_model):
    assert unavailable_reason(onnx_file=False) == ""
    monkeypatch.setitem(sys.modules, "onnx", None)  # as when not installed
    monkeypatch.setitem(sys.modules, "onnxslim", None)
    assert unavailable_reason(onnx_file=False) == (
        "onnxruntime is installed but its exporter needs onnx, onnxslim: pip install them"
    )
    with pytest.raises(ModelLoadError) as refused:
        exported_onnx(loaded_model.source)
    assert str(refused.value) == "the export to ONNX needs the packages onnx, onnxslim: pip install them"
    assert unavailable_reason(onnx_file=True) == "", "an ONNX file needs no exporter"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert unavailable_reason(onnx_file=True).startswith("onnxruntime is not installed")


def test_the_cache_folder_is_made_with_its_parents_and_a_failed_export_leaves_nothing_in_it(monkeypatch, tmp_path):
    cache = tmp_path / "several" / "levels" / "deep"
    monkeypatch.setenv("FASTSAM_ROS_CACHE", str(cache))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(ModelLoadError) as refused:
        exported_onnx(str(corrupt))
    assert str(refused.value).startswith(f"could not export '{corrupt}' to ONNX: "), str(refused.value)
    assert cache.is_dir() and list(cache.iterdir()) == []


def test_an_exports_metadata_gives_its_classes_stride_and_head_and_refuses_another_task(tmp_path):
    path = tmp_path / "weights.onnx"
    assert export_fields({}, path) == ({0: "object"}, 32, False), "an export without ultralytics' metadata"
    written = {"task": "segment", "names": "{0: 'person', 1: 'bicycle'}", "stride": "16", "end2end": "True"}
    assert export_fields(written, path) == ({0: "person", 1: "bicycle"}, 16, True)
    assert export_fields({**written, "end2end": "False"}, path)[2] is False
    with pytest.raises(ModelLoadError) as refused:
        export_fields({**written, "task": "detect"}, path)
    assert str(refused.value) == f"'{path}' is a 'detect' model; a segmentation model is required"
    for names in ("['person']", "{0: 'person'", "__import__('os')", "{'a': 'person'}"):
        with pytest.raises(ModelLoadError) as refused:
            export_fields({**written, "names": names}, path)
        assert str(refused.value).startswith(f"'{path}' has metadata that is not an ultralytics export's: ")


def test_a_released_onnx_network_refuses_to_run(onnx_engine, bus):
    """onnx_engine is asked for so that the module's one export is made before this second load."""
    engine = SegmentationEngine(load_model("yolo11n-seg.pt", "cpu", runtime="onnxruntime"))
    assert len(engine.segment(bus)) > 0
    engine.release()
    with pytest.raises(RuntimeError, match=r"^the network was released$"):
        engine.segment(bus)
