"""Obstacles on real masks, with synthetic depth of known geometry built for the frame."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.obstacles import (
    DepthError,
    DepthPairer,
    Intrinsics,
    Obstacle,
    ObstacleSettings,
    centroid_of,
    depth_in_metres,
    find_obstacles,
    obstacle_cloud,
    roi_mask,
)

CAMERA = Intrinsics(fx=900.0, fy=900.0, cx=405.0, cy=540.0)
CAMERA_HEIGHT = 1.2


def floor_depth(height: int, width: int) -> np.ndarray:
    """A flat floor 1.2 m below the camera: depth grows towards the horizon (row cy)."""
    rows = np.arange(height, dtype=np.float64)[:, None] - CAMERA.cy
    with np.errstate(divide="ignore"):
        depth = np.where(rows > 1, CAMERA_HEIGHT * CAMERA.fy / np.maximum(rows, 1), 20.0)
    return np.broadcast_to(np.minimum(depth, 20.0), (height, width)).astype(np.float32).copy()


def place(depth: np.ndarray, masks, index: int, distance: float, erode: int = 3):
    """Paint an object at `distance` over the instance's mask, shrunk by `erode` pixels
    so the mask's rim sees the floor behind it, as real masks do. Returns the truth:
    the 3D centroid of the painted pixels."""
    plane = masks[index].full_mask(masks.height, masks.width).astype(np.uint8)
    body = cv2.erode(plane, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)).astype(bool)
    depth[body] = distance
    v, u = np.nonzero(body)
    truth = ((u - CAMERA.cx).mean() * distance / CAMERA.fx, (v - CAMERA.cy).mean() * distance / CAMERA.fy, distance)
    return np.array(truth)


@pytest.fixture(scope="module")
def roi(bus_masks):
    return roi_mask(ObstacleSettings().roi, bus_masks.width, bus_masks.height)


def test_obstacles_are_the_instances_in_the_corridor(bus_masks, roi):
    obstacles = find_obstacles(bus_masks, ObstacleSettings(), roi)
    assert obstacles, "people walk in front of the bus, inside the corridor"
    for instance_index, instance in enumerate(bus_masks.instances):
        full = instance.full_mask(bus_masks.height, bus_masks.width)
        overlap = np.count_nonzero(full & roi) / instance.area
        expected = overlap >= 0.05 and instance.area >= 400
        assert (instance_index in [o.index for o in obstacles]) == expected, instance.class_name
    assert all(o.distance is None for o in obstacles)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_distance_and_centroid_within_two_percent(bus_masks, roi, encoding):
    obstacles = find_obstacles(bus_masks, ObstacleSettings(), roi)
    depth = floor_depth(bus_masks.height, bus_masks.width)
    truths = {o.index: place(depth, bus_masks, o.index, 2.0 + 1.5 * rank) for rank, o in enumerate(obstacles)}
    raw = (depth * 1000).round().astype(np.uint16) if encoding == "16UC1" else depth
    located = find_obstacles(bus_masks, ObstacleSettings(), roi, depth_in_metres(raw, encoding), CAMERA)
    assert [o.index for o in located] == [o.index for o in obstacles], "nearest first"
    for obstacle in located:
        truth = truths[obstacle.index]
        assert abs(obstacle.distance - truth[2]) <= 0.02 * truth[2]
        error = np.linalg.norm(np.array(obstacle.centroid) - truth)
        assert error <= 0.02 * np.linalg.norm(truth), (obstacle, truth)


def test_max_distance_drops_far_obstacles(bus_masks, roi):
    obstacles = find_obstacles(bus_masks, ObstacleSettings(), roi)
    depth = floor_depth(bus_masks.height, bus_masks.width)
    place(depth, bus_masks, obstacles[0].index, 1.0)
    for other in obstacles[1:]:
        place(depth, bus_masks, other.index, 9.0)
    near = find_obstacles(bus_masks, ObstacleSettings(max_distance=5.0), roi, depth, CAMERA)
    assert [o.index for o in near] == [obstacles[0].index]


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_depth_without_measurements_gives_obstacles_without_distance(bus_masks, roi, fill):
    depth = depth_in_metres(np.full((bus_masks.height, bus_masks.width), fill, np.float32), "32FC1")
    obstacles = find_obstacles(bus_masks, ObstacleSettings(), roi, depth, CAMERA)
    assert obstacles and all(o.distance is None and o.centroid is None for o in obstacles)
    zeros = depth_in_metres(np.zeros((bus_masks.height, bus_masks.width), np.uint16), "16UC1")
    assert all(o.distance is None for o in find_obstacles(bus_masks, ObstacleSettings(), roi, zeros, CAMERA))


def test_bad_depth_is_refused(bus_masks, roi):
    with pytest.raises(DepthError, match="not aligned"):
        find_obstacles(bus_masks, ObstacleSettings(), roi, np.ones((10, 10), np.float32), CAMERA)
    with pytest.raises(
        DepthError, match=r"^unsupported depth encoding 'mono8' \(use 16UC1 millimetres or 32FC1 metres\)$"
    ):
        depth_in_metres(np.ones((4, 4), np.uint8), "mono8")


def test_roi_must_be_a_polygon_of_fractions():
    with pytest.raises(ValueError, match="3 x, y pairs"):
        roi_mask((0.1, 0.2, 0.3, 0.4), 100, 100)
    with pytest.raises(ValueError, match="fractions"):
        roi_mask((0, 0, 200, 0, 200, 100), 100, 100)
    corridor = roi_mask(ObstacleSettings().roi, 100, 100)
    assert corridor[99, 50] and not corridor[10, 50]


def test_depth_pairing_by_timestamp():
    pairer = DepthPairer(slop_ns=20_000_000)
    assert pairer.match(100) is None
    for stamp in (0, 33_000_000, 66_000_000):
        pairer.add(stamp, stamp)
    assert pairer.match(40_000_000) == 33_000_000
    assert pairer.match(70_000_000) == 66_000_000
    assert pairer.match(120_000_000) is None


def _inside_convex_polygon(vertices: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance-like margin of points (x, y) inside a convex polygon given clockwise in
    image coordinates (y down): positive inside, in pixels from the nearest edge."""
    margins = []
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        length = np.hypot(bx - ax, by - ay)
        margins.append(((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / length)
    return np.min(margins, axis=0)


@pytest.mark.parametrize(("width", "height"), [(320, 120), (90, 240)])
def test_roi_on_a_non_square_frame_covers_the_fractions_of_each_side(width, height):
    """The corridor's pixels, decided here by geometry on pixel centres (not by roi_mask)."""
    roi = ObstacleSettings().roi
    vertices = np.array(roi).reshape(-1, 2) * (width, height)
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    margin = _inside_convex_polygon(vertices, x, y)
    mask = roi_mask(roi, width, height)
    assert mask.shape == (height, width) and mask.dtype == bool
    assert set(np.unique(mask.view(np.uint8))) == {0, 1}, "a bool view whose bytes are 0 and 1 only"
    clear = np.abs(margin) > 1.5
    assert np.array_equal(mask[clear], margin[clear] > 0), "away from the outline, pixels follow the polygon"
    expected_area = 0.5 * 0.45 * (0.4 + 1.0) * width * height
    assert abs(np.count_nonzero(mask) - expected_area) <= 2 * (width + height)
    rows, cols = np.nonzero(margin > 3)
    inside = MaskSet(height, width, (_block(10, (int(cols.min()) + 1, int(rows.max()) - 1)),))
    [obstacle] = find_obstacles(inside, ObstacleSettings(min_area=1), mask)
    assert obstacle.overlap == 1.0, "an object deep inside the corridor lies wholly in it"


def _block(area: int, offset: tuple[int, int] = (0, 0)):
    """An instance whose mask is `area` pixels in rows of 10."""
    rows = -(-area // 10)
    mask = np.zeros((rows, 10), bool)
    mask.reshape(-1)[:area] = True
    ox, oy = offset
    return Instance((ox, oy, ox + 10, oy + rows), 0.9, 0, "box", offset, mask)


@given(area=st.integers(1, 300), min_area=st.integers(0, 300))
def test_an_instance_counts_from_exactly_min_area_pixels(area, min_area):
    frame = MaskSet(40, 20, (_block(area),))
    everywhere = np.ones((40, 20), bool)
    found = find_obstacles(frame, ObstacleSettings(min_area=min_area, min_overlap=0.0), everywhere)
    assert [o.index for o in found] == ([0] if area >= min_area else [])


@given(inside=st.integers(0, 100), min_overlap=st.sampled_from([0.0, 0.05, 0.25, 0.5, 0.73, 1.0]))
def test_an_instance_counts_from_exactly_min_overlap(inside, min_overlap):
    """100 mask pixels, `inside` of them (the first rows) in the region of interest."""
    frame = MaskSet(30, 20, (_block(100, (5, 5)),))
    region = np.zeros((30, 20), bool)
    region[5 : 5 + inside // 10, 5:15] = True
    region[5 + inside // 10, 5 : 5 + inside % 10] = True
    found = find_obstacles(frame, ObstacleSettings(min_area=1, min_overlap=min_overlap), region)
    assert [o.index for o in found] == ([0] if inside / 100 >= min_overlap else [])
    if found:
        assert found[0].overlap == inside / 100


def test_depth_pairing_returns_the_nearest_frame_within_the_slop_inclusive():
    pairer = DepthPairer(slop_ns=20)
    assert not pairer.has_frames
    for stamp in (1000, 1100, 1200):
        pairer.add(stamp, f"depth@{stamp}")
    assert pairer.has_frames
    assert pairer.match(1090) == "depth@1100"
    assert pairer.match(1120) == "depth@1100", "exactly the slop away still pairs"
    assert pairer.match(1121) is None and pairer.match(979) is None


def test_depth_pairing_keeps_the_last_ten_frames():
    pairer = DepthPairer(slop_ns=0)
    for stamp in range(11):
        pairer.add(stamp, stamp)
    assert pairer.match(0) is None, "the oldest of eleven frames is gone"
    assert [pairer.match(stamp) for stamp in range(1, 11)] == list(range(1, 11))
    short = DepthPairer(slop_ns=0, keep=2)
    for stamp in range(3):
        short.add(stamp, stamp)
    assert short.match(0) is None and short.match(2) == 2


@given(st.lists(st.sampled_from([-0.01, 0.0, 0.5, 1.0, 1.01]), min_size=6, max_size=6))
def test_roi_values_outside_zero_to_one_are_refused_with_a_reason(values):
    if all(0.0 <= v <= 1.0 for v in values):
        assert roi_mask(tuple(values), 40, 30).shape == (30, 40)
    else:
        message = "^region of interest: coordinates are fractions of the image size, in \\[0, 1\\]$"
        with pytest.raises(ValueError, match=message):
            roi_mask(tuple(values), 40, 30)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_in_metres_is_float32_and_leaves_the_input_alone(encoding):
    raw = np.array([[0, 1500], [2500, 0]], np.uint16 if encoding == "16UC1" else np.float32)
    if encoding == "32FC1":
        raw = raw / np.float32(1000.0)
    before = raw.copy()
    metres = depth_in_metres(raw, encoding)
    assert metres.dtype == np.float32
    assert np.array_equal(raw, before), "the caller's depth image is not overwritten with NaN"
    assert np.isnan(metres[0, 0]) and metres[0, 1] == np.float32(1.5) and metres[1, 0] == np.float32(2.5)


def test_float_depth_keeps_every_positive_finite_metre_value_and_only_those():
    raw = np.array([[0.001, 0.4, 1.0, 7.5, 0.0, -0.5, np.inf, -np.inf, np.nan]], np.float32)
    metres = depth_in_metres(raw, "32FC1")
    assert np.array_equal(metres[0, :4], raw[0, :4]) and np.isnan(metres[0, 4:]).all()


def test_the_distance_is_the_median_of_every_pixel_of_a_small_mask():
    mask = np.zeros((3, 8), bool)
    mask[1, :] = True
    depth = np.full((3, 8), 9.0, np.float32)
    depth[1, :] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    frame = MaskSet(3, 8, (Instance((0, 0, 8, 3), 0.9, 0, "bar", (0, 0), mask),))
    [obstacle] = find_obstacles(frame, ObstacleSettings(min_area=1), np.ones((3, 8), bool), depth)
    assert obstacle.distance == 4.5


BAR_CAMERA = Intrinsics(fx=100.0, fy=50.0, cx=12.0, cy=20.0)
BAR_ROW = 22


def _bar_obstacle(first_col: int, depths: list[float]):
    """The obstacle of a one-row bar in a 30x30 frame, seen by BAR_CAMERA with these depths."""
    depth = np.full((30, 30), np.nan, np.float32)
    depth[BAR_ROW, first_col : first_col + len(depths)] = depths
    box = (first_col, BAR_ROW, first_col + len(depths), BAR_ROW + 1)
    mask = np.ones((1, len(depths)), bool)
    frame = MaskSet(30, 30, (Instance(box, 0.9, 0, "bar", (first_col, BAR_ROW), mask),))
    [obstacle] = find_obstacles(frame, ObstacleSettings(min_area=1), np.ones((30, 30), bool), depth, BAR_CAMERA)
    return obstacle, depth


def test_the_centroid_keeps_pixels_up_to_exactly_ten_percent_from_the_median():
    """Depths 4, 5, 5, 5.5, 9 m: the median is 5 m; 5.5 m lies exactly on the 10% band and counts."""
    obstacle, _ = _bar_obstacle(10, [4.0, 5.0, 5.0, 5.5, 9.0])
    camera = BAR_CAMERA
    assert obstacle.distance == 5.0
    near = [(11, 5.0), (12, 5.0), (13, 5.5)]
    expected = (
        np.mean([(u - camera.cx) * z / camera.fx for u, z in near]),
        np.mean([(22 - camera.cy) * z / camera.fy for _, z in near]),
        np.mean([z for _, z in near]),
    )
    assert obstacle.centroid == pytest.approx(expected, rel=1e-9)


def test_the_centroid_is_summed_in_double_precision():
    """Depths that float32 cannot hold exactly: sums in float32 would be off by ~1e-7."""
    obstacle, depth = _bar_obstacle(11, [5.0, 5.1, 5.3])
    camera = BAR_CAMERA
    z = depth[22, 11:14].astype(np.float64)
    expected = ((np.arange(11, 14) - camera.cx) @ z / 3 / camera.fx, (22 - camera.cy) * z.mean() / camera.fy, z.mean())
    assert obstacle.centroid == pytest.approx(expected, rel=1e-12)


def test_the_3d_box_spans_the_5th_to_95th_percentile_of_the_pixels_near_the_median():
    """The same bar: 4 m and 9 m lie outside the band; the box is taken over the three others."""
    obstacle, _ = _bar_obstacle(10, [4.0, 5.0, 5.0, 5.5, 9.0])
    camera = BAR_CAMERA
    near = [(11, 5.0), (12, 5.0), (13, 5.5)]
    points = np.array([((u - camera.cx) * z / camera.fx, (22 - camera.cy) * z / camera.fy, z) for u, z in near])
    low, high = np.percentile(points, (5.0, 95.0), axis=0)
    assert len(obstacle.extent[0]) == len(obstacle.extent[1]) == 3
    np.testing.assert_allclose(obstacle.extent, [low, high], rtol=1e-6)


def test_one_pixel_has_a_box_of_its_own_point_and_no_pixel_on_the_grid_leaves_no_box():
    camera = Intrinsics(fx=100.0, fy=100.0, cx=5.0, cy=5.0)
    depth = np.full((12, 12), np.nan, np.float32)
    depth[7, 9] = 2.0
    dot = MaskSet(12, 12, (Instance((9, 7, 10, 8), 0.9, 0, "dot", (9, 7), np.ones((1, 1), bool)),))
    [obstacle] = find_obstacles(dot, ObstacleSettings(min_area=1), np.ones((12, 12), bool), depth, camera)
    point = ((9 - 5.0) * 2.0 / 100.0, (7 - 5.0) * 2.0 / 100.0, 2.0)
    np.testing.assert_allclose(obstacle.extent, [point, point], rtol=1e-6)

    # 300x300 pixels are sampled every second row and column from image pixel 0; depth only
    # on odd pixels gives a distance and a centroid, but no sampled point for a box.
    depth = np.full((302, 302), np.nan, np.float32)
    depth[1::2, 1::2] = 3.0
    square = MaskSet(302, 302, (Instance((1, 1, 301, 301), 0.9, 0, "square", (1, 1), np.ones((300, 300), bool)),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [obstacle] = find_obstacles(square, ObstacleSettings(), np.ones((302, 302), bool), depth, camera)
    assert obstacle.distance == 3.0 and obstacle.centroid is not None and obstacle.extent is None


def test_a_small_instance_does_not_hide_the_ones_after_it():
    frame = MaskSet(40, 20, (_block(5), _block(50, (0, 10)), _block(5, (0, 20)), _block(60, (0, 30))))
    found = find_obstacles(frame, ObstacleSettings(min_area=10, min_overlap=0.0), np.ones((40, 20), bool))
    assert sorted(o.index for o in found) == [1, 3]
    assert [o.index for o in found] == [3, 1], "without depth, larger first"


def test_a_misaligned_depth_image_is_named_by_its_size():
    frame = MaskSet(40, 20, (_block(50),))
    with pytest.raises(DepthError, match=r"^depth image 12x10 is not aligned with the 20x40 frame$"):
        find_obstacles(frame, ObstacleSettings(), np.ones((40, 20), bool), np.ones((10, 12), np.float32))


@given(
    distances=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=4),
    max_distance=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]),
)
def test_max_distance_keeps_obstacles_up_to_exactly_the_limit(distances, max_distance):
    """Instance i is a 50-pixel block at distances[i] metres; 0 means no limit."""
    blocks = tuple(_block(50, (0, 10 * i)) for i in range(len(distances)))
    depth = np.full((40, 10), np.nan, np.float32)
    for i, distance in enumerate(distances):
        depth[10 * i : 10 * i + 5] = distance
    frame = MaskSet(40, 10, blocks)
    settings = ObstacleSettings(min_area=1, min_overlap=0.0, max_distance=max_distance)
    found = find_obstacles(frame, settings, np.ones((40, 10), bool), depth)
    kept = [i for i, d in enumerate(distances) if max_distance == 0 or d <= max_distance]
    assert sorted(o.index for o in found) == kept
    assert [o.distance for o in found] == sorted(distances[i] for i in kept), "nearest first"


def test_obstacles_without_a_depth_reading_come_after_those_with_one():
    frame = MaskSet(40, 10, (_block(60), _block(50, (0, 10)), _block(40, (0, 20))))
    depth = np.full((40, 10), np.nan, np.float32)
    depth[10:15] = 3.0
    depth[20:24] = 2.0
    found = find_obstacles(frame, ObstacleSettings(min_area=1, min_overlap=0.0), np.ones((40, 10), bool), depth)
    assert [(o.index, o.distance) for o in found] == [(2, 2.0), (1, 3.0), (0, None)]


CLOUD_CAMERA = Intrinsics(fx=2.0, fy=4.0, cx=3.0, cy=2.0)
"""Powers of two and whole centres: every point coordinate and squared range below is exact in float32."""
CLOUD_DEPTHS = np.array([np.nan, 1.0, 2.0, 4.0, 4.25], np.float32)
"""4.25 m lies within 10% of 4 m; the others are far from each other's bands."""


@st.composite
def _cloud_scenes(draw):
    """A 10x8 frame of 1 to 3 instances anywhere, depth from CLOUD_DEPTHS, and obstacles for some of
    the instances in any order, each with a distance or without one."""
    height, width = 8, 10
    instances = []
    for index in range(draw(st.integers(1, 3))):
        mask = draw(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 5))))
        rows, cols = mask.shape
        ox, oy = draw(st.integers(0, width - cols)), draw(st.integers(0, height - rows))
        instances.append(Instance((ox, oy, ox + cols, oy + rows), 0.9, 0, f"thing {index}", (ox, oy), mask))
    depth = CLOUD_DEPTHS[draw(arrays(np.int8, (height, width), elements=st.integers(0, len(CLOUD_DEPTHS) - 1)))]
    chosen = draw(st.permutations(range(len(instances))))[: draw(st.integers(0, len(instances)))]
    distances = draw(st.lists(st.sampled_from([None, 1.0, 2.0, 4.0]), min_size=len(chosen), max_size=len(chosen)))
    obstacles = [Obstacle(index, 1.0, distance) for index, distance in zip(chosen, distances, strict=True)]
    return MaskSet(height, width, tuple(instances)), obstacles, depth


def _cloud_by_hand(masks, obstacles, depth, decimation, max_range):
    """Every mask pixel (u, v) of an obstacle with a distance d, on the grid u, v = 0 mod decimation,
    whose depth z is within 0.1 d of d, as ((u - cx) z / fx, (v - cy) z / fy, z), within max_range."""
    camera = CLOUD_CAMERA
    points = []
    for obstacle in obstacles:
        if obstacle.distance is None:
            continue
        instance = masks[obstacle.index]
        ox, oy = instance.mask_offset
        for row, col in zip(*np.nonzero(instance.mask), strict=True):
            u, v = ox + int(col), oy + int(row)
            z = float(depth[v, u])
            if u % decimation or v % decimation or not abs(z - obstacle.distance) <= 0.1 * obstacle.distance:
                continue
            point = ((u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z)
            if max_range == 0 or sum(c * c for c in point) <= max_range * max_range:
                points.append(point)
    return sorted(points)


@given(
    scene=_cloud_scenes(),
    decimation=st.integers(1, 3),
    max_range=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.5, 6.0]),
)
def test_the_cloud_holds_the_near_depth_points_of_obstacles_on_the_decimation_grid(scene, decimation, max_range):
    masks, obstacles, depth = scene
    cloud = obstacle_cloud(masks, obstacles, depth, CLOUD_CAMERA, decimation=decimation, max_range=max_range)
    assert cloud.dtype == np.float32 and cloud.ndim == 2 and cloud.shape[1] == 3
    assert sorted(map(tuple, cloud.tolist())) == _cloud_by_hand(masks, obstacles, depth, decimation, max_range)


def test_by_default_the_cloud_takes_every_pixel_at_any_range():
    """A 2 x 3 wall 4 m away: each of its pixels is a point, though none lies within 4 m of the camera."""
    mask = np.ones((2, 3), bool)
    frame = MaskSet(8, 10, (Instance((5, 3, 8, 5), 0.9, 0, "wall", (5, 3), mask),))
    depth = np.full((8, 10), 4.0, np.float32)
    cloud = obstacle_cloud(frame, [Obstacle(0, 1.0, 4.0)], depth, CLOUD_CAMERA)
    expected = [((u - 3.0) * 2.0, (v - 2.0) * 1.0, 4.0) for v in (3, 4) for u in (5, 6, 7)]
    assert sorted(map(tuple, cloud.tolist())) == sorted(expected)


def test_the_decimation_grid_is_anchored_at_image_pixel_zero_whatever_the_crop_offset():
    """A 6 x 7 crop at column 2, row 1, every third pixel: columns 3 and 6 of rows 3 and 6, not the crop's own
    rows and columns 0 and 3."""
    frame = MaskSet(8, 10, (Instance((2, 1, 9, 7), 0.9, 0, "wall", (2, 1), np.ones((6, 7), bool)),))
    depth = np.full((8, 10), 2.0, np.float32)
    cloud = obstacle_cloud(frame, [Obstacle(0, 1.0, 2.0)], depth, CLOUD_CAMERA, decimation=3)
    expected = [((u - 3.0) * 2.0 / 2.0, (v - 2.0) * 2.0 / 4.0, 2.0) for v in (3, 6) for u in (3, 6)]
    assert sorted(map(tuple, cloud.tolist())) == sorted(expected)


def test_an_obstacle_without_a_distance_does_not_hide_the_ones_after_it():
    frame = MaskSet(
        8, 10, tuple(Instance((u, 2, u + 1, 3), 0.9, 0, "post", (u, 2), np.ones((1, 1), bool)) for u in (3, 5))
    )
    depth = np.full((8, 10), 2.0, np.float32)
    cloud = obstacle_cloud(frame, [Obstacle(0, 1.0, None), Obstacle(1, 1.0, 2.0)], depth, CLOUD_CAMERA)
    assert cloud.tolist() == [[2.0, 0.0, 2.0]], "only the post at column 5, 2 m away: x = (5 - 3) * 2 / 2"


def test_a_cloud_point_exactly_at_the_range_limit_is_kept():
    """The pixel at the principal point lies on the optical axis: its range is its depth."""
    frame = MaskSet(8, 10, (Instance((3, 2, 4, 3), 0.9, 0, "post", (3, 2), np.ones((1, 1), bool)),))
    depth = np.full((8, 10), 2.0, np.float32)
    obstacles = [Obstacle(0, 1.0, 2.0)]
    assert obstacle_cloud(frame, obstacles, depth, CLOUD_CAMERA, max_range=2.0).tolist() == [[0.0, 0.0, 2.0]]
    assert obstacle_cloud(frame, obstacles, depth, CLOUD_CAMERA, max_range=1.99).shape == (0, 3)


def test_no_obstacles_give_an_empty_float32_cloud():
    cloud = obstacle_cloud(MaskSet(8, 10), [], np.full((8, 10), 1.0, np.float32), CLOUD_CAMERA)
    assert cloud.shape == (0, 3) and cloud.dtype == np.float32


@pytest.mark.parametrize("decimation", [0, -1])
def test_a_cloud_decimation_below_one_is_refused(decimation):
    with pytest.raises(ValueError, match=rf"^decimation must be at least 1, got {decimation}$"):
        obstacle_cloud(MaskSet(8, 10), [], np.ones((8, 10), np.float32), CLOUD_CAMERA, decimation=decimation)


def test_missing_depth_of_either_nan_kind_raises_no_floating_point_warning():
    """Depth passed straight in may hold signalling NaNs (raw 32FC1 bytes can); subtracting the distance
    from one raises the invalid-operation flag, which must not surface as a RuntimeWarning."""
    mask = np.ones((2, 3), bool)
    depth = np.full((2, 3), 2.0, np.float32)
    depth[0, 0] = np.nan
    depth.view(np.uint32)[1, 2] = 0x7FA00000
    assert np.isnan(depth[1, 2])
    frame = MaskSet(2, 3, (Instance((0, 0, 3, 2), 0.9, 0, "wall", (0, 0), mask),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [obstacle] = find_obstacles(frame, ObstacleSettings(min_area=1), np.ones((2, 3), bool), depth, CLOUD_CAMERA)
        cloud = obstacle_cloud(frame, [obstacle], depth, CLOUD_CAMERA)
    assert obstacle.distance == 2.0 and obstacle.centroid is not None
    assert len(cloud) == 4


def test_the_centroid_of_an_instance_anywhere_is_the_mean_of_its_pixels_near_its_median_depth():
    intrinsics = Intrinsics(fx=500.0, fy=400.0, cx=31.0, cy=17.0)
    depth = np.full((40, 60), 9.0, np.float32)
    ox, oy = 37, 11
    rng = np.random.default_rng(3)
    depth[oy : oy + 6, ox : ox + 9] = rng.uniform(2.0, 2.1, (6, 9)).astype(np.float32)
    mask = np.ones((6, 9), bool)
    mask[0, :4] = False
    depth[oy + 5, ox + 8] = np.nan
    depth[oy + 4, ox + 2] = 3.5
    instance = Instance((37.0, 11.0, 46.0, 17.0), 0.9, 0, "thing", (ox, oy), mask)
    crop = depth[oy : oy + 6, ox : ox + 9]
    rows, cols = np.nonzero(mask & (crop < 3.0))
    z = depth[rows + oy, cols + ox].astype(np.float64)
    expected = (
        np.mean((cols + ox - 31.0) * z) / 500.0,
        np.mean((rows + oy - 17.0) * z) / 400.0,
        np.mean(z),
    )
    assert centroid_of(instance, depth, intrinsics) == pytest.approx(expected, rel=1e-6)
    depth[oy : oy + 6, ox : ox + 9] = np.nan
    assert centroid_of(instance, depth, intrinsics) is None


def test_a_tall_instances_centroid_is_summed_in_double_precision():
    """Summing a 2000-row column of float32 depths in float32 is off by 2.5e-7 here; in double, 1e-15."""
    intrinsics = Intrinsics(fx=500.0, fy=400.0, cx=31.0, cy=17.0)
    depth = np.random.default_rng(5).uniform(2.0, 2.1, (2000, 40)).astype(np.float32)
    instance = Instance((0.0, 0.0, 40.0, 2000.0), 0.9, 0, "thing", (0, 0), np.ones(depth.shape, bool))
    rows, cols = np.indices(depth.shape).reshape(2, -1)
    z = depth.ravel().astype(np.float64)
    expected = (np.mean((cols - 31.0) * z) / 500.0, np.mean((rows - 17.0) * z) / 400.0, np.mean(z))
    assert centroid_of(instance, depth, intrinsics) == pytest.approx(expected, rel=1e-9)
