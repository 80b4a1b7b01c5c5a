"""The device path (torch letterbox, NMS, all-at-once mask decode) against the host path and ultralytics.

It runs on the CPU here, with the real weights on real photos; the CUDA graph tests skip
without a GPU.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch

from fastsam_ros.core.detection_nms import select_detections, select_end_to_end
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine, StageTimes, split_network_outputs
from fastsam_ros.core.letterbox import PAD_VALUE, letterbox_cpu, letterbox_geometry, letterbox_torch
from fastsam_ros.core.mask_decoding import (
    PrototypeSampling,
    crop_masks_batched,
    crop_masks_warp,
    decode_prototype_logits,
    packed_to_host,
    pixel_spans,
    prototype_sampling,
)
from fastsam_ros.core.mask_encoding import decode_runs, encode_runs
from fastsam_ros.tools.sample_frames import asset_image, mosaic, resized

CROWDED_CONF = 0.1
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@pytest.fixture(scope="module")
def frames(bus, zidane) -> dict[str, np.ndarray]:
    return {
        "bus": bus,
        "zidane": zidane,
        "720p": resized(asset_image("bus.jpg"), 1280, 720),
        "crowded": mosaic(4, 3, 1280, 720),
    }


@pytest.fixture(scope="module")
def torch_engine(loaded_model):
    return SegmentationEngine(loaded_model, pipeline="torch")


def _conf(name: str) -> float:
    return CROWDED_CONF if name == "crowded" else 0.25


@pytest.fixture(scope="module")
def network_outputs(loaded_model, frames):
    """Per tuple of frame names: geometries, predictions and prototypes of ultralytics' own letterbox."""
    cache = {}

    def outputs(names: tuple[str, ...]):
        if names not in cache:
            cache[names] = _network_outputs(loaded_model, [frames[name] for name in names])
        return cache[names]

    return outputs


def _network_outputs(loaded_model, images: list[np.ndarray]):
    from ultralytics.data.augment import LetterBox

    auto = len({image.shape for image in images}) == 1
    boxed = np.stack([LetterBox((640, 640), auto=auto, stride=32)(image=image) for image in images])
    batch = torch.from_numpy(boxed).permute(0, 3, 1, 2).flip(1).float().div(255)
    with torch.inference_mode():
        preds = loaded_model.backend(batch)
    geometries = [letterbox_geometry(image.shape[:2], 640, auto, 32) for image in images]
    return geometries, *split_network_outputs(preds)


def _decoder_inputs(network_outputs, name: str):
    """Logits, pixel spans and sampling of one frame's detections, as the engine computes them."""
    from ultralytics.utils.ops import scale_boxes

    [geometry], prediction, protos = network_outputs((name,))
    [detections] = select_detections(prediction, _conf(name), 0.7, 300, 80)
    boxes = scale_boxes(geometry.input_shape, detections[:, :4].clone(), geometry.source_shape).numpy()
    spans = pixel_spans(boxes, geometry.source_shape)
    logits = decode_prototype_logits(protos[0], detections[:, 6:])
    return logits, spans, prototype_sampling(geometry, tuple(protos.shape[2:]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# (577, 1001) pads an odd number of rows, (1001, 577) an odd number of columns: ultralytics splits them unevenly.
@pytest.mark.parametrize(
    "source_shape", [(1080, 810), (720, 1280), (577, 1001), (1001, 577), (1080, 1920), (7, 900), (480, 640)]
)
@pytest.mark.parametrize(("imgsz", "auto"), [(640, True), (640, False), (320, True)])
def test_letterbox_geometry_and_pixels_equal_ultralytics(source_shape, imgsz, auto):
    from ultralytics.data.augment import LetterBox

    photo = resized(asset_image("bus.jpg"), source_shape[1], source_shape[0])
    geometry = letterbox_geometry(source_shape, imgsz, auto, 32)
    reference = LetterBox((imgsz, imgsz), auto=auto, stride=32)(image=photo)
    assert geometry.input_shape == reference.shape[:2]
    assert np.array_equal(letterbox_cpu(photo, geometry), reference)


@pytest.mark.parametrize(
    ("source_shape", "resized"), [((1, 5000), (1, 640)), ((5000, 1), (640, 1)), ((2, 1000), (1, 640))]
)
def test_a_frame_scaled_below_one_pixel_keeps_one(source_shape, resized):
    """ultralytics would resize such a frame to zero rows (and OpenCV refuse it); the node keeps one."""
    geometry = letterbox_geometry(source_shape, 640, True, 32)
    assert geometry.resized_shape == resized
    padded = letterbox_cpu(np.full((*source_shape, 3), 7, np.uint8), geometry)
    assert padded.shape == (*geometry.input_shape, 3)
    rows, columns = np.nonzero(padded[..., 0] == 7)
    assert (rows.min(), columns.min()) == (geometry.top, geometry.left)
    assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == resized


@pytest.mark.parametrize("source_shape", [(480, 640), (1080, 810), (481, 640), (640, 483)])
def test_prototype_sampling_puts_each_source_pixel_centre_where_the_letterbox_put_it(source_shape):
    """Measured on the padded image itself: where the frame's pixels landed and how wide they came out,
    in prototype pixels (a quarter of the 640 px input), pixel centres at +0.5. The last two frames are
    padded by an odd count of pixels, one fewer above (left) than below (right)."""
    geometry = letterbox_geometry(source_shape, 640, False, 32)
    padded = letterbox_cpu(np.full((*source_shape, 3), 7, np.uint8), geometry)
    rows, columns = np.nonzero(padded[..., 0] == 7)
    top, left = rows.min(), columns.min()
    scale_y, scale_x = (rows.max() - top + 1) / source_shape[0], (columns.max() - left + 1) / source_shape[1]
    sampling = prototype_sampling(geometry, (160, 160))
    assert sampling.step_x == pytest.approx(scale_x / 4) and sampling.step_y == pytest.approx(scale_y / 4)
    assert sampling.origin_x == pytest.approx((0.5 * scale_x + left) / 4 - 0.5)
    assert sampling.origin_y == pytest.approx((0.5 * scale_y + top) / 4 - 0.5)


@pytest.mark.parametrize("name", ["bus", "zidane", "720p", "odd"])
def test_torch_letterbox_is_within_one_grey_level_of_opencv(name, frames):
    from ultralytics.data.augment import LetterBox

    image = frames.get(name) if name != "odd" else resized(asset_image("zidane.jpg"), 1001, 577)
    geometry = letterbox_geometry(image.shape[:2], 640, True, 32)
    reference = LetterBox((640, 640), auto=True, stride=32)(image=image)
    out = torch.empty((3, *geometry.input_shape))
    letterbox_torch(torch.from_numpy(image), geometry, out)
    rgb = (out * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    difference = np.abs(rgb[..., ::-1].astype(int) - reference.astype(int))
    assert difference.max() <= 1
    assert difference.mean() < 0.2
    if image.shape[1] == 2 * geometry.resized_shape[1]:
        assert difference.max() == 0, "halving the frame gives OpenCV's pixels exactly"
    if geometry.top:
        grey = torch.tensor(PAD_VALUE / 255, dtype=out.dtype)
        assert torch.all(out[:, : geometry.top] == grey), "the padding is ultralytics' grey, exactly"


@pytest.mark.parametrize("names", [("bus",), ("zidane",), ("crowded",), ("720p", "crowded")])
def test_nms_equals_ultralytics(network_outputs, names):
    from ultralytics.utils.nms import non_max_suppression

    conf = min(_conf(name) for name in names)
    _, prediction, _ = network_outputs(names)
    ours = select_detections(prediction, conf, 0.7, 300, 80)
    reference = non_max_suppression(prediction, conf, 0.7, max_det=300, nc=80)
    for mine, theirs in zip(ours, reference, strict=True):
        assert mine.shape[0] > 0 and torch.equal(mine, theirs)
    few = select_detections(prediction, conf, 0.7, 3, 80)
    assert all(torch.equal(mine, theirs[:3]) for mine, theirs in zip(few, reference, strict=True))


@pytest.mark.parametrize(("seed", "iou"), [(0, 0.7), (1, 0.5), (2, 0.0), (3, 1.0)])
def test_the_nms_kernel_keeps_exactly_what_torchvision_keeps(seed, iou):
    import torchvision

    from fastsam_ros.core.detection_nms import nms_kernel

    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(400, 2, generator=generator) * 600
    boxes = torch.cat((corners, corners + torch.rand(400, 2, generator=generator) * 120), 1)
    scores = torch.rand(400, generator=generator).round(decimals=2)  # ties, as in real scores
    assert torch.equal(nms_kernel()(boxes, scores, iou), torchvision.ops.nms(boxes, scores, iou))


def test_an_nms_free_heads_rows_above_conf_are_kept_in_its_order_up_to_max_det():
    """YOLO26's one-to-one head ranked its detections already: only the threshold and max_det apply."""
    scores = [[0.9, 0.25, 0.3, 0.8, 0.6], [0.1, 0.7, 0.26, 0.2, 0.95]]
    prediction = torch.zeros((2, 5, 8), dtype=torch.float16)
    prediction[..., 4] = torch.tensor(scores)
    prediction[..., 0] = torch.arange(5)
    first, second = select_end_to_end(prediction, 0.25, 3)
    assert first.dtype == torch.float32 and first.shape == (3, 8)
    assert first[:, 0].tolist() == [0, 2, 3], "above 0.25 only, in the head's order, the first three"
    assert second[:, 0].tolist() == [1, 2, 4]
    assert [len(rows) for rows in select_end_to_end(prediction, 0.25, 1)] == [1, 1]
    assert [len(rows) for rows in select_end_to_end(prediction, 0.0, 300)] == [5, 5]
    assert [len(rows) for rows in select_end_to_end(prediction, 1.0, 300)] == [0, 0]
    for conf in (-0.01, 1.01):
        with pytest.raises(ValueError, match=f"conf {conf} must lie in"):
            select_end_to_end(prediction, conf, 3)


def test_nms_takes_conf_and_iou_from_0_to_1_and_refuses_each_outside():
    prediction = torch.zeros((1, 4 + 2 + 32, 10))
    for conf, iou in ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0)):
        assert [len(rows) for rows in select_detections(prediction, conf, iou, 300, 2)] == [0]
    for conf, iou in ((-0.01, 0.5), (1.01, 0.5), (0.5, -0.01), (0.5, 1.01)):
        with pytest.raises(ValueError, match=f"conf {conf} and iou {iou} must lie in"):
            select_detections(prediction, conf, iou, 300, 2)


def _prediction(anchors: list[tuple[tuple[float, float, float, float], int, float, float]], classes: int = 80):
    """A (1, 4 + classes + 2, anchors) network output: per anchor an xywh box, its class, that class's score
    and one value for both mask coefficients; every other class scores 0."""
    prediction = torch.zeros((1, 4 + classes + 2, len(anchors)))
    for anchor, (box, class_id, score, coefficient) in enumerate(anchors):
        prediction[0, :4, anchor] = torch.tensor(box)
        prediction[0, 4 + class_id, anchor] = score
        prediction[0, 4 + classes :, anchor] = coefficient
    return prediction


def test_nms_keeps_a_detection_exactly_when_its_best_class_scores_above_conf():
    apart = [(x, 50.0, 20.0, 10.0) for x in (20.0, 60.0, 100.0, 140.0)]
    prediction = _prediction(
        [(apart[0], 3, 0.25, 0.0), (apart[1], 79, 0.2501, -1.5), (apart[2], 0, 0.1, 0.9), (apart[3], 5, 0.24, 0.3)]
    )
    [rows] = select_detections(prediction, 0.25, 0.7, 300, 80)
    assert rows.shape == (1, 8), "at conf, below it, and high mask coefficients with a low class score: dropped"
    assert rows[0, :4].tolist() == [50.0, 45.0, 70.0, 55.0], "xywh becomes x1, y1, x2, y2"
    assert rows[0, 4:].tolist() == pytest.approx([0.2501, 79.0, -1.5, -1.5]), "score, the last class, coefficients"


def test_nms_suppresses_overlaps_within_a_class_only():
    box = (100.0, 100.0, 40.0, 40.0)
    shifted = (104.0, 100.0, 40.0, 40.0)  # IoU 36/44 = 0.82 with box
    prediction = _prediction([(box, 2, 0.6, 0.0), (shifted, 2, 0.9, 1.0), (box, 7, 0.5, 2.0), (shifted, 7, 0.4, 3.0)])
    [rows] = select_detections(prediction, 0.25, 0.7, 300, 80)
    assert torch.allclose(rows[:, 4:6], torch.tensor([[0.9, 2.0], [0.5, 7.0]])), "the better of each class, best first"
    [rows] = select_detections(prediction, 0.25, 0.85, 300, 80)
    assert len(rows) == 4, "IoU 0.82 suppresses nothing at a threshold of 0.85"


def test_nms_selects_each_images_rows_from_its_own_anchors():
    first = _prediction([((50.0, 50.0, 10.0, 10.0), 1, 0.9, 0.0), ((90.0, 50.0, 10.0, 10.0), 1, 0.1, 0.0)])
    second = _prediction([((50.0, 50.0, 10.0, 10.0), 4, 0.1, 0.0), ((90.0, 50.0, 10.0, 10.0), 4, 0.8, 0.0)])
    one, two = select_detections(torch.cat((first, second)), 0.25, 0.7, 300, 80)
    assert torch.allclose(one[:, :6], torch.tensor([[45.0, 45.0, 55.0, 55.0, 0.9, 1.0]]))
    assert torch.allclose(two[:, :6], torch.tensor([[85.0, 45.0, 95.0, 55.0, 0.8, 4.0]]))


def test_nms_of_half_precision_rows_keeps_the_last_classes_apart():
    """79 x 7680 px of class offset overflows float16: the rows become float32 before the offset."""
    apart = [((x, 50.0, 20.0, 20.0), 79, 0.9 - x / 1000, 0.5) for x in (50.0, 150.0, 250.0)]
    [rows] = select_detections(_prediction(apart).half(), 0.25, 0.7, 300, 80)
    assert rows.dtype == torch.float32 and rows[:, 0].tolist() == [40.0, 140.0, 240.0]


def test_nms_never_sees_candidates_beyond_the_30000_best():
    """ultralytics' bound on the candidates: the 30,001st best is dropped even where nothing overlaps it."""
    from fastsam_ros.core.detection_nms import MAX_NMS_CANDIDATES

    crowd = MAX_NMS_CANDIDATES
    prediction = torch.zeros((1, 4 + 1 + 1, crowd + 1))
    prediction[0, :4, :crowd] = torch.tensor([[100.0], [100.0], [20.0], [20.0]])  # one box, 30,000 times
    prediction[0, :4, crowd] = torch.tensor([500.0, 500.0, 20.0, 20.0])  # apart from them all
    prediction[0, 4, :crowd] = 0.9
    prediction[0, 4, crowd] = 0.5
    [rows] = select_detections(prediction, 0.25, 0.7, 300, 1)
    assert rows[:, 4].tolist() == pytest.approx([0.9]), "the lone box was the 30,001st candidate"
    [rows] = select_detections(prediction[..., 1:], 0.25, 0.7, 300, 1)
    assert rows[:, 4].tolist() == pytest.approx([0.9, 0.5]), "30,000 candidates: all of them reach it"


def test_nms_does_not_import_torchvision():
    """Its import pulls in torch._dynamo, about 2 s of every start; only its compiled NMS is needed."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from fastsam_ros.core.engine import SegmentationEngine\n"
        "from fastsam_ros.core.detection_nms import select_detections\n"
        "prediction = torch.zeros(1, 4 + 80 + 32, 3)\n"
        "prediction[0, :4] = torch.tensor([[50.0, 52, 300], [50, 50, 300], [40, 40, 20], [40, 40, 20]])\n"
        "prediction[0, 4 + 7] = torch.tensor([0.9, 0.8, 0.7])\n"
        "print(len(select_detections(prediction, 0.25, 0.7, 300, 80)[0]), 'torchvision' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    kept, imported = output.stdout.split()[-2:]
    assert kept == "2" and imported == "False", "two boxes overlap, the third lies apart"


@pytest.mark.parametrize("sample_scale", [1.0, 0.5])
@pytest.mark.parametrize("name", ["bus", "zidane", "crowded"])
def test_all_at_once_mask_decode_equals_per_instance_warps(network_outputs, name, sample_scale):
    logits, spans, sampling = _decoder_inputs(network_outputs, name)
    warped = crop_masks_warp(logits, spans, sampling, sample_scale)
    batched = crop_masks_batched(logits, spans, sampling, sample_scale)
    assert len(batched) == len(warped) == len(logits) > 0
    for (offset, mask), (reference_offset, reference) in zip(batched, warped, strict=True):
        assert offset == reference_offset and mask.shape == reference.shape and mask.dtype == bool
        assert _iou(mask, reference) >= 0.99


def test_mask_decode_in_many_small_chunks_equals_one_chunk(network_outputs, monkeypatch):
    import fastsam_ros.core.mask_decoding as decoding

    logits, spans, sampling = _decoder_inputs(network_outputs, "crowded")
    whole = crop_masks_batched(logits, spans, sampling, 1.0)
    monkeypatch.setattr(decoding, "PADDED_ELEMENTS_PER_CHUNK", 20_000)
    chunked = crop_masks_batched(logits, spans, sampling, 1.0)
    for (offset, mask), (whole_offset, whole_mask) in zip(chunked, whole, strict=True):
        assert offset == whole_offset and np.array_equal(mask, whole_mask)


def test_chunks_are_filled_smallest_first_up_to_the_bound_and_empty_boxes_are_not_decoded(network_outputs, monkeypatch):
    """The memory bound a chunk keeps (instances x padded columns x padded rows), each chunk as full as
    the bound allows, every instance with pixels decoded once, smallest boxes first."""
    import fastsam_ros.core.mask_decoding as decoding

    logits, spans, sampling = _decoder_inputs(network_outputs, "crowded")
    empty = spans[0].copy()
    empty[2] = empty[0]  # no columns
    spans = np.vstack([spans, empty[None]])
    logits = torch.cat([logits, logits[:1]])
    chunks: list[np.ndarray] = []
    sample = decoding._sample_chunk

    def recorded(chunk_logits, chunk_spans, sizes, sampled, chunk_sampling):
        chunks.append(sampled.copy())
        return sample(chunk_logits, chunk_spans, sizes, sampled, chunk_sampling)

    bound = 40_000
    monkeypatch.setattr(decoding, "PADDED_ELEMENTS_PER_CHUNK", bound)
    monkeypatch.setattr(decoding, "_sample_chunk", recorded)
    crops = crop_masks_batched(logits, spans, sampling, 1.0)
    areas = [int(cols) * int(rows) for chunk in chunks for cols, rows in chunk]
    assert len(areas) == len(spans) - 1 and areas == sorted(areas), "each instance with pixels once, smallest first"
    for chunk in chunks:
        padded = len(chunk) * int(chunk[:, 0].max()) * int(chunk[:, 1].max())
        assert len(chunk) == 1 or padded <= bound
    for chunk, following in itertools.pairwise(chunks):
        cols, rows = np.vstack([chunk, following[:1]]).max(0)
        assert (len(chunk) + 1) * int(cols) * int(rows) > bound, "the next instance did not fit"
    assert len(chunks) > 2
    offset, mask = crops[-1]
    assert offset == (int(empty[0]), int(empty[1])) and mask.shape == (0, 0) and mask.dtype == bool
    first, second = np.array([pair for chunk in chunks for pair in chunk.tolist()][:2])
    cols, rows = np.maximum(first, second)
    monkeypatch.setattr(decoding, "PADDED_ELEMENTS_PER_CHUNK", 2 * int(cols) * int(rows))
    chunks.clear()
    crop_masks_batched(logits, spans, sampling, 1.0)
    assert len(chunks[0]) >= 2, "two instances exactly at the bound share a chunk"


def test_a_tall_and_a_wide_crop_share_a_chunk_only_when_the_padding_to_both_fits(network_outputs, monkeypatch):
    """A chunk is padded to its widest and to its tallest crop, which may be two different crops."""
    import fastsam_ros.core.mask_decoding as decoding

    logits, _, sampling = _decoder_inputs(network_outputs, "bus")
    tall_and_wide = np.array([[100, 100, 110, 200], [100, 100, 200, 110]], dtype=np.int64)  # 10 x 100, 100 x 10
    chunks: list[int] = []
    sample = decoding._sample_chunk

    def recorded(chunk_logits, *args):
        chunks.append(len(chunk_logits))
        return sample(chunk_logits, *args)

    monkeypatch.setattr(decoding, "_sample_chunk", recorded)
    for bound, expected in ((2 * 100 * 100 - 1, [1, 1]), (2 * 100 * 100, [2])):
        monkeypatch.setattr(decoding, "PADDED_ELEMENTS_PER_CHUNK", bound)
        chunks.clear()
        crop_masks_batched(torch.cat([logits[:1]] * 2), tall_and_wide, sampling, 1.0)
        assert chunks == expected, bound


@pytest.mark.parametrize("sample_scale", [1.0, 0.5])
def test_boxes_of_one_pixel_are_decoded_and_empty_ones_never_at_any_scale(network_outputs, sample_scale):
    """A 1 x 1 box and a box one column wide get their pixel masks; a box without columns stays empty,
    also when the coarse sampling grid (sample_scale < 1) would give it one sample."""
    logits, spans, sampling = _decoder_inputs(network_outputs, "bus")
    c1, r1 = (int(v) for v in spans[0, :2])
    tiny = np.array([[c1, r1, c1, r1 + 40], [c1, r1, c1 + 1, r1 + 1], [c1, r1, c1 + 1, r1 + 40]], dtype=spans.dtype)
    crops = crop_masks_batched(torch.cat([logits[:1]] * 3), tiny, sampling, sample_scale)
    warped = crop_masks_warp(torch.cat([logits[:1]] * 3), tiny, sampling, sample_scale)
    assert [mask.shape for _, mask in crops] == [(0, 0), (1, 1), (40, 1)]
    assert [mask.shape for _, mask in warped] == [(0, 0), (1, 1), (40, 1)]
    assert all(mask.dtype == bool for _, mask in crops + warped)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(crops, warped, strict=True))


def _ramp_expectation(low: int, count: int, samples: int, origin: float, step: float, zero: float) -> np.ndarray:
    """Which of count source pixels from low a logit ramp (coordinate - zero, in prototype pixels) marks,
    sampled at each of samples grid centres and scaled up by nearest neighbour as OpenCV does."""
    grid = np.floor(np.arange(count) * samples / count)
    coordinate = origin + step * (low + (grid + 0.5) * count / samples - 0.5)
    assert np.abs(coordinate - zero).min() > 0.05, "no sample lies within OpenCV's interpolation steps of zero"
    return coordinate > zero


@pytest.mark.parametrize("decode", [crop_masks_warp, crop_masks_batched])
@pytest.mark.parametrize(("sample_scale", "samples"), [(1.0, (11, 7)), (0.5, (6, 4)), (0.3, (4, 3))])
def test_each_decoder_samples_a_known_logit_ramp_at_its_grid_centres(decode, sample_scale, samples):
    """Planes rising along x or along y, so that each mask's edge is known, on a sampling where source
    pixel 0 is prototype coordinate (0.7, 0.45) and a source pixel half (a fifth) of a prototype pixel
    wide (high), on the fine grid and on two coarse grids: a box 11 x 7 pixels, and one a column wide
    whose single sample lies at its own centre (a coarse grid keeps at least one sample, not more).
    Beyond the plane's last column and row its edge values go on; a logit of exactly 0 is outside."""
    sampling = PrototypeSampling(origin_x=0.7, origin_y=0.45, step_x=0.5, step_y=0.2)
    columns, rows = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="xy")
    corner = columns + rows - 61.5  # above 0 at the last column and row only
    logits = torch.stack([columns - 21.45, rows - 9.3, columns - 20.64, corner, torch.zeros(32, 32)])
    spans = np.array(
        [[37, 41, 48, 48], [37, 41, 48, 48], [40, 41, 41, 48], [60, 155, 80, 175], [37, 41, 48, 48]], dtype=np.int64
    )
    crops = decode(logits, spans, sampling, sample_scale)
    along_x = _ramp_expectation(37, 11, samples[0], 0.7, 0.5, 21.45)
    along_y = _ramp_expectation(41, 7, samples[1], 0.45, 0.2, 9.3)
    assert [offset for offset, _ in crops] == [(37, 41), (37, 41), (40, 41), (60, 155), (37, 41)]
    assert all(mask.dtype == bool for _, mask in crops)
    assert np.array_equal(crops[0][1], np.tile(along_x, (7, 1)))
    assert np.array_equal(crops[1][1], np.tile(along_y[:, None], (1, 11)))
    assert np.array_equal(crops[2][1], np.tile(_ramp_expectation(40, 1, 1, 0.7, 0.5, 20.64), (7, 1)))
    assert 0 < along_x.sum() < 11 and 0 < along_y.sum() < 7 and crops[2][1].all()
    assert crops[3][1].shape == (20, 20) and crops[3][1].all()
    assert crops[4][1].shape == (7, 11) and not crops[4][1].any()


def test_one_copy_to_the_host_brings_each_masks_own_pixels_and_none_of_the_padding():
    """The GPU path's packed copy, run here on the CPU: masks wider than high and higher than wide."""
    padded = torch.rand((4, 9, 11), generator=torch.Generator().manual_seed(3)) > 0.5
    sizes = np.array([[11, 9], [4, 7], [1, 1], [6, 2]], np.int64)
    masks = packed_to_host(padded, sizes)
    assert [mask.shape for mask in masks] == [(9, 11), (7, 4), (1, 1), (2, 6)]
    for mask, plane, (cols, rows) in zip(masks, padded, sizes.tolist(), strict=True):
        assert mask.dtype == bool and np.array_equal(mask, plane[:rows, :cols].numpy())


def test_on_the_cpu_the_padded_masks_are_sliced_and_never_packed(network_outputs, monkeypatch):
    """The packed copy is for a GPU; the CPU's masks are views of the padded array, with no copy."""
    import fastsam_ros.core.mask_decoding as decoding

    def never(*_):
        raise AssertionError("packed on the CPU")

    logits, spans, sampling = _decoder_inputs(network_outputs, "bus")
    monkeypatch.setattr(decoding, "packed_to_host", never)
    crops = crop_masks_batched(logits, spans, sampling, 1.0)
    assert len(crops) == len(spans) and all(mask.base is not None for _, mask in crops)


def test_pixel_spans_start_at_the_first_pixel_centre_inside_and_are_clipped_to_the_frame():
    """Pixel p belongs to a box from x1 when p >= x1 (ceil), up to but not including x2."""
    boxes = np.array([[-3.2, -0.5, 10.2, 20.0], [0.4, 5.0, 700.0, 480.5], [639.5, 479.2, 640.0, 480.0]], np.float32)
    assert pixel_spans(boxes, (480, 640)).tolist() == [[0, 0, 11, 20], [1, 5, 640, 480], [640, 480, 640, 480]]
    assert pixel_spans(boxes, (480, 640)).dtype == np.int64


@pytest.mark.parametrize("decode", [crop_masks_warp, crop_masks_batched])
def test_a_frame_without_instances_decodes_to_no_crops_at_any_scale(decode):
    """The coarse grid's sizes keep their (N, 2) shape with N = 0, which the batched decoder indexes."""
    sampling = PrototypeSampling(origin_x=0.0, origin_y=0.0, step_x=0.25, step_y=0.25)
    for sample_scale in (1.0, 0.5):
        assert decode(torch.zeros((0, 16, 16)), np.zeros((0, 4), np.int64), sampling, sample_scale) == []


@pytest.mark.parametrize("name", ["zidane", "720p", "crowded", "bus"])
def test_torch_pipeline_equals_opencv_pipeline(engine, torch_engine, frames, name):
    settings = EngineSettings(conf=_conf(name))
    host = SegmentationEngine(engine.loaded, settings).segment(frames[name])
    torch_engine.settings = settings
    device = torch_engine.segment(frames[name])
    assert len(device) == len(host) > 0
    assert [i.class_id for i in device.instances] == [i.class_id for i in host.instances]
    # Where halving the frame letterboxes it to the same pixels, the network sees the same input;
    # elsewhere torch's bilinear differs from OpenCV's by at most one grey level.
    tolerance = 1e-3 if name != "bus" else 0.5
    boxes = np.array([i.box for i in device.instances])
    assert np.abs(boxes - np.array([i.box for i in host.instances])).max() <= tolerance
    for mine, theirs in zip(device.instances, host.instances, strict=True):
        assert mine.mask_offset == theirs.mask_offset or name == "bus"
        assert _iou(mine.full_mask(device.height, device.width), theirs.full_mask(host.height, host.width)) >= 0.99


def test_torch_pipeline_masks_round_trip_through_run_lengths(torch_engine, frames):
    torch_engine.settings = EngineSettings(conf=CROWDED_CONF)
    masks = torch_engine.segment(frames["crowded"])
    assert len(masks) > 40
    for instance in masks.instances:
        rows, cols = instance.mask.shape
        assert np.array_equal(decode_runs(encode_runs(instance.mask), rows, cols), instance.mask)


def test_torch_pipeline_batch_equals_single_frames(torch_engine, frames):
    torch_engine.settings = EngineSettings()
    cameras = [frames["720p"], frames["zidane"]]
    batch = torch_engine.segment_batch(cameras, [1, 2], ["a", "b"])
    for result, image, stamp in zip(batch, cameras, (1, 2), strict=True):
        single = torch_engine.segment(image)
        assert result.stamp_ns == stamp and len(result) == len(single) > 0
        assert [i.class_id for i in result.instances] == [i.class_id for i in single.instances]
        boxes = np.array([i.box for i in result.instances])
        assert np.abs(boxes - np.array([i.box for i in single.instances])).max() < 0.05
        for mine, theirs in zip(result.full_masks(), single.full_masks(), strict=True):
            assert _iou(mine, theirs) >= 0.99


def test_settings_are_read_once_per_batch(loaded_model, zidane):
    class CountingEngine(SegmentationEngine):
        reads = 0

        @property
        def settings(self) -> EngineSettings:
            CountingEngine.reads += 1
            return self._settings

        @settings.setter
        def settings(self, value: EngineSettings) -> None:
            self._settings = value

    counting = CountingEngine(loaded_model)
    counting.segment_batch([zidane, zidane])
    assert CountingEngine.reads == 1


def test_stage_times_cover_each_stage(engine, zidane):
    engine.segment(zidane)
    times = engine.last_times
    stages = [times.preprocess_ms, times.forward_ms, times.nms_ms, times.mask_decode_ms]
    assert all(stage > 0 for stage in stages)
    assert times.total_ms == pytest.approx(sum(stages))
    assert not hasattr(StageTimes(), "extra")


def test_cuda_graphs_on_without_cuda_logs_once_and_runs_eagerly(loaded_model, engine, zidane):
    messages: list[str] = []
    graphed = SegmentationEngine(loaded_model, EngineSettings(cuda_graphs="on"), log=messages.append)
    first, second = graphed.segment(zidane), graphed.segment(zidane)
    assert messages == [
        f"cuda_graphs 'on' needs the torch runtime on a CUDA device, not {loaded_model.runtime} on cpu; running eagerly"
    ]
    reference = engine.segment(zidane)
    assert [i.box for i in first.instances] == [i.box for i in second.instances] == [i.box for i in reference.instances]


def test_without_a_log_the_engine_warns_on_its_own_logger(loaded_model, zidane, caplog):
    """A caller that passes no log (a script, a benchmark) gets the warning from the module's logger."""
    with caplog.at_level(logging.WARNING):
        SegmentationEngine(loaded_model, EngineSettings(cuda_graphs="on")).segment(zidane)
    assert [record.name for record in caplog.records] == ["fastsam_ros.core.engine"]
    assert "cuda_graphs 'on' needs the torch runtime on a CUDA device" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("pipeline", "path"), [("torch", "torch"), ("opencv", "opencv"), ("auto", "opencv")])
def test_the_pipeline_picks_where_letterbox_and_mask_decoding_run(loaded_model, bus, monkeypatch, pipeline, path):
    """torch runs both as tensor ops (a GPU's path, here on the CPU); opencv, and auto on a CPU, run OpenCV's.
    Their results agree (above), so only the functions called tell an ignored setting."""
    import fastsam_ros.core.engine as engine_module

    called: set[str] = set()
    for name in ("letterbox_cpu", "letterbox_torch", "crop_masks_warp", "crop_masks_batched"):
        real = getattr(engine_module, name)

        def recorded(*args, real=real, name=name, **kwargs):
            called.add(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(engine_module, name, recorded)
    assert len(SegmentationEngine(loaded_model, pipeline=pipeline).segment(bus)) > 0
    expected = {"torch": {"letterbox_torch", "crop_masks_batched"}, "opencv": {"letterbox_cpu", "crop_masks_warp"}}
    assert called == expected[path]


def test_bad_modes_are_refused(loaded_model, zidane):
    with pytest.raises(ValueError, match=r"^pipeline 'gpu' is not one of auto, opencv, torch$"):
        SegmentationEngine(loaded_model, pipeline="gpu")
    with pytest.raises(ValueError, match="cuda_graphs"):
        SegmentationEngine(loaded_model, EngineSettings(cuda_graphs="yes")).segment(zidane)


@pytest.fixture(scope="module")
def cuda_model():
    from fastsam_ros.core.backends.model_loading import load_model

    return load_model("yolo11n-seg.pt", "cuda:0")


@needs_cuda
@pytest.mark.parametrize("half", [False, True])
def test_cuda_graph_replay_equals_eager(cuda_model, frames, half):
    from fastsam_ros.core.backends.model_loading import load_model

    loaded = load_model("yolo11n-seg.pt", "cuda:0", half=half) if half else cuda_model
    eager = SegmentationEngine(loaded, EngineSettings(cuda_graphs="off"))
    messages: list[str] = []
    graphed = SegmentationEngine(loaded, EngineSettings(cuda_graphs="on"), log=messages.append)
    graphed.warm_up([(720, 1280)], batch_sizes=(1, 2))
    assert not messages, messages
    for names in (("720p",), ("bus",), ("720p", "crowded"), ("720p",)):
        images = [frames[name] for name in names]
        for mine, theirs in zip(graphed.segment_batch(images), eager.segment_batch(images), strict=True):
            assert [i.class_id for i in mine.instances] == [i.class_id for i in theirs.instances]
            boxes = np.array([i.box for i in mine.instances])
            assert np.abs(boxes - np.array([i.box for i in theirs.instances])).max() <= 1e-3
            for a, b in zip(mine.full_masks(), theirs.full_masks(), strict=True):
                assert _iou(a, b) >= 0.99
