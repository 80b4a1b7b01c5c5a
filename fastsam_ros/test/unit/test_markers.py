"""The rviz markers of one frame: every marker's frame, namespace, id, pose, scale and colour.

Expected poses are worked out by hand from the pinhole model (x right, y down, z forward)
for a scene whose numbers are chosen so that swapped axes, a wrong focal length or a
dropped offset give different values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.obstacles import Intrinsics, Obstacle
from fastsam_ros.ros.markers import (
    FOLLOWED_SIZE,
    GREEN,
    ORANGE,
    RED,
    WHITE,
    YELLOW,
    obstacle_label,
    obstacle_markers,
)

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")
INTRINSICS = Intrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0)


def _instance(box, class_name="", track_id=-1) -> Instance:
    x1, y1, x2, y2 = box
    mask = np.ones((int(y2 - y1), int(x2 - x1)), bool)
    return Instance(box, 0.9, 0 if class_name else -1, class_name, (int(x1), int(y1)), mask, track_id)


def _track(track_id, position, velocity, time_to_contact=None) -> ObstacleTrack:
    return ObstacleTrack(track_id, position, velocity, (0.01,) * 3, (0.1,) * 3, 1.0, time_to_contact)


MASKS = MaskSet(
    480,
    640,
    (
        _instance((100, 50, 200, 250), "person", track_id=7),
        _instance((400, 100, 440, 180), "car", track_id=0),
        _instance((420, 240, 620, 400)),
        _instance((10, 10, 12, 300), "pole"),
    ),
)
OBSTACLES = [
    # A 3D box from its extent.
    Obstacle(0, 0.9, 2.0, (0.1, 0.2, 2.0), ((-0.5, -1.0, 1.8), (0.5, 0.6, 2.4))),
    # No extent: a box sized from the pixel box at the centroid's depth.
    Obstacle(1, 0.8, 4.0, (1.0, -0.5, 4.0)),
    # No depth: a ray through the box centre.
    Obstacle(2, 0.7),
    # A flat extent and a thin pixel box: the smallest side drawn.
    Obstacle(3, 0.6, 5.0, (0.2, 0.0, 5.0), ((0.2, -1.0, 5.0), (0.21, 1.0, 5.0))),
]
TRACKS = {
    7: _track(7, (0.1, 0.2, 2.0), (0.5, 0.0, -1.0), time_to_contact=2.0),
    0: _track(0, (1.0, -0.5, 4.0), (0.0, 0.3, 0.0)),
    -1: _track(-1, (9.0, 9.0, 9.0), (9.0, 9.0, 9.0)),
}


@pytest.fixture
def markers() -> list[Marker]:
    """Made for each test, so that a mutation run ties every test here to obstacle_markers."""
    return list(obstacle_markers(HEADER, MASKS, OBSTACLES, INTRINSICS, TRACKS).markers)


def _find(markers: list[Marker], ns: str, number: int) -> Marker:
    found = [m for m in markers if m.ns == ns and m.id == number]
    assert len(found) == 1, f"one marker {ns}/{number}, got {len(found)}"
    return found[0]


def _xyz(point) -> tuple[float, float, float]:
    return (point.x, point.y, point.z)


def _rgba(colour) -> tuple[float, float, float, float]:
    return (colour.r, colour.g, colour.b, colour.a)


def test_the_first_marker_deletes_every_earlier_one_and_all_share_the_frame_header(markers):
    assert markers[0].action == Marker.DELETEALL
    assert all(m.action == Marker.ADD for m in markers[1:])
    for marker in markers:
        assert marker.header.frame_id == "camera_optical"
        assert (marker.header.stamp.sec, marker.header.stamp.nanosec) == (12, 345)
    assert all(m.pose.orientation.w == 1.0 for m in markers[1:]), "a zero quaternion is refused by rviz"


def test_without_intrinsics_only_the_delete_is_sent():
    alone = obstacle_markers(HEADER, MASKS, OBSTACLES, None, TRACKS, [("follow a", TRACKS[7])]).markers
    assert [m.action for m in alone] == [Marker.DELETEALL]
    assert alone[0].header.frame_id == "camera_optical"


def test_namespaces_and_ids_number_the_obstacles_in_order(markers):
    kinds = sorted((m.ns, m.id, m.type) for m in markers[1:])
    assert kinds == sorted(
        [
            ("obstacles", 0, Marker.CUBE),
            ("obstacle_labels", 0, Marker.TEXT_VIEW_FACING),
            ("obstacle_velocities", 0, Marker.ARROW),
            ("obstacles", 1, Marker.CUBE),
            ("obstacle_labels", 1, Marker.TEXT_VIEW_FACING),
            ("obstacle_velocities", 1, Marker.ARROW),
            ("obstacle_rays", 2, Marker.ARROW),
            ("obstacle_labels", 2, Marker.TEXT_VIEW_FACING),
            ("obstacles", 3, Marker.CUBE),
            ("obstacle_labels", 3, Marker.TEXT_VIEW_FACING),
        ]
    ), "track id 0 is a track; an instance without a track (-1) has no velocity arrow"


def test_a_box_with_an_extent_is_centred_on_it_and_spans_it(markers):
    body = _find(markers, "obstacles", 0)
    assert _xyz(body.pose.position) == pytest.approx((0.0, -0.2, 2.1))
    assert _xyz(body.scale) == pytest.approx((1.0, 1.6, 0.6))
    assert _rgba(body.color) == _rgba(RED)


def test_a_box_without_extent_is_the_pixel_box_at_the_centroid_depth(markers):
    body = _find(markers, "obstacles", 1)
    assert _xyz(body.pose.position) == pytest.approx((1.0, -0.5, 4.0))
    # 40 px wide at 4 m with fx 500, 80 px high with fy 400; a fixed 0.3 m deep.
    assert _xyz(body.scale) == pytest.approx((0.32, 0.8, 0.3))


def test_flat_objects_keep_the_smallest_visible_side(markers):
    body = _find(markers, "obstacles", 3)
    assert _xyz(body.scale) == pytest.approx((0.05, 2.0, 0.05))
    assert _xyz(body.pose.position) == pytest.approx((0.205, 0.0, 5.0))
    thin = Obstacle(3, 0.6, 5.0, (0.2, 0.0, 5.0))
    [_, body, _] = obstacle_markers(HEADER, MASKS, [thin], INTRINSICS).markers
    # 2 px wide at 5 m: 0.02 m, drawn 0.05 m; 290 px high: 3.625 m.
    assert _xyz(body.scale) == pytest.approx((0.05, 3.625, 0.3))


def test_labels_float_above_their_box_and_say_what_and_how_far(markers):
    label = _find(markers, "obstacle_labels", 0)
    assert _xyz(label.pose.position) == pytest.approx((0.0, -0.2 - 0.8 - 0.1, 2.1)), "half the box height up, +0.1"
    assert label.text == "person id7 2.00 m 1.12 m/s contact in 2.0 s"
    assert _rgba(label.color) == _rgba(WHITE) and label.scale.z == pytest.approx(0.12)
    label = _find(markers, "obstacle_labels", 1)
    assert _xyz(label.pose.position) == pytest.approx((1.0, -0.5 - 0.4 - 0.1, 4.0))
    assert label.text == "car id0 4.00 m 0.30 m/s"
    assert _find(markers, "obstacle_labels", 3).text == "pole 5.00 m"


def test_an_obstacle_without_depth_gets_a_one_metre_ray_through_its_box_centre(markers):
    ray = _find(markers, "obstacle_rays", 2)
    # Box centre (520, 320): ((520 - 320) / 500, (320 - 240) / 400, 1) = (0.4, 0.2, 1), scaled to 1 m.
    norm = math.sqrt(0.4**2 + 0.2**2 + 1.0)
    end = (0.4 / norm, 0.2 / norm, 1.0 / norm)
    assert [_xyz(p) for p in ray.points] == [(0.0, 0.0, 0.0), pytest.approx(end)]
    assert _xyz(ray.scale) == pytest.approx((0.02, 0.05, 0.08))
    assert _rgba(ray.color) == _rgba(ORANGE)
    label = _find(markers, "obstacle_labels", 2)
    assert label.text == "object (no depth)"
    assert _xyz(label.pose.position) == pytest.approx(end)


def test_velocity_arrows_run_from_the_filtered_position_one_second_ahead(markers):
    arrow = _find(markers, "obstacle_velocities", 0)
    assert [_xyz(p) for p in arrow.points] == [pytest.approx((0.1, 0.2, 2.0)), pytest.approx((0.6, 0.2, 1.0))]
    assert _xyz(arrow.scale) == pytest.approx((0.04, 0.08, 0.1))
    assert _rgba(arrow.color) == _rgba(GREEN)
    arrow = _find(markers, "obstacle_velocities", 1)
    assert [_xyz(p) for p in arrow.points] == [pytest.approx((1.0, -0.5, 4.0)), pytest.approx((1.0, -0.2, 4.0))]


def test_followed_objects_get_a_yellow_sphere_and_their_label_above_it():
    followed = [("follow bob", TRACKS[7]), ("follow #2", TRACKS[0])]
    markers = list(obstacle_markers(HEADER, MASKS, [], INTRINSICS, TRACKS, followed).markers)
    assert markers[0].action == Marker.DELETEALL
    for number, (text, track) in enumerate(followed):
        sphere = _find(markers, "followed", number)
        assert sphere.type == Marker.SPHERE and _rgba(sphere.color) == _rgba(YELLOW)
        assert _xyz(sphere.pose.position) == pytest.approx(track.position)
        assert _xyz(sphere.scale) == pytest.approx((FOLLOWED_SIZE,) * 3)
        label = _find(markers, "followed_labels", number)
        assert label.type == Marker.TEXT_VIEW_FACING and label.text == text
        assert _rgba(label.color) == _rgba(YELLOW) and label.scale.z == pytest.approx(0.15)
        x, y, z = track.position
        assert _xyz(label.pose.position) == pytest.approx((x, y - FOLLOWED_SIZE, z))
        assert sphere.header.frame_id == label.header.frame_id == "camera_optical"
        assert sphere.pose.orientation.w == label.pose.orientation.w == 1.0, "a zero quaternion is refused by rviz"
    assert len(markers) == 1 + 2 * len(followed)


def test_obstacle_labels_name_unknown_classes_and_leave_out_what_is_missing():
    assert obstacle_label(MASKS, Obstacle(2, 0.5)) == "object (no depth)"
    assert obstacle_label(MASKS, Obstacle(1, 0.5, 0.125)) == "car id0 0.12 m"
    approaching = _track(7, (0.0, 0.0, 3.0), (0.0, 0.0, -2.0), time_to_contact=1.5)
    assert obstacle_label(MASKS, Obstacle(0, 0.5, 3.0), approaching) == "person id7 3.00 m 2.00 m/s contact in 1.5 s"


def test_without_tracks_no_obstacle_has_a_velocity_arrow():
    tracked = Obstacle(0, 0.9, 2.0, (0.1, 0.2, 2.0))
    alone = obstacle_markers(HEADER, MASKS, [tracked], INTRINSICS).markers
    assert [m.ns for m in alone[1:]] == ["obstacles", "obstacle_labels"]
    assert alone[2].text == "person id7 2.00 m", "no speed without a track"
