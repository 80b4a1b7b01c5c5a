"""Point and box selection on real masks, checked against ultralytics' FastSAM prompt."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastsam_ros.core import parameters
from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.prompts import PromptError, PromptLimits, merge_instances, select_by_box, select_by_points
from test_support.fastsam_prompt import fastsam_prompt_oracle


@pytest.fixture(scope="module")
def oracle(bus_masks, bus):
    """FastSAMPredictor.prompt over a Results holding exactly our masks."""
    return fastsam_prompt_oracle(bus_masks, bus)


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
        ([], [], r"^no points given$"),
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
    with pytest.raises(PromptError, match=r"^the frame has no instances to select from$"):
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


def _instance(name: str, offset: tuple[int, int], rows: list[str]) -> Instance:
    mask = np.array([[c == "#" for c in row] for row in rows], dtype=bool)
    ox, oy = offset
    return Instance((ox, oy, ox + mask.shape[1], oy + mask.shape[0]), 0.5, 0, name, offset, mask)


SMALL = MaskSet(
    height=12,
    width=16,
    instances=(
        _instance("top-left", (0, 0), ["####", "###.", "#..."]),
        _instance("middle", (5, 2), ["#...", "#...", "####"]),
        _instance("bottom-right", (12, 8), [".###", "####", "####", "###."]),
    ),
)
"""A hand-made 16x12 frame whose masks touch all four edges of the image."""

_BOX_X, _BOX_Y = st.integers(-4, SMALL.width + 4), st.integers(-4, SMALL.height + 4)


def _box_pixels(box: tuple[int, int, int, int]) -> np.ndarray:
    """The image pixels inside the half-open box [x1, x2) x [y1, y2), counted on the full plane."""
    x1, y1, x2, y2 = box
    rows, cols = np.indices((SMALL.height, SMALL.width))
    return (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)


@given(x1=_BOX_X, y1=_BOX_Y, x2=_BOX_X, y2=_BOX_Y)
@example(x1=2, y1=5, x2=9, y2=5)
@example(x1=16, y1=2, x2=19, y2=6)
@example(x1=3, y1=12, x2=8, y2=15)
@example(x1=-3, y1=2, x2=0, y2=6)
def test_a_box_is_refused_as_empty_when_inverted_and_as_outside_when_it_shares_no_pixel(x1, y1, x2, y2):
    box = (x1, y1, x2, y2)
    if x2 <= x1 or y2 <= y1:
        with pytest.raises(PromptError, match=rf"^box \({x1}, {y1}, {x2}, {y2}\) is empty or inverted"):
            select_by_box(SMALL, box)
    elif not _box_pixels(box).any():
        with pytest.raises(PromptError, match=rf"^box \({x1}, {y1}, {x2}, {y2}\) lies outside the 16x12 image$"):
            select_by_box(SMALL, box)
    else:
        select_by_box(SMALL, box)


@given(x1=_BOX_X, y1=_BOX_Y, x2=_BOX_X, y2=_BOX_Y)
@example(x1=0, y1=0, x2=4, y2=3)
@example(x1=-2, y1=-2, x2=3, y2=2)
@example(x1=11, y1=7, x2=16, y2=12)
@example(x1=11, y1=7, x2=20, y2=15)
def test_a_box_is_scored_on_exactly_the_pixels_it_shares_with_the_image(x1, y1, x2, y2):
    """Clipping keeps row and column 0 and the last row and column: a box is never shrunk inside the image."""
    region = _box_pixels((x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1 or not region.any():
        return
    ious = []
    for instance in SMALL.instances:
        mask = instance.full_mask(SMALL.height, SMALL.width)
        ious.append((mask & region).sum() / (mask | region).sum())
    match = select_by_box(SMALL, (x1, y1, x2, y2))
    assert match.iou == pytest.approx(max(ious), abs=1e-12)
    assert ious[match.index] == pytest.approx(max(ious), abs=1e-12)


def test_a_box_from_column_and_row_zero_is_not_clipped():
    """The corner mask lies wholly inside its own box, so its IoU is its area over the box's 4 x 3 pixels."""
    match = select_by_box(SMALL, SMALL[0].box)
    assert match.index == 0
    assert match.iou == pytest.approx(SMALL[0].area / (4 * 3))


_NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@given(bad=_NON_FINITE, other=st.floats(-5.0, 20.0), bad_is_y=st.booleans())
@example(bad=math.nan, other=3.0, bad_is_y=True)
def test_a_point_with_a_non_finite_coordinate_is_refused_as_not_finite(bad, other, bad_is_y):
    """Checked before the range: a NaN fails every comparison and would otherwise be called outside."""
    point = (other, bad) if bad_is_y else (bad, other)
    with pytest.raises(PromptError, match=r"^coordinates must be finite numbers"):
        select_by_points(SMALL, [point], [1])


@st.composite
def _frames_and_selections(draw) -> tuple[MaskSet, list[int]]:
    """A 16x12 frame of 1 to 4 instances (each with at least one pixel, as the engine keeps only
    those) at any place, with distinct scores, and a non-empty selection of them."""
    count = draw(st.integers(1, 4))
    scores = draw(st.permutations([0.2, 0.4, 0.6, 0.8]))
    instances = []
    for index in range(count):
        mask = draw(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 5))).filter(lambda m: m.any()))
        rows, cols = mask.shape
        ox, oy = draw(st.integers(0, SMALL.width - cols)), draw(st.integers(0, SMALL.height - rows))
        box = (float(ox), float(oy), float(ox + cols), float(oy + rows))
        instances.append(Instance(box, scores[index], index, f"thing {index}", (ox, oy), mask))
    selection = draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=count, unique=True))
    return MaskSet(height=SMALL.height, width=SMALL.width, instances=tuple(instances)), selection


@given(_frames_and_selections())
def test_merging_gives_the_union_of_the_selected_masks_cropped_to_its_extent(frame_and_selection):
    masks, selection = frame_and_selection
    union = np.zeros((masks.height, masks.width), bool)
    for index in selection:
        ox, oy = masks[index].mask_offset
        rows, cols = masks[index].mask.shape
        union[oy : oy + rows, ox : ox + cols] |= masks[index].mask
    ys, xs = np.nonzero(union)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    merged = merge_instances(masks, selection)

    assert merged.box == (x1, y1, x2, y2) and all(type(v) is float for v in merged.box)
    assert merged.mask_offset == (x1, y1)
    assert merged.mask.dtype == bool and merged.mask.shape == (y2 - y1, x2 - x1)
    assert np.array_equal(merged.mask, union[y1:y2, x1:x2])
    assert merged.area == np.count_nonzero(union), "no pixel of the union lies outside the crop"
    assert merged.score == max(masks[i].score for i in selection)
    assert (merged.class_id, merged.class_name, merged.track_id) == (-1, "merged", -1)


def test_merging_two_hand_made_masks():
    """top-left covers columns 0-3 of rows 0-2, middle columns 5-8 of rows 2-4: together the 9 x 5 corner."""
    merged = merge_instances(SMALL, [1, 0])
    assert merged.box == (0.0, 0.0, 9.0, 5.0) and merged.mask_offset == (0, 0)
    expected = [
        "####.....",
        "###......",
        "#....#...",
        ".....#...",
        ".....####",
    ]
    assert ["".join("#" if v else "." for v in row) for row in merged.mask] == expected


def test_a_merged_crop_drops_the_empty_rim_of_the_masks():
    """A 3 x 4 crop whose only pixel is at its row 1, column 2 merges to that one pixel."""
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    frame = MaskSet(height=12, width=16, instances=(Instance((5.0, 6.0, 9.0, 9.0), 0.7, 3, "dot", (5, 6), mask),))
    merged = merge_instances(frame, [0])
    assert merged.box == (7.0, 7.0, 8.0, 8.0) and merged.mask_offset == (7, 7)
    assert merged.mask.tolist() == [[True]]


def test_merging_no_instances_gives_an_empty_instance_at_the_origin():
    merged = merge_instances(SMALL, [])
    assert merged.box == (0.0, 0.0, 0.0, 0.0) and merged.mask_offset == (0, 0)
    assert (merged.score, merged.class_id, merged.class_name, merged.track_id) == (0.0, -1, "merged", -1)
    assert merged.mask.shape == (0, 0) and merged.mask.dtype == bool


def test_merging_masks_without_a_pixel_gives_the_empty_instance():
    """Background points alone keep every mask no point hits, empty ones included."""
    empty = Instance((1.0, 1.0, 3.0, 3.0), 0.9, 0, "thing", (1, 1), np.zeros((2, 2), dtype=bool))
    merged = merge_instances(MaskSet(6, 4, (empty,)), [0])
    assert merged.box == (0.0, 0.0, 0.0, 0.0) and merged.mask.shape == (0, 0) and merged.score == 0.0


_LIMIT_PARAMETERS = ("max_prompt_points", "max_prompt_boxes", "max_prompt_texts", "max_text_length")


@given(
    limits=st.builds(PromptLimits, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 4)),
    points=st.integers(0, 5),
    boxes=st.integers(0, 5),
    texts=st.lists(st.text("ab", max_size=6), max_size=5),
    names=st.lists(st.text("ab", max_size=6), max_size=2),
)
def test_a_request_is_refused_exactly_when_it_exceeds_a_limit_naming_the_first_one(limits, points, boxes, texts, names):
    """Checked in the order points, boxes, texts, the longest text, then the longest follow name;
    a count or a length equal to its limit passes."""
    longest = max((len(text) for text in texts), default=0)
    longest_name = max((len(name) for name in names), default=0)
    length_limit = f"exceeds the limit of {limits.max_text_length} (parameter max_text_length)"
    if points > limits.max_points:
        reason = f"{points} points exceed the limit of {limits.max_points} per request (parameter max_prompt_points)"
    elif boxes > limits.max_boxes:
        reason = f"{boxes} boxes exceed the limit of {limits.max_boxes} per request (parameter max_prompt_boxes)"
    elif len(texts) > limits.max_texts:
        reason = f"{len(texts)} texts exceed the limit of {limits.max_texts} per request (parameter max_prompt_texts)"
    elif longest > limits.max_text_length:
        reason = f"a text of {longest} characters {length_limit}"
    elif longest_name > limits.max_text_length:
        reason = f"a name of {longest_name} characters {length_limit}"
    else:
        limits.check(points=points, boxes=boxes, texts=texts, names=names)
        return
    with pytest.raises(PromptError) as refused:
        limits.check(points=points, boxes=boxes, texts=texts, names=names)
    assert str(refused.value) == reason


def test_a_request_is_checked_only_for_the_kinds_it_carries():
    """Each service passes only its own kind: what it leaves out counts as none, even against a limit of 0."""
    nothing = PromptLimits(max_points=0, max_boxes=0, max_texts=0, max_text_length=0)
    nothing.check()
    nothing.check(texts=[])
    with pytest.raises(PromptError, match=r"^1 points exceed the limit of 0 per request"):
        nothing.check(points=1)
    with pytest.raises(PromptError, match=r"^1 boxes exceed the limit of 0 per request"):
        nothing.check(boxes=1)


def test_the_limits_name_real_parameters_and_default_to_them():
    assert set(_LIMIT_PARAMETERS) <= set(parameters.SPECS)
    assert PromptLimits() == PromptLimits(*(parameters.default_of(name) for name in _LIMIT_PARAMETERS))
