"""Point and box selection on real masks, checked against ultralytics' FastSAM prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _inside_or_outside(size: int):
    """Pixel coordinates on both sides of [0, size), edges and fractions included."""
    return st.one_of(
        st.floats(-3.0, size + 3.0, allow_nan=False),
        st.sampled_from([-1.0, -0.5, 0.0, size - 1.0, size - 0.5, float(size), size + 0.5]),
    )


@given(x=_inside_or_outside(810), y=_inside_or_outside(1080))
def test_a_point_is_accepted_exactly_when_it_lies_in_the_half_open_image(bus_masks, x, y):
    inside = 0 <= x < bus_masks.width and 0 <= y < bus_masks.height
    try:
        select_by_points(bus_masks, [(x, y)], [1])
    except PromptError as error:
        assert not inside and "outside" in str(error)
    else:
        assert inside


@pytest.mark.parametrize("point", [(810.0, 10.0), (10.0, 1080.0), (810.0, 1080.0), (-0.5, 10.0)])
def test_points_on_the_right_and_bottom_edges_are_refused(bus_masks, point):
    with pytest.raises(PromptError, match="outside"):
        select_by_points(bus_masks, [point], [1])


def test_a_fractional_point_selects_the_pixel_it_lies_in(bus_masks, oracle):
    bus = _index(bus_masks, "bus")
    x, y = _centre_point(bus_masks, bus)
    for fraction in (0.0, 0.25, 0.75, 0.999):
        point = (x + fraction, y + fraction)
        assert select_by_points(bus_masks, [point], [1]) == oracle(points=[point], labels=[1]), point


def _box_iou_by_hand(masks: MaskSet, index: int, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    mask = masks[index].full_mask(masks.height, masks.width)
    region = np.zeros_like(mask)
    region[y1:y2, x1:x2] = True
    return (mask & region).sum() / (mask | region).sum()


@given(
    corner=st.tuples(st.integers(0, 700), st.integers(0, 950)),
    size=st.tuples(st.integers(2, 110), st.integers(2, 130)),
    fractions=st.tuples(*[st.floats(0.0, 0.999) for _ in range(4)]),
)
@settings(max_examples=40)
def test_fractional_boxes_are_truncated_to_whole_pixels(bus_masks, oracle, corner, size, fractions):
    """A box's coordinates are truncated, as FastSAM does: (x + f) for 0 <= f < 1 is pixel x."""
    whole = (corner[0], corner[1], corner[0] + size[0], corner[1] + size[1])
    box = tuple(v + f for v, f in zip(whole, fractions, strict=True))
    match = select_by_box(bus_masks, box)
    assert match == select_by_box(bus_masks, whole)
    assert [match.index] == oracle(bboxes=[list(box)])
    assert match.iou == pytest.approx(_box_iou_by_hand(bus_masks, match.index, whole), abs=1e-12)


def test_a_box_past_the_image_is_clipped_to_it(bus_masks):
    bus = _index(bus_masks, "bus")
    x1, y1, x2, y2 = (int(v) for v in bus_masks[bus].box)
    clipped = select_by_box(bus_masks, (x1, y1, bus_masks.width, y2))
    assert select_by_box(bus_masks, (x1, y1, bus_masks.width + 500, y2)) == clipped
    assert select_by_box(bus_masks, (-300, y1, x2, y2)) == select_by_box(bus_masks, (0, y1, x2, y2))
    assert clipped.iou == pytest.approx(_box_iou_by_hand(bus_masks, clipped.index, (x1, y1, bus_masks.width, y2)))
