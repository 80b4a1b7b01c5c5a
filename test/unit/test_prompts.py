"""Point and box selection on real masks, checked against ultralytics' FastSAM prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastsam_ros.mask_set import MaskSet
from fastsam_ros.prompts import PromptError, select_by_box, select_by_points


@pytest.fixture(scope="module")
def oracle(bus_masks, bus):
    """FastSAMPredictor.prompt over a Results holding exactly our masks."""
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam import FastSAMPredictor

    predictor = FastSAMPredictor(overrides={"device": "cpu", "verbose": False})
    predictor.device = torch.device("cpu")
    boxes = torch.tensor([[*i.box, i.score, i.class_id] for i in bus_masks.instances], dtype=torch.float32)
    masks = torch.from_numpy(bus_masks.full_masks()).to(torch.uint8)
    result = Results(bus, path="bus.jpg", names=bus_masks.class_names, boxes=boxes, masks=masks)

    def select(**prompt) -> list[int]:
        chosen = predictor.prompt(result, **prompt)[0]
        if len(chosen) == 0:
            return []
        rows = chosen.boxes.data[:, :4]
        return sorted(int(torch.nonzero((boxes[:, :4] == row).all(1))[0]) for row in rows)

    return select


def _index(masks: MaskSet, name: str) -> int:
    return next(i for i, inst in enumerate(masks.instances) if inst.class_name == name)


def _centre_point(masks: MaskSet, index: int) -> tuple[float, float]:
    rows, cols = np.nonzero(masks[index].mask)
    pick = len(rows) // 2
    return float(cols[pick] + masks[index].mask_offset[0]), float(rows[pick] + masks[index].mask_offset[1])


def test_point_on_bus_selects_bus(bus_masks, oracle):
    bus = _index(bus_masks, "bus")
    point = _centre_point(bus_masks, bus)
    selected = select_by_points(bus_masks, [point], [1])
    assert bus in selected
    assert selected == oracle(points=[point], labels=[1])


def test_point_prompts_agree_with_oracle_on_random_points(bus_masks, oracle):
    rng = np.random.default_rng(7)
    for _ in range(40):
        count = int(rng.integers(1, 4))
        points = [
            (float(rng.integers(0, bus_masks.width)), float(rng.integers(0, bus_masks.height))) for _ in range(count)
        ]
        labels = [int(v) for v in rng.integers(0, 2, count)]
        assert select_by_points(bus_masks, points, labels) == oracle(points=points, labels=labels), (points, labels)


def test_background_point_drops_mask(bus_masks, oracle):
    person = _index(bus_masks, "person")
    bus = _index(bus_masks, "bus")
    points = [_centre_point(bus_masks, bus), _centre_point(bus_masks, person)]
    selected = select_by_points(bus_masks, points, [1, 0])
    assert person not in selected
    assert selected == oracle(points=points, labels=[1, 0])
    only_background = select_by_points(bus_masks, [points[1]], [0])
    assert person not in only_background and bus in only_background


def test_box_around_each_instance_selects_it(bus_masks, oracle):
    for index, instance in enumerate(bus_masks.instances):
        match = select_by_box(bus_masks, instance.box)
        assert [match.index] == oracle(bboxes=[list(instance.box)])
        assert match.index == index and match.iou > 0.2


def test_box_prompts_agree_with_oracle_on_random_boxes(bus_masks, oracle):
    rng = np.random.default_rng(11)
    for _ in range(40):
        x1, x2 = sorted(rng.integers(0, bus_masks.width, 2))
        y1, y2 = sorted(rng.integers(0, bus_masks.height, 2))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        box = [float(x1), float(y1), float(x2), float(y2)]
        assert [select_by_box(bus_masks, box).index] == oracle(bboxes=[box]), box


@pytest.mark.parametrize(
    ("points", "labels", "reason"),
    [
        ([], [], "no points"),
        ([(10.0, 10.0)], [1, 0], "1 points but 2 labels"),
        ([(10.0, 10.0)], [2], "label 2"),
        ([(-1.0, 10.0)], [1], "outside"),
        ([(10.0, 1080.0)], [1], "outside"),
        ([(math.nan, 10.0)], [1], "finite"),
        ([(math.inf, 10.0)], [1], "finite"),
    ],
)
def test_bad_point_prompts(bus_masks, points, labels, reason):
    with pytest.raises(PromptError, match=reason):
        select_by_points(bus_masks, points, labels)


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ((100, 100, 100, 200), "empty or inverted"),
        ((300, 100, 200, 200), "empty or inverted"),
        ((2000, 2000, 2100, 2100), "outside"),
        ((0, 0, math.nan, 10), "finite"),
        ((0, 0, 10), "4 numbers"),
    ],
)
def test_bad_box_prompts(bus_masks, box, reason):
    with pytest.raises(PromptError, match=reason):
        select_by_box(bus_masks, box)


def test_empty_frame():
    with pytest.raises(PromptError, match="no instances"):
        select_by_box(MaskSet(height=10, width=10), (0, 0, 5, 5))
    assert select_by_points(MaskSet(height=10, width=10), [(1.0, 1.0)], [1]) == []
