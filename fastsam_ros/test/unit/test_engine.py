"""Stage 1 with the real yolo11n-seg weights on real photos."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch

from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.backends.torch_runtime import TorchNetwork
from fastsam_ros.core.engine import SegmentationEngine, StageTimes, anchor_count


def _ultralytics_result(loaded_model, image, retina_masks=False):
    from ultralytics import YOLO

    return YOLO(loaded_model.source).predict(
        image, conf=0.25, iou=0.7, imgsz=640, device="cpu", retina_masks=retina_masks, verbose=False
    )[0]


def test_bus_scene_finds_the_bus_and_people(bus_masks):
    names = [instance.class_name for instance in bus_masks.instances]
    assert "bus" in names
    assert names.count("person") >= 3
    assert (bus_masks.height, bus_masks.width) == (1080, 810)


def test_boxes_scores_and_classes_equal_raw_ultralytics(loaded_model, bus_masks, bus):
    reference = _ultralytics_result(loaded_model, bus)
    ours = torch.tensor([instance.box for instance in bus_masks.instances])
    assert len(bus_masks) == len(reference.boxes)
    assert torch.allclose(ours, reference.boxes.xyxy, atol=1e-3)
    assert [i.class_id for i in bus_masks.instances] == reference.boxes.cls.int().tolist()
    assert np.allclose([i.score for i in bus_masks.instances], reference.boxes.conf.numpy(), atol=1e-5)


def test_masks_match_ultralytics_source_resolution_masks(loaded_model, bus_masks, bus):
    reference = _ultralytics_result(loaded_model, bus, retina_masks=True).masks.data.bool().numpy()
    ours = bus_masks.full_masks()
    for mine, theirs, instance in zip(ours, reference, bus_masks.instances, strict=True):
        iou = (mine & theirs).sum() / (mine | theirs).sum()
        assert iou > 0.93, f"{instance.class_name}: IoU {iou:.3f} with ultralytics' mask"


@pytest.mark.parametrize("shape", [(481, 640), (640, 483)])
def test_masks_of_a_frame_padded_by_an_odd_count_match_ultralytics(loaded_model, engine, bus, shape):
    """One pixel more padding below (right) than above (left); sampled as if both were equal, the
    masks were stretched by a pixel and 0.9 to 1.0 % of their pixels differed from ultralytics'."""
    import cv2

    frame = cv2.resize(bus, shape[::-1])
    reference = _ultralytics_result(loaded_model, frame, retina_masks=True).masks.data.bool().numpy()
    ours = engine.segment(frame).full_masks()
    assert len(ours) == len(reference)
    differing = sum(int((mine ^ theirs).sum()) for mine, theirs in zip(ours, reference, strict=True))
    assert differing <= 0.001 * sum(int((mine | theirs).sum()) for mine, theirs in zip(ours, reference, strict=True))


def test_masks_lie_inside_their_boxes(bus_masks):
    for instance in bus_masks.instances:
        x1, y1, x2, y2 = instance.box
        rows, cols = np.nonzero(instance.full_mask(bus_masks.height, bus_masks.width))
        assert cols.min() >= x1 - 1 and cols.max() <= x2 and rows.min() >= y1 - 1 and rows.max() <= y2
        assert instance.area > 0


def test_label_image_matches_masks_and_keeps_small_objects_visible(bus_masks):
    labels = bus_masks.label_image()
    assert labels.dtype == np.uint16 and labels.shape == (bus_masks.height, bus_masks.width)
    masks = bus_masks.full_masks()
    assert np.array_equal(labels > 0, masks.any(axis=0))
    for index, mask in enumerate(masks):
        owners = labels[mask]
        assert set(np.unique(owners)) <= {index + 1} | {j + 1 for j in range(len(masks)) if j != index}
        smaller_overlapping = [j for j in range(len(masks)) if j != index and bus_masks[j].area < bus_masks[index].area]
        visible = mask & ~masks[smaller_overlapping].any(axis=0) if smaller_overlapping else mask
        assert np.all(labels[visible] == index + 1)
    person = next(i for i, inst in enumerate(bus_masks.instances) if inst.class_name == "person")
    assert np.count_nonzero(labels == person + 1) == bus_masks[person].area


def test_coarse_masks_stay_close_to_retina_masks(engine, bus):
    coarse_engine = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, retina_masks=False))
    fine, coarse = engine.segment(bus), coarse_engine.segment(bus)
    assert len(fine) == len(coarse)
    for a, b in zip(fine.full_masks(), coarse.full_masks(), strict=True):
        assert (a & b).sum() / (a | b).sum() > 0.9


def test_settings_change_applies_to_next_frame(engine, zidane):
    strict = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, conf=0.8, max_det=2))
    result = strict.segment(zidane)
    assert 0 < len(result) <= 2
    assert all(instance.score >= 0.8 for instance in result.instances)


def test_blank_frame_gives_no_instances(engine):
    assert len(engine.segment(np.zeros((480, 640, 3), np.uint8))) == 0


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        ((0, 10, 3), np.uint8, "image has zero size"),
        ((10, 0, 3), np.uint8, "image has zero size"),
        ((10, 10), np.uint8, "expected an (H, W, 3) uint8 BGR image, got (10, 10) uint8"),
        ((10, 10, 4), np.uint8, "expected an (H, W, 3) uint8 BGR image, got (10, 10, 4) uint8"),
        ((10, 10, 3), np.float32, "expected an (H, W, 3) uint8 BGR image, got (10, 10, 3) float32"),
    ],
)
def test_malformed_arrays_are_refused_saying_what_they_are(engine, shape, dtype, message):
    with pytest.raises(ValueError) as refused:
        engine.segment(np.zeros(shape, dtype))
    assert str(refused.value) == message


@pytest.mark.parametrize("shape", [(1, 40, 3), (40, 1, 3)])
def test_a_frame_one_pixel_high_or_wide_is_segmented(engine, shape):
    result = engine.segment(np.zeros(shape, np.uint8))
    assert (result.height, result.width) == shape[:2] and len(result) == 0


def test_overlay_marks_obstacles_and_track_ids(bus_masks, bus):
    import dataclasses as dc

    from fastsam_ros.core.obstacles import Obstacle
    from fastsam_ros.core.rendering import OBSTACLE_RED, draw_overlay

    tracked = dc.replace(bus_masks, instances=tuple(dc.replace(i, track_id=40 + n) for n, i in enumerate(bus_masks)))
    person = next(n for n, inst in enumerate(tracked.instances) if inst.class_name == "person")
    overlay = draw_overlay(bus, tracked, obstacles=[Obstacle(person, 0.5, 2.0)])
    x1, y1, _, y2 = (round(v) for v in tracked[person].box)
    edge = overlay[(y1 + y2) // 2, x1 - 1 : x1 + 2]
    assert (edge == OBSTACLE_RED).all(axis=1).any(), "obstacle boxes are drawn in red"


def test_batch_of_same_size_frames_equals_frame_by_frame(engine, bus):
    mirrored = np.ascontiguousarray(bus[:, ::-1])
    batch = engine.segment_batch([bus, mirrored], [1, 2], ["front", "rear"])
    for result, image, stamp, frame_id in zip(batch, (bus, mirrored), (1, 2), ("front", "rear"), strict=True):
        single = engine.segment(image)
        assert (result.stamp_ns, result.frame_id) == (stamp, frame_id)
        assert len(result) == len(single) > 0
        boxes = torch.tensor([i.box for i in result.instances])
        assert torch.allclose(boxes, torch.tensor([i.box for i in single.instances]), atol=0.05)
        for mine, theirs in zip(result.full_masks(), single.full_masks(), strict=True):
            assert (mine & theirs).sum() / (mine | theirs).sum() > 0.99


def test_batch_of_mixed_sizes_equals_ultralytics_batched_predict(loaded_model, engine, bus, zidane):
    from ultralytics import YOLO

    references = YOLO(loaded_model.source).predict(
        [bus, zidane], conf=0.25, iou=0.7, imgsz=640, device="cpu", verbose=False
    )
    results = engine.segment_batch([bus, zidane])
    for result, image, reference in zip(results, (bus, zidane), references, strict=True):
        assert (result.height, result.width) == image.shape[:2]
        assert len(result) == len(reference.boxes) > 0
        boxes = torch.tensor([i.box for i in result.instances])
        assert torch.allclose(boxes, reference.boxes.xyxy, atol=0.05)
        assert [i.class_id for i in result.instances] == reference.boxes.cls.int().tolist()


def test_empty_batch_and_a_bad_frame_in_a_batch(engine, bus):
    assert engine.segment_batch([]) == []
    with pytest.raises(ValueError):
        engine.segment_batch([bus, np.zeros((0, 4, 3), np.uint8)])


def _row_changes(mask: np.ndarray) -> int:
    """Rows of a crop that differ from the row above: a mask scaled up from n rows has at most n - 1."""
    return int(np.count_nonzero((mask[1:] != mask[:-1]).any(axis=1)))


def test_coarse_masks_are_sampled_on_the_network_grid(engine, bus):
    """retina_masks=False samples at network-input resolution (640 / 1080 of the source here)."""
    coarse_engine = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, retina_masks=False))
    fine, coarse = engine.segment(bus), coarse_engine.segment(bus)
    scale = 640 / 1080
    differing = 0
    for a, b in zip(fine.instances, coarse.instances, strict=True):
        assert a.box == b.box and a.mask_offset == b.mask_offset and a.mask.shape == b.mask.shape
        differing += int(np.count_nonzero(a.mask != b.mask))
        rows, cols = b.mask.shape
        assert _row_changes(b.mask) <= math.ceil(rows * scale) - 1
        assert _row_changes(b.mask.T) <= math.ceil(cols * scale) - 1
    assert differing > 1000, "coarse masks must really differ from retina masks"
    assert any(_row_changes(a.mask) > math.ceil(a.mask.shape[0] * scale) for a in fine.instances)


def test_coarse_masks_of_a_frame_smaller_than_the_network_input_are_the_retina_masks(engine, zidane):
    """Below 640 px the network grid is finer than the frame: masks are sampled at the frame's resolution."""
    import cv2

    small = cv2.resize(zidane, (320, 180))
    coarse_engine = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, retina_masks=False))
    fine, coarse = engine.segment(small), coarse_engine.segment(small)
    assert len(fine) > 0 and len(coarse) == len(fine)
    for a, b in zip(fine.instances, coarse.instances, strict=True):
        assert a.box == b.box and a.mask_offset == b.mask_offset and np.array_equal(a.mask, b.mask)


def test_max_det_keeps_the_highest_scoring_detections(engine, bus):
    everything = engine.segment(bus)
    assert len(everything) > 3, "the bus photo has more than 3 confident detections"
    for cap in (1, 3):
        capped = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, max_det=cap)).segment(bus)
        assert len(capped) == cap
        assert [i.box for i in capped.instances] == [i.box for i in everything.instances[:cap]]


def test_conf_drops_exactly_the_less_confident_detections(engine, bus):
    everything = engine.segment(bus)
    scores = sorted(i.score for i in everything.instances)
    threshold = (scores[1] + scores[2]) / 2
    strict = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, conf=threshold)).segment(bus)
    assert [i.box for i in strict.instances] == [i.box for i in everything.instances if i.score > threshold]


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_released_engine_refuses_frames_and_says_why(runtime, loaded_model, bus):
    """A released engine (the node's cleanup) must not run a network it no longer holds."""
    released = SegmentationEngine(load_model(loaded_model.source, "cpu", runtime=runtime))
    assert len(released.segment(bus)) > 0
    released.release()
    with pytest.raises(RuntimeError, match=r"^the network was released$"):
        released.segment(bus)


def test_half_precision_is_taken_on_cuda_only(loaded_model, bus):
    on_cpu = load_model(loaded_model.source, "cpu", half=True, runtime="torch")
    assert (on_cpu.precision, on_cpu.half) == ("f32", False)
    assert len(SegmentationEngine(on_cpu).segment(bus)) == len(SegmentationEngine(loaded_model).segment(bus))


def test_the_torch_network_forgets_its_anchor_grids_when_asked(bus):
    """What CUDA graph capture relies on (core/backends/cuda_graphs.py), runnable on the CPU."""
    engine = SegmentationEngine(load_model("yolo11n-seg.pt", "cpu", runtime="torch"))
    engine.segment(bus)
    network = engine.loaded.backend.module.backend.model  # where ultralytics 8.4's AutoBackend keeps it
    heads = [layer for layer in network.modules() if hasattr(layer, "anchors")]
    assert heads and all(head.shape is not None for head in heads), "a run caches its grid"
    engine.loaded.backend.forget_shape_caches()
    assert all(head.shape is None for head in heads)
    engine.release()
    engine.loaded.backend.forget_shape_caches()  # nothing left to forget


def test_a_network_that_does_not_say_is_not_end_to_end():
    assert TorchNetwork(torch.nn.Identity()).end2end is False


def test_warm_up_runs_one_small_blank_frame_without_graphs_and_each_named_shape_and_batch_size(loaded_model):
    """Without CUDA graphs only lazy initialisation is warmed, which one 64x64 frame does; named shapes
    and batch sizes run once each, so a graph would be captured for every one the node will use."""
    engine = SegmentationEngine(loaded_model)
    assert engine.last_times == StageTimes(), "diagnostics before the first frame read zeros"
    batches: list[list[tuple[int, ...]]] = []
    real_segment_batch = engine.segment_batch

    def recorded(images, *args):
        batches.append([image.shape for image in images])
        return real_segment_batch(images, *args)

    engine.segment_batch = recorded
    engine.warm_up()
    assert batches == [[(64, 64, 3)]]
    batches.clear()
    engine.warm_up([(48, 80), (32, 32)], batch_sizes=(1, 3))
    assert batches == [[(48, 80, 3)], [(32, 32, 3)], [(48, 80, 3)] * 3, [(32, 32, 3)] * 3]
    assert engine.last_times.forward_ms > 0


def test_a_frame_carries_its_stamp_and_frame_id_and_none_by_default(engine, bus):
    named = engine.segment(bus, 1_700_000_000_123, "front_optical")
    assert (named.stamp_ns, named.frame_id) == (1_700_000_000_123, "front_optical")
    unnamed = engine.segment(bus)
    assert (unnamed.stamp_ns, unnamed.frame_id) == (0, "")
    batched = engine.segment_batch([bus, bus])
    assert [(masks.stamp_ns, masks.frame_id) for masks in batched] == [(0, "")] * 2


def test_a_mask_set_names_its_classes_and_keeps_the_less_confident_detections_as_candidates(engine, bus):
    """Detections scored in [candidate_conf, conf) are candidates, for the tracker; one scored
    exactly conf is published."""
    everything = SegmentationEngine(engine.loaded, dataclasses.replace(engine.settings, conf=0.1)).segment(bus)
    assert everything.class_names == engine.class_names and everything.class_names[5] == "bus"
    scores = sorted(instance.score for instance in everything.instances)
    threshold = scores[-3]
    strict_settings = dataclasses.replace(engine.settings, conf=threshold)
    strict = SegmentationEngine(engine.loaded, strict_settings).segment(bus)
    assert strict.conf == threshold
    assert [i.box for i in strict.instances] == [i.box for i in everything.instances if i.score >= threshold]
    assert sorted(i.box for i in strict.candidates) == sorted(
        i.box for i in everything.instances if i.score < threshold
    )
    assert len(strict.instances) == 3 and strict.candidates


def test_stage_times_are_milliseconds_within_the_call(engine, bus):
    started = time.perf_counter()
    engine.segment(bus)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    times = engine.last_times
    assert times.forward_ms > 1.0 and times.total_ms <= elapsed_ms


def test_anchors_are_whole_cells_of_each_level():
    """A level's partial cells hold no anchor: 100 px is 12 cells of 8, 6 of 16 and 3 of 32."""
    assert anchor_count((100, 100)) == 12 * 12 + 6 * 6 + 3 * 3
    assert anchor_count((64, 96)) == 8 * 12 + 4 * 6 + 2 * 3
