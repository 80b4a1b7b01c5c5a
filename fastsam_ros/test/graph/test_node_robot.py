"""Tracking, obstacles with depth, and markers from the node process, over DDS."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_msgs.msg import ObstacleArray
from fastsam_ros.ros.convert import array_to_image, msg_to_mask_set, stamp_from_ns, stamp_to_ns
from fastsam_ros.tools.sample_frames import asset_image, panned

NODE_PARAMETERS = ["tracker:=bytetrack"]
NODE_ARGS = ["-r", "depth:=/test/camera/depth", "-r", "camera_info:=/test/camera/camera_info"]

FX = FY = 900.0


@pytest.fixture(scope="module")
def robot(node_graph):
    node = node_graph.node
    node_graph.depth = node.create_publisher(Image, "/test/camera/depth", qos_profile_sensor_data)
    node_graph.info = node.create_publisher(CameraInfo, "/test/camera/camera_info", qos_profile_sensor_data)
    node_graph.obstacles, node_graph.markers = [], []
    node.create_subscription(ObstacleArray, "/fastsam/obstacles", node_graph.obstacles.append, 10)
    node.create_subscription(MarkerArray, "/fastsam/markers", node_graph.markers.append, 10)
    node_graph.wait(lambda: node_graph.depth.get_subscription_count() > 0, 30.0, "depth subscription")
    node_graph.wait(lambda: node.count_publishers("/fastsam/markers") > 0, 30.0, "markers publisher")
    return node_graph


def _camera_info(width: int, height: int, stamp: int, k: tuple[float, float, float, float] | None = None) -> CameraInfo:
    """CameraInfo with intrinsics fx, fy, cx, cy (default: FX, FY and the image centre)."""
    fx, fy, cx, cy = k or (FX, FY, width / 2, height / 2)
    info = CameraInfo(width=width, height=height)
    info.header.stamp = stamp_from_ns(stamp)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    return info


def _send_rgbd(
    robot,
    image: np.ndarray,
    depth: np.ndarray | None,
    encoding: str = "16UC1",
    stamp: int | None = None,
    k: tuple[float, float, float, float] | None = None,
    frame_id: str = "camera",
) -> int:
    stamp = time.time_ns() if stamp is None else stamp
    robot.info.publish(_camera_info(image.shape[1], image.shape[0], stamp, k))
    if depth is not None:
        depth_msg = array_to_image(depth, encoding)
        depth_msg.header.stamp = stamp_from_ns(stamp)
        robot.depth.publish(depth_msg)
        time.sleep(0.05)
    image_msg = array_to_image(image, "bgr8")
    image_msg.header.stamp = stamp_from_ns(stamp)
    image_msg.header.frame_id = frame_id
    robot.camera.publish(image_msg)
    return stamp


def _obstacles_for(robot, stamp: int) -> ObstacleArray:
    def found():
        return next((m for m in robot.obstacles if stamp_to_ns(m.header.stamp) == stamp), None)

    robot.wait(lambda: found() is not None, 60.0, "obstacles")
    return found()


def _result(robot, image, depth, encoding="16UC1"):
    """Send until the node answers (the first best-effort samples of a new link can be lost)."""
    for _ in range(10):
        stamp = _send_rgbd(robot, image, depth, encoding)
        try:
            return stamp, robot.result_for(stamp, timeout=3.0), _obstacles_for(robot, stamp)
        except TimeoutError:
            continue
    raise TimeoutError("no answer from the node")


def test_obstacle_distances_and_centroids_over_ros(robot, bus):
    from fastsam_ros.core.obstacles import depth_in_metres

    _, result, obstacles = _result(robot, bus, None)
    assert obstacles.obstacles and not obstacles.depth_paired
    assert all(not o.has_distance for o in obstacles.obstacles)
    masks = msg_to_mask_set(result)
    depth_mm = np.full((bus.shape[0], bus.shape[1]), 8000, np.uint16)
    truth = {}
    for rank, obstacle in enumerate(obstacles.obstacles):
        distance_mm = 1500 + 700 * rank
        depth_mm[masks[obstacle.instance_id].full_mask(masks.height, masks.width)] = distance_mm
        truth[obstacle.instance_id] = distance_mm / 1000
    stamp, _, located = _result(robot, bus, depth_mm)
    assert located.depth_paired
    assert [o.instance_id for o in located.obstacles] == sorted(truth, key=truth.get), "nearest first"
    metres = depth_in_metres(depth_mm, "16UC1")
    for obstacle in located.obstacles:
        assert (
            obstacle.has_distance and abs(obstacle.distance - truth[obstacle.instance_id]) <= 0.02 * obstacle.distance
        )
        mask = masks[obstacle.instance_id].full_mask(masks.height, masks.width)
        v, u = np.nonzero(mask & (np.abs(metres - truth[obstacle.instance_id]) < 0.01))
        z = truth[obstacle.instance_id]
        expected = np.array([(u - bus.shape[1] / 2).mean() * z / FX, (v - bus.shape[0] / 2).mean() * z / FY, z])
        got = np.array([obstacle.centroid.x, obstacle.centroid.y, obstacle.centroid.z])
        assert np.linalg.norm(got - expected) <= 0.02 * np.linalg.norm(expected)

    def markers_of_frame():
        return next((m.markers for m in robot.markers if stamp_to_ns(m.markers[0].header.stamp) == stamp), None)

    robot.wait(lambda: markers_of_frame() is not None, 10.0, "markers")
    latest = markers_of_frame()
    assert latest[0].action == Marker.DELETEALL, "markers of earlier frames are deleted"
    cubes = [m for m in latest if m.type == Marker.CUBE]
    texts = [m.text for m in latest if m.type == Marker.TEXT_VIEW_FACING]
    assert len(cubes) == len(located.obstacles) and all(" m" in text for text in texts)


@pytest.mark.parametrize("fill", ["zeros", "nan"])
def test_invalid_or_unpaired_depth_gives_obstacles_without_distance(robot, bus, fill):
    depth = np.zeros(bus.shape[:2], np.uint16) if fill == "zeros" else np.full(bus.shape[:2], np.nan, np.float32)
    _, _, obstacles = _result(robot, bus, depth, "16UC1" if fill == "zeros" else "32FC1")
    assert obstacles.depth_paired and obstacles.obstacles
    assert all(not o.has_distance and not o.has_centroid for o in obstacles.obstacles)
    assert "no valid readings" in robot.log_path.read_text()


def test_track_ids_are_stable_over_ros(robot):
    frames = panned(asset_image("bus.jpg"), 600, 800, 12)
    ids_by_class: dict[str, list[int]] = {}
    for frame in frames:
        _, result, _ = _result(robot, frame, None)
        for instance in result.instances:
            if instance.class_name == "bus":
                ids_by_class.setdefault("bus", []).append(instance.track_id)
    usual, count = Counter(ids_by_class["bus"]).most_common(1)[0]
    assert usual > 0 and count / len(ids_by_class["bus"]) >= 0.9


def test_wrong_camera_info_and_depth_encoding_are_reported(robot, bus):
    depth_mm = np.full(bus.shape[:2], 2000, np.uint16)
    stamp = time.time_ns()
    robot.info.publish(_camera_info(640, 480, stamp))
    depth_msg = array_to_image(depth_mm, "16UC1")
    depth_msg.header.stamp = stamp_from_ns(stamp)
    robot.depth.publish(depth_msg)
    time.sleep(0.05)
    image_msg = array_to_image(bus, "bgr8")
    image_msg.header.stamp = stamp_from_ns(stamp)
    robot.camera.publish(image_msg)
    obstacles = _obstacles_for(robot, stamp)
    assert all(o.has_distance and not o.has_centroid for o in obstacles.obstacles)
    assert "camera_info is for 640x480, the frame is 810x1080" in robot.log_path.read_text()

    _, _, without = _result(robot, bus, np.zeros(bus.shape[:2], np.uint8), "mono8")
    assert without.obstacles
    assert all(not o.has_distance for o in without.obstacles)
    assert "depth frame refused: unsupported depth encoding 'mono8'" in robot.log_path.read_text()


def test_a_walking_person_gets_its_3d_motion_and_cloud_over_ros(robot, engine):
    from sensor_msgs.msg import PointCloud2, PointField

    from test_support.moving_object import moving_object_scene

    scene = moving_object_scene(engine, frames=16)
    k = scene.intrinsics
    clouds: list[PointCloud2] = []
    robot.node.create_subscription(PointCloud2, "/fastsam/obstacle_cloud", clouds.append, 10)
    robot.wait(lambda: robot.node.count_publishers("/fastsam/obstacle_cloud") > 0, 30.0, "obstacle_cloud publisher")
    time.sleep(1.0)
    walkers = []
    for frame, depth, stamp, truth in zip(scene.frames, scene.depths, scene.stamps_ns, scene.positions, strict=True):
        for _ in range(3):  # best effort: resend the same frame until the node answers
            _send_rgbd(robot, frame, depth, "32FC1", stamp, (k.fx, k.fy, k.cx, k.cy), "camera_optical")
            try:
                robot.result_for(stamp, timeout=20.0)
                break
            except TimeoutError:
                continue
        obstacles = _obstacles_for(robot, stamp)
        walkers.append(min(obstacles.obstacles, key=lambda o: abs(o.distance - truth[2]) if o.has_distance else 1e9))
    last, truth = walkers[-1], scene.positions[-1]
    # A warmed-up tracker confirms a new object on its second frame.
    assert len({w.track_id for w in walkers[1:]}) == 1 and last.track_id >= 0, "the walker keeps its track id"
    assert last.has_motion and last.has_extent and last.has_time_to_contact
    position = np.array([last.position.x, last.position.y, last.position.z])
    velocity = np.array([last.velocity.x, last.velocity.y, last.velocity.z])
    assert np.linalg.norm(position - truth) <= 0.03 * np.linalg.norm(truth)
    assert np.linalg.norm(velocity - scene.velocity) <= 0.10 * np.linalg.norm(scene.velocity)
    assert last.age == pytest.approx((scene.stamps_ns[-1] - scene.stamps_ns[1]) / 1e9, abs=1e-3), (
        "seen in 3D from frame 1"
    )

    def cloud_of_last():
        return next((c for c in clouds if stamp_to_ns(c.header.stamp) == scene.stamps_ns[-1]), None)

    robot.wait(lambda: cloud_of_last() is not None, 10.0, "the last frame's obstacle cloud")
    cloud = cloud_of_last()
    assert cloud.header.frame_id == "camera_optical"
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1),
        ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1),
    ]
    assert (cloud.height, cloud.point_step, cloud.row_step) == (1, 12, 12 * cloud.width)
    assert cloud.is_dense and not cloud.is_bigendian and cloud.width > 500
    points = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 3)
    assert np.allclose(points[:, 2], truth[2], atol=1e-3), "only the walker is within the cloud's 10 m"
    low = np.array([last.extent_min.x, last.extent_min.y])
    high = np.array([last.extent_max.x, last.extent_max.y])
    inside = np.all((points[:, :2] >= low - 0.01) & (points[:, :2] <= high + 0.01), axis=1)
    assert inside.mean() >= 0.75, "the box spans the 5th-95th percentiles of the walker's points"
