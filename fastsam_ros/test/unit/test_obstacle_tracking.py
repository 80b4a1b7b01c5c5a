"""3D obstacle tracks, boxes and the obstacle cloud: the filter alone, then the whole
pipeline on a real photo whose person walks with a known velocity in synthetic depth."""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np
import pytest
from std_msgs.msg import Header

from fastsam_ros.core.obstacle_tracking import (
    ConstantVelocityFilter,
    MotionSettings,
    ObstacleMotionTracker,
    time_to_contact,
)
from fastsam_ros.core.obstacles import ObstacleSettings, obstacle_cloud, roi_mask
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.tracking import TrackerConfigError
from fastsam_ros.ros.convert import obstacles_to_msg, points_to_cloud
from fastsam_ros.ros.markers import obstacle_markers
from test_support.moving_object import moving_object_scene

WHOLE_IMAGE = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0)
SETTLE_FRAMES = 10


def test_filter_recovers_a_constant_velocity_from_noisy_positions():
    rng = np.random.default_rng(3)
    velocity = np.array([0.5, -0.2, -1.2])
    tracker = ObstacleMotionTracker()
    for step in range(30):
        truth = np.array([1.0, 0.5, 8.0]) + velocity * step * 0.1
        track = tracker.update(step * 100_000_000, {7: tuple(truth + rng.normal(0, 0.02, 3))})[7]
    assert np.linalg.norm(np.array(track.velocity) - velocity) <= 0.1 * np.linalg.norm(velocity)
    assert np.linalg.norm(np.array(track.position) - truth) <= 0.05
    assert track.age_s == pytest.approx(2.9)
    assert track.time_to_contact == pytest.approx(time_to_contact(truth, velocity, 0.05), rel=0.1)


def test_filter_predicts_along_the_velocity():
    kalman = ConstantVelocityFilter(np.zeros(3), 0.01, 0.01)
    kalman.state[3:] = (1.0, 0.0, -2.0)
    kalman.predict(0.5, 1.0)
    assert np.allclose(kalman.position, (0.5, 0.0, -1.0))


def axis_block(covariance: np.ndarray, axis: int) -> np.ndarray:
    """The 2x2 covariance of one axis's position and velocity."""
    index = [axis, axis + 3]
    return covariance[np.ix_(index, index)]


def test_filter_starts_at_rest_with_the_uncertainty_it_is_given():
    motion = ConstantVelocityFilter(np.array([1, 2, 3]), position_std=0.5, speed_std=2.0)
    assert motion.state.tolist() == [1.0, 2.0, 3.0, 0.0, 0.0, 0.0]
    assert np.array_equal(motion.covariance, np.diag([0.25] * 3 + [4.0] * 3))


def test_prediction_moves_uncertainty_with_time_and_adds_white_noise_acceleration():
    """Per axis P' = F P F^T + q [[dt^3/3, dt^2/2], [dt^2/2, dt]] with F = [[1, dt], [0, 1]]."""
    motion = ConstantVelocityFilter(np.zeros(3), position_std=2.0, speed_std=3.0)
    motion.state = np.array([0.0, 0.0, 0.0, 1.0, -2.0, 0.5])
    dt, q = 1.5, 0.75
    motion.predict(dt, q)
    assert np.allclose(motion.state, [1.5, -3.0, 0.75, 1.0, -2.0, 0.5])
    p, v = 4.0, 9.0
    expected = np.array([[p + dt**2 * v + q * dt**3 / 3, dt * v + q * dt**2 / 2], [dt * v + q * dt**2 / 2, v + q * dt]])
    for axis in range(3):
        assert np.allclose(axis_block(motion.covariance, axis), expected), axis
    assert np.count_nonzero(motion.covariance[:3, :3] - np.diag(np.diag(motion.covariance[:3, :3]))) == 0


def test_update_weighs_the_measurement_against_the_prediction_by_their_variances():
    """One axis with position variance p, velocity variance v, cross term c, measurement variance r:
    gain (p, c) / (p + r); the covariance loses gain times the first row."""
    motion = ConstantVelocityFilter(np.zeros(3), position_std=1.0, speed_std=1.0)
    p, c, v, std = 4.0, 2.0, 9.0, 3.0
    r = std**2
    motion.covariance = np.kron(np.array([[p, c], [c, v]]), np.eye(3))
    motion.update(np.array([13, 0, -26]), std)
    s = p + r
    assert np.allclose(motion.position, [13 * p / s, 0.0, -26 * p / s])
    assert np.allclose(motion.velocity, [13 * c / s, 0.0, -26 * c / s])
    expected = np.array([[p - p * p / s, c - p * c / s], [c - c * p / s, v - c * c / s]])
    for axis in range(3):
        assert np.allclose(axis_block(motion.covariance, axis), expected), axis
    assert np.array_equal(motion.covariance, motion.covariance.T)


def test_a_track_reports_its_id_variances_and_age():
    tracker = ObstacleMotionTracker()
    first = tracker.update(10**9, {7: (0.5, 0.0, 2.0)})[7]
    later = tracker.update(3 * 10**9, {7: (0.5, 0.0, 2.0)})[7]
    assert first.track_id == 7 and later.track_id == 7
    assert first.age_s == 0.0 and later.age_s == 2.0
    assert len(later.position_variance) == 3 and len(later.velocity_variance) == 3
    assert all(a < b for a, b in zip(later.position_variance, first.position_variance, strict=True)), (
        "a second measurement at the same place makes the position surer"
    )


def test_time_to_contact_only_when_approaching():
    assert time_to_contact(np.array([0.0, 0.0, 6.0]), np.array([0.0, 0.0, -2.0]), 0.05) == pytest.approx(3.0)
    assert time_to_contact(np.array([0.0, 0.0, 6.0]), np.array([0.0, 0.0, 2.0]), 0.05) is None
    assert time_to_contact(np.array([0.0, 0.0, 6.0]), np.array([1.0, 0.0, 0.0]), 0.05) is None


def test_tracks_are_forgotten_after_a_gap_and_repeats_are_ignored():
    tracker = ObstacleMotionTracker(MotionSettings(max_gap_s=0.5))
    tracker.update(0, {1: (0.0, 0.0, 5.0), 2: (1.0, 0.0, 5.0)})
    again = tracker.update(0, {1: (9.0, 9.0, 9.0)})[1]
    assert again.position == (0.0, 0.0, 5.0), "a repeated stamp leaves the filter as it was"
    tracker.update(400_000_000, {1: (0.0, 0.0, 5.0)})
    assert len(tracker) == 2
    tracker.update(600_000_000, {1: (0.0, 0.0, 5.0)})
    assert len(tracker) == 1, "track 2 unseen for 0.6 s is dropped"
    assert tracker.update(700_000_000, {2: (1.0, 0.0, 5.0)})[2].age_s == 0.0


@pytest.fixture(scope="module")
def walk(engine):
    """The pipeline over the walking-person sequence: the scene and each frame's output."""
    scene = moving_object_scene(engine)
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=WHOLE_IMAGE, cloud_decimation=3))
    outputs = []
    for frame, depth, stamp in zip(scene.frames, scene.depths, scene.stamps_ns, strict=True):
        masks = engine.segment(frame, stamp, "camera_optical")
        outputs.append(perception.process_masks(masks, frame, depth, scene.intrinsics, want_cloud=True))
    return scene, outputs


def _walker(output, z: float):
    """The obstacle at the walking person's true range."""
    return min((o for o in output.obstacles if o.distance is not None), key=lambda o: abs(o.distance - z))


def test_a_walking_person_keeps_its_track_and_gets_its_velocity(walk):
    scene, outputs = walk
    ids = []
    for index, output in enumerate(outputs):
        truth = scene.positions[index]
        walker = _walker(output, truth[2])
        track_id = output.masks[walker.index].track_id
        ids.append(track_id)
        assert np.linalg.norm(np.array(walker.centroid) - truth) <= 0.03 * np.linalg.norm(truth), index
        if index < SETTLE_FRAMES:
            continue
        track = output.tracks[track_id]
        position_error = np.linalg.norm(np.array(track.position) - truth) / np.linalg.norm(truth)
        velocity_error = np.linalg.norm(np.array(track.velocity) - scene.velocity) / np.linalg.norm(scene.velocity)
        assert position_error <= 0.03, (index, track.position, truth)
        assert velocity_error <= 0.10, (index, track.velocity, scene.velocity)
        assert track.time_to_contact == pytest.approx(time_to_contact(truth, scene.velocity, 0.05), rel=0.15), (
            "approaching: range over closing speed"
        )
    assert ids[0] >= 0 and set(ids) == {ids[0]}, f"the walker's track id changed: {ids}"
    assert outputs[-1].tracks[ids[0]].age_s == pytest.approx((scene.stamps_ns[-1] - scene.stamps_ns[0]) / 1e9)


def test_the_3d_box_spans_the_walkers_points(walk):
    scene, outputs = walk
    output, truth = outputs[-1], scene.positions[-1]
    walker = _walker(output, truth[2])
    low, high = np.array(walker.extent[0]), np.array(walker.extent[1])
    mask = scene.object_masks[-1] & output.masks[walker.index].full_mask(output.masks.height, output.masks.width)
    rows, cols = np.nonzero(mask)
    k = scene.intrinsics
    points = np.stack([(cols - k.cx) * truth[2] / k.fx, (rows - k.cy) * truth[2] / k.fy], axis=1)
    expected_low, expected_high = np.percentile(points, (5, 95), axis=0)
    assert np.allclose(low[:2], expected_low, atol=0.03) and np.allclose(high[:2], expected_high, atol=0.03)
    assert low[2] == pytest.approx(truth[2], abs=1e-3) and high[2] == pytest.approx(truth[2], abs=1e-3)
    assert high[1] - low[1] > 1.0, "a standing person is taller than a metre"


def test_the_cloud_holds_the_obstacle_points_on_the_decimation_grid_within_range(walk):
    scene, outputs = walk
    output, depth, k = outputs[-1], scene.depths[-1], scene.intrinsics
    masks = output.masks
    grid = np.zeros((masks.height, masks.width), dtype=bool)
    grid[::3, ::3] = True
    expected = []
    for obstacle in output.obstacles:
        mask = masks[obstacle.index].full_mask(masks.height, masks.width)
        on_object = np.abs(depth - obstacle.distance) <= 0.1 * obstacle.distance
        rows, cols = np.nonzero(mask & on_object & grid & (depth < 10.0))
        z = depth[rows, cols]
        expected.append(np.stack([(cols - k.cx) * z / k.fx, (rows - k.cy) * z / k.fy, z], axis=1))
    expected = np.concatenate(expected)
    cloud = output.cloud
    assert cloud.dtype == np.float32 and cloud.shape == expected.shape and len(cloud) > 500
    order = np.lexsort(cloud.T)
    assert np.allclose(cloud[order], expected[np.lexsort(expected.T)], atol=1e-4)
    assert np.all(np.linalg.norm(cloud, axis=1) <= 10.0), "background at 25 m is beyond the cloud's range"


def test_cloud_settings_are_applied(walk, engine):
    scene, outputs = walk
    output = outputs[-1]
    args = (output.masks, output.obstacles, scene.depths[-1], scene.intrinsics)
    full = obstacle_cloud(*args, decimation=1, max_range=0.0)
    assert len(obstacle_cloud(*args, decimation=2, max_range=0.0)) < len(full) / 3
    assert len(obstacle_cloud(*args, decimation=1, max_range=scene.positions[-1][2] - 0.5)) == 0
    with pytest.raises(ValueError, match="decimation"):
        obstacle_cloud(*args, decimation=0)


def test_messages_and_markers_carry_the_motion(walk):
    scene, outputs = walk
    output = outputs[-1]
    header = Header(frame_id="camera_optical")
    header.stamp.sec = scene.stamps_ns[-1] // 10**9
    msg = obstacles_to_msg(header, output.masks, output.obstacles, True, output.tracks)
    walker = _walker(output, scene.positions[-1][2])
    item = next(o for o in msg.obstacles if o.instance_id == walker.index)
    track = output.tracks[output.masks[walker.index].track_id]
    assert item.has_motion and item.has_extent and item.has_time_to_contact
    assert (item.velocity.x, item.velocity.y, item.velocity.z) == pytest.approx(track.velocity)
    assert (item.position.x, item.position.y, item.position.z) == pytest.approx(track.position)
    assert item.time_to_contact == pytest.approx(track.time_to_contact, rel=1e-6)
    assert item.age == pytest.approx(track.age_s)
    assert item.extent_min.z <= item.centroid.z <= item.extent_max.z
    markers = obstacle_markers(header, output.masks, output.obstacles, scene.intrinsics, output.tracks).markers
    arrows = [m for m in markers if m.ns == "obstacle_velocities"]
    assert len(arrows) == len(output.tracks)
    arrow = next(a for a in arrows if a.points[0].z == pytest.approx(track.position[2]))
    assert arrow.points[1].z - arrow.points[0].z == pytest.approx(track.velocity[2])
    assert any("m/s" in m.text and "contact in" in m.text for m in markers if m.type == m.TEXT_VIEW_FACING)


def test_cloud_message_fields_for_costmaps(walk):
    _, outputs = walk
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 1000, 500
    cloud = outputs[-1].cloud
    msg = points_to_cloud(cloud, header)
    assert msg.header.frame_id == "camera_optical" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1000, 500)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
    ]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, len(cloud), 12, 12 * len(cloud))
    assert msg.is_dense and not msg.is_bigendian
    assert np.array_equal(np.frombuffer(bytes(msg.data), dtype="<f4").reshape(-1, 3), cloud)
    empty = points_to_cloud(np.zeros((0, 3), np.float32), header)
    assert (empty.width, empty.row_step, len(empty.data)) == (0, 0, 0)


def test_a_tracker_switch_reads_its_settings_file_and_a_bad_one_keeps_the_tracker(engine, walk, tmp_path):
    scene, _ = walk
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    (tmp_path / "short.yaml").write_text("track_buffer: 5\n")
    perception.set_tracker("bytetrack", str(tmp_path / "short.yaml"))
    assert perception._tracker.settings["track_buffer"] == 5
    (tmp_path / "bad.yaml").write_text("track_bufer: 5\n")
    with pytest.raises(TrackerConfigError):
        perception.set_tracker("botsort", str(tmp_path / "bad.yaml"))
    kept = perception._tracker.settings
    assert (kept["tracker_type"], kept["track_buffer"]) == ("bytetrack", 5), "kept"
    masks = engine.segment(scene.frames[0], scene.stamps_ns[0])
    assert any(i.track_id >= 0 for i in perception.process_masks(masks, scene.frames[0], None, None).masks.instances)


def test_a_tracker_made_with_a_settings_file_reads_it_and_setting_it_again_keeps_its_tracks(tmp_path):
    """The node sets the tracker after every parameter change: the same one again must not start over."""
    (tmp_path / "short.yaml").write_text("track_buffer: 5\n")
    perception = Perception("bytetrack", str(tmp_path / "short.yaml"))
    assert perception._tracker.settings["track_buffer"] == 5
    tracker, motion = perception._tracker, perception._motion
    perception.set_tracker("bytetrack", str(tmp_path / "short.yaml"))
    assert perception._tracker is tracker and perception._motion is motion


def test_bot_sort_sees_each_frame_it_tracks(engine, walk):
    """BoT-SORT compensates the camera's motion from the image itself (unlike ByteTrack)."""
    scene, _ = walk
    perception = Perception("botsort", obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    for frame, stamp in zip(scene.frames[:3], scene.stamps_ns[:3], strict=True):
        output = perception.process_masks(engine.segment(frame, stamp), frame, want_obstacles=False)
    assert any(instance.track_id >= 0 for instance in output.masks.instances)
    motion = perception._tracker._tracker.gmc  # ultralytics' camera motion estimate, fed the frames
    assert motion.initializedFirstFrame and motion.prevFrame is not None


def test_the_region_of_interest_follows_the_frame_size_and_the_setting():
    perception = Perception(obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    assert perception.roi(64, 48).shape == (48, 64) and perception.roi(64, 48).all()
    assert perception.roi(32, 24).shape == (24, 32), "another frame size"
    left_half = (0.0, 0.0, 0.5, 0.0, 0.5, 1.0, 0.0, 1.0)
    perception.set_obstacle_settings(roi=left_half)
    assert np.array_equal(perception.roi(32, 24), roi_mask(left_half, 32, 24)), "another region"


def test_no_depth_or_no_intrinsics_gives_2d_obstacles_and_no_cloud(engine, walk):
    scene, _ = walk
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    masks = engine.segment(scene.frames[0], scene.stamps_ns[0])
    tracked = {i.track_id for i in perception.process_masks(masks, scene.frames[0]).masks.instances}
    for depth, intrinsics in ((None, scene.intrinsics), (scene.depths[0], None), (None, None)):
        output = perception.process_masks(
            masks, scene.frames[0], depth, intrinsics, want_cloud=True, locate_tracks=tracked
        )
        assert output.obstacles and output.cloud is None and output.tracks == {}
        assert all(o.extent is None and o.centroid is None for o in output.obstacles)


def test_an_obstacle_on_track_zero_gets_its_3d_track(engine, walk):
    """Track ids come with the masks when no tracker runs here (tracked upstream): 0 is one of them."""
    scene, _ = walk
    frame, depth = scene.frames[0], scene.depths[0]
    masks = engine.segment(frame, scene.stamps_ns[0])
    perception = Perception(obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    placed = next(o for o in perception.process_masks(masks, frame, depth, scene.intrinsics).obstacles if o.centroid)
    numbered = tuple(
        dataclasses.replace(instance, track_id=0 if index == placed.index else index + 1)
        for index, instance in enumerate(masks.instances)
    )
    output = perception.process_masks(dataclasses.replace(masks, instances=numbered), frame, depth, scene.intrinsics)
    assert 0 in output.tracks


def test_each_stage_reports_its_own_time_in_milliseconds(engine, walk, monkeypatch):
    """On a clock that advances one second each time it is read: a second per stage."""
    scene, _ = walk
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    masks = engine.segment(scene.frames[0], scene.stamps_ns[0])
    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    output = perception.process_masks(masks, scene.frames[0], scene.depths[0], scene.intrinsics, want_cloud=True)
    assert (output.tracking_ms, output.obstacles_ms, output.cloud_ms) == (1000.0, 1000.0, 1000.0)
    assert output.cloud is not None and output.obstacles


def test_nothing_is_computed_when_nobody_listens(engine, walk):
    scene, _ = walk
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=WHOLE_IMAGE))
    masks = engine.segment(scene.frames[0], scene.stamps_ns[0])
    output = perception.process_masks(masks, scene.frames[0], scene.depths[0], scene.intrinsics, want_obstacles=False)
    assert output.obstacles == [] and output.tracks == {} and output.cloud is None


def test_a_followed_track_is_located_outside_the_region_of_interest(engine, walk):
    scene, outputs = walk
    walker_id = outputs[-1].masks[_walker(outputs[-1], scene.positions[-1][2]).index].track_id
    nowhere = (0.0, 0.0, 0.01, 0.0, 0.01, 0.01, 0.0, 0.01)
    perception = Perception("bytetrack", obstacles=ObstacleSettings(roi=nowhere))
    for frame, depth, stamp in zip(scene.frames, scene.depths, scene.stamps_ns, strict=True):
        masks = engine.segment(frame, stamp, "camera_optical")
        output = perception.process_masks(masks, frame, depth, scene.intrinsics, locate_tracks={walker_id})
        assert output.obstacles == [] and set(output.tracks) <= {walker_id}
    truth = scene.positions[-1]
    position = np.array(output.tracks[walker_id].position)
    assert np.linalg.norm(position - truth) <= 0.05 * np.linalg.norm(truth)
    unasked = perception.process_masks(masks, frame, depth, scene.intrinsics, locate_tracks={walker_id + 1000})
    assert unasked.tracks == {}
