"""YOLO26-seg, whose head picks its own detections (no NMS), on every runtime.

Its trained weights cannot be downloaded here, so the network is built from ultralytics'
model file (yolo26-seg.yaml, the nano scale) with seeded random weights. Untouched, such a
network answers every pixel alike (its activations shrink to nothing through the layers), so
the fixture recalibrates its batch norms on the two photos (outputs then follow the image) and
lowers its class bias until a few dozen detections pass conf 0.25 on the bus photo. These tests
check the plumbing against ultralytics' own predict and across runtimes; they say nothing of
YOLO26's quality.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.backends.openvino_graph import gathers_instead_of_slices
from fastsam_ros.core.backends.torch_runtime import END_TO_END_TOP_K, nms_free_head
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine, anchor_count, split_network_outputs
from fastsam_ros.core.int8_calibration import network_inputs
from fastsam_ros.core.letterbox import letterbox_cpu, letterbox_geometry
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.prompts import select_by_box, select_by_points
from test_support.fastsam_prompt import fastsam_prompt_oracle

NORM_SCALE = 0.3
"""Batch norm gain after recalibration: small activations keep float32 noise small through the attention layers."""
CLASS_BIAS = -8.0
"""Class logit bias: 44 detections above conf 0.25 on the bus photo."""
CONF = 0.25
SETTINGS = EngineSettings(conf=CONF, imgsz=640, retina_masks=True)


def _network_batch(images: list[np.ndarray]) -> torch.Tensor:
    """The images as a (N, 3, 640, 640) RGB float batch, letterboxed as the engine does."""
    boxed = [letterbox_cpu(image, letterbox_geometry(image.shape[:2], 640, False, 32)) for image in images]
    return torch.from_numpy(np.stack(boxed)[..., ::-1].transpose(0, 3, 1, 2).copy()).float() / 255


def _random_network(model_file: str, images: list[np.ndarray]):
    """ultralytics' network of this model file with seeded weights and batch norms calibrated on the images."""
    from ultralytics import YOLO

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = YOLO(model_file)
    norms = [layer for layer in model.model.modules() if isinstance(layer, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # one batch sets the statistics
        norm.weight.data.fill_(NORM_SCALE)
    model.model.train()
    with torch.no_grad():
        model.model(_network_batch(images))
    model.model.eval()
    return model


@contextlib.contextmanager
def _ultralytics_threads() -> Iterator[None]:
    """torch on the thread count ultralytics' predict sets: its CPU kernels round differently with another."""
    from ultralytics.utils import NUM_THREADS

    saved = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def yolo26_weights(tmp_path_factory, bus, zidane) -> str:
    model = _random_network("yolo26n-seg.yaml", [bus, zidane])
    head = model.model.model[-1]
    for classes in (*head.cv3, *head.one2one_cv3):
        classes[-1].bias.data.fill_(CLASS_BIAS)
    path = tmp_path_factory.mktemp("yolo26") / "yolo26n-seg-random.pt"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def torch_engine(yolo26_weights) -> SegmentationEngine:
    return SegmentationEngine(load_model(yolo26_weights, "cpu", runtime="torch"), SETTINGS)


@pytest.fixture(scope="module")
def bus_yolo26(torch_engine, bus) -> MaskSet:
    with _ultralytics_threads():
        return torch_engine.segment(bus)


@pytest.fixture(scope="module")
def bus_reference(yolo26_weights, bus):
    """ultralytics' own predict with the NMS-free head (nms=False) and source-resolution masks, down to the
    engine's candidate threshold."""
    from ultralytics import YOLO

    with _ultralytics_threads():
        return YOLO(yolo26_weights).predict(
            bus, conf=SETTINGS.candidate_conf, imgsz=640, nms=False, retina_masks=True, device="cpu", verbose=False
        )[0]


def _boxes(masks: MaskSet) -> torch.Tensor:
    return torch.tensor([instance.box for instance in masks.instances])


def _raw_outputs(engine: SegmentationEngine) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return split_network_outputs(engine.loaded.backend(torch.zeros(1, 3, 640, 480)))


def test_the_torch_runtime_runs_the_head_that_needs_no_nms(torch_engine):
    assert torch_engine.loaded.backend.end2end
    detections, prototypes = _raw_outputs(torch_engine)
    assert detections.shape == (1, END_TO_END_TOP_K, 6 + 32)  # x1, y1, x2, y2, score, class, coefficients
    assert prototypes.shape == (1, 32, 160, 120)


def test_only_a_network_with_a_one_to_one_head_is_run_without_nms(yolo26_weights, loaded_model):
    from ultralytics import YOLO

    assert nms_free_head(YOLO(yolo26_weights).model) == {
        "nms": False,
        "max_det": END_TO_END_TOP_K,
        "agnostic_nms": False,
    }
    assert nms_free_head(YOLO(loaded_model.source).model) == {}, "YOLO11 runs ultralytics' NMS"


def test_boxes_scores_and_classes_equal_ultralytics_nms_free_predict(bus_yolo26, bus_reference):
    count = len(bus_yolo26)
    reference = bus_reference.boxes[:count]
    assert count >= 30 and reference.conf.min() >= CONF > bus_reference.boxes.conf[count]
    assert torch.allclose(_boxes(bus_yolo26), reference.xyxy, atol=1e-3)
    assert [i.class_id for i in bus_yolo26.instances] == reference.cls.int().tolist()
    assert np.allclose([i.score for i in bus_yolo26.instances], reference.conf.numpy(), atol=1e-5)


def test_masks_match_ultralytics_source_resolution_masks(bus_yolo26, bus_reference):
    reference = bus_reference.masks.data[: len(bus_yolo26)].bool().numpy()
    for mine, theirs in zip(bus_yolo26.full_masks(), reference, strict=True):
        assert (mine & theirs).sum() / (mine | theirs).sum() > 0.95


def test_detections_between_candidate_conf_and_conf_are_the_candidates(bus_yolo26, bus_reference):
    assert len(bus_yolo26.candidates) > 10
    assert all(SETTINGS.candidate_conf < i.score < CONF for i in bus_yolo26.candidates)
    both = torch.cat((_boxes(bus_yolo26), torch.tensor([i.box for i in bus_yolo26.candidates])))
    assert torch.allclose(both, bus_reference.boxes.xyxy, atol=1e-3)


def test_max_det_keeps_the_first_detections_of_the_head(torch_engine, bus):
    everything = torch_engine.segment(bus)
    capped = SegmentationEngine(torch_engine.loaded, EngineSettings(conf=CONF, max_det=7)).segment(bus)
    assert len(everything) > 7 and len(capped) == 7 and not capped.candidates
    assert torch.equal(_boxes(capped), _boxes(everything)[:7])


def _matches(expected: MaskSet, found: MaskSet) -> list[int]:
    """For each expected instance, the found instance of its class with the nearest box."""
    matches = []
    for instance in expected.instances:
        same_class = [n for n, other in enumerate(found.instances) if other.class_id == instance.class_id]
        matches.append(min(same_class, key=lambda n: np.abs(np.subtract(found[n].box, instance.box)).max()))
    return matches


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_cpu_runtimes_export_the_head_and_find_the_torch_instances(yolo26_weights, bus_yolo26, bus, runtime):
    loaded = load_model(yolo26_weights, "cpu", runtime=runtime, precision="f32")
    engine = SegmentationEngine(loaded, SETTINGS)
    assert loaded.backend.end2end and loaded.min_anchors == END_TO_END_TOP_K
    assert _raw_outputs(engine)[0].shape == (1, END_TO_END_TOP_K, 6 + 32)
    found = engine.segment(bus)
    matches = _matches(bus_yolo26, found)
    assert sorted(matches) == list(range(len(found))) == list(range(len(bus_yolo26)))
    masks = found.full_masks()
    for instance, mask, match in zip(bus_yolo26.instances, bus_yolo26.full_masks(), matches, strict=True):
        assert np.abs(np.subtract(found[match].box, instance.box)).max() < 0.1
        assert abs(found[match].score - instance.score) < 1e-3
        assert (mask & masks[match]).sum() / (mask | masks[match]).sum() > 0.98


def test_the_device_path_run_on_the_cpu_finds_the_cpu_path_instances(torch_engine, bus):
    """The GPU's pre- and postprocessing (torch letterbox, all masks at once) on YOLO26's output, less the
    CUDA graph; on a frame the letterbox halves, where both letterboxes give the same pixels. The random
    network scores this frame far lower than the photo it was calibrated on, hence the low conf."""
    import cv2

    frame = cv2.resize(bus, (960, 1280), interpolation=cv2.INTER_LINEAR)
    settings = EngineSettings(conf=0.005)
    expected = SegmentationEngine(torch_engine.loaded, settings).segment(frame)
    found = SegmentationEngine(torch_engine.loaded, settings, pipeline="torch").segment(frame)
    assert len(found) == len(expected) >= 30
    assert torch.allclose(_boxes(found), _boxes(expected), atol=1e-3)
    for mine, theirs in zip(found.full_masks(), expected.full_masks(), strict=True):
        assert (mine & theirs).sum() / (mine | theirs).sum() > 0.99


def test_a_thin_frame_gives_the_exported_head_the_anchors_it_picks_from(yolo26_weights, bus):
    """At imgsz 320 a 30-row strip pads to 320x32: 210 anchors, fewer than the 300 the export picks."""
    loaded = load_model(yolo26_weights, "cpu", runtime="onnxruntime")
    strip = np.ascontiguousarray(bus[400:430])
    result = SegmentationEngine(loaded, EngineSettings(imgsz=320, conf=0.01)).segment(strip)
    assert (result.height, result.width) == strip.shape[:2]


def test_anchors_are_one_per_cell_of_each_detection_level():
    assert anchor_count((640, 640)) == 80 * 80 + 40 * 40 + 20 * 20
    assert anchor_count((32, 320)) == 4 * 40 + 2 * 20 + 1 * 10


def test_fastsam_export_compiles_the_head_for_openvino(yolo26_weights, capsys):
    from fastsam_ros.tools.export import main

    assert main(["--model", yolo26_weights, "--precision", "f32"]) == 0
    assert main(["--model", yolo26_weights, "--precision", "f32", "--threads", "2"]) == 0
    assert capsys.readouterr().out == (
        f"compiled {yolo26_weights} for OpenVINO f32: "
        "precision f32 (requested); OpenVINO chooses the inference threads\n"
        f"compiled {yolo26_weights} for OpenVINO f32: precision f32 (requested); 2 inference threads\n"
    )


def test_a_gather_elements_after_a_slice_gathers_the_same_elements_after_the_rewrite():
    import openvino as ov
    from openvino import opset8

    data = opset8.parameter([2, 50, 12], np.float32)
    indices = opset8.parameter([2, 7, 3], np.int64)
    stop_at_run_time = opset8.parameter([1], np.int64)
    gathered = [
        opset8.gather_elements(
            opset8.slice(data, np.array([start]), np.array([stop]), np.array([step]), axes), indices, 1
        )
        for start, stop, step, axes in ((0, 3, 1, np.array([2])), (4, 10, 2, np.array([-1])))
    ]
    # Slices that one Gather cannot replace are left as they are, and the constant one-axis ones
    # are rewritten all the same (OpenVINO refuses the one from 0 otherwise). As the last results
    # they come first in the graph's order, which the rewrite follows. One ends where the
    # run time says:
    gathered.append(
        opset8.gather_elements(
            opset8.slice(data, np.array([5]), stop_at_run_time, np.array([1]), np.array([2])), indices, 1
        )
    )
    # the other slices two axes:
    indices_in_window = opset8.parameter([2, 7, 3], np.int64)
    window = opset8.slice(data, np.array([10, 1]), np.array([40, 4]), np.array([1, 1]), np.array([1, 2]))
    gathered.append(opset8.gather_elements(window, indices_in_window, 1))
    rewritten = gathers_instead_of_slices(ov.Model(gathered, [data, indices, stop_at_run_time, indices_in_window]))
    assert [op.get_type_name() for op in rewritten.get_ordered_ops()].count("Slice") == 2
    compiled = ov.Core().compile_model(rewritten, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    values = np.random.default_rng(3).random((2, 50, 12), dtype=np.float32)
    chosen = np.random.default_rng(4).integers(0, 50, (2, 7, 3))
    chosen_in_window = np.random.default_rng(5).integers(0, 30, (2, 7, 3))
    outputs = compiled([values, chosen, np.array([8]), chosen_in_window])
    assert np.array_equal(outputs[0], np.take_along_axis(values[..., 0:3], chosen, 1))
    assert np.array_equal(outputs[1], np.take_along_axis(values[..., 4:10:2], chosen, 1))
    assert np.array_equal(outputs[2], np.take_along_axis(values[..., 5:8], chosen, 1))
    assert np.array_equal(outputs[3], np.take_along_axis(values[:, 10:40, 1:4], chosen_in_window, 1))


def test_point_and_box_prompts_select_among_yolo26_masks_as_fastsam_prompt_does(bus_yolo26, bus):
    fastsam_prompt = fastsam_prompt_oracle(bus_yolo26, bus)
    rng = np.random.default_rng(5)
    selected = 0
    for _ in range(15):
        points = [(float(rng.integers(0, bus.shape[1])), float(rng.integers(0, bus.shape[0]))) for _ in range(2)]
        labels = [int(v) for v in rng.integers(0, 2, 2)]
        chosen = select_by_points(bus_yolo26, points, labels)
        assert chosen == fastsam_prompt(points=points, labels=labels), (points, labels)
        selected += len(chosen)
    assert selected > 0
    for instance in bus_yolo26.instances[:15]:
        box = list(instance.box)
        assert [select_by_box(bus_yolo26, box).index] == fastsam_prompt(bboxes=[box]), box


def test_yoloe26_runs_the_vocabulary_stored_in_its_checkpoint(tmp_path, bus):
    """YOLOE-26 (open vocabulary) runs the class names and embeddings stored in its checkpoint. Naming
    classes takes ultralytics' CLIP text encoder, which cannot be installed offline: here the stored
    embeddings are random."""
    from ultralytics import YOLO

    model = _random_network("yoloe-26n-seg.yaml", [bus])
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model.set_classes(["person", "bus", "car"], torch.randn(1, 3, model.model.model[-1].embed))
    path = tmp_path / "yoloe-26n-seg-random.pt"
    model.save(path)
    engine = SegmentationEngine(load_model(str(path), "cpu", runtime="torch"), EngineSettings(conf=0.01))
    assert engine.loaded.backend.end2end and engine.class_names == {0: "person", 1: "bus", 2: "car"}
    assert _raw_outputs(engine)[0].shape == (1, END_TO_END_TOP_K, 6 + 32)
    with _ultralytics_threads():
        found = engine.segment(bus)
        reference = YOLO(str(path)).predict(bus, conf=0.01, imgsz=640, nms=False, retina_masks=True, verbose=False)[0]
    assert len(found) == len(reference.boxes) >= 10
    assert torch.allclose(_boxes(found), reference.boxes.xyxy, atol=1e-3)
    assert [i.class_name for i in found.instances] == [reference.names[int(c)] for c in reference.boxes.cls]


def test_int8_calibration_records_the_inputs_of_the_nms_free_head(torch_engine, bus, zidane):
    """The recording the calibration runs the engine through keeps the head's kind (no NMS after it)."""
    inputs = network_inputs(torch_engine.loaded, [bus, zidane])
    assert [batch.shape[:2] for batch in inputs] == [(1, 3), (1, 3)] and inputs[0].shape != inputs[1].shape
    assert np.array_equal(inputs[0], network_inputs(torch_engine.loaded, [bus])[0]), "the same frame, the same input"
