"""Follow this one over DDS: a person selected by a point on real video stays followed frame after frame.

vtest.avi (pedestrians) goes to the node one frame at a time, nothing dropped: each frame is
sent once the previous one's ~/instances came back, stamped at the clip's 10 frames per second.
The person is the man in jeans and a dark jacket who walks up from the right edge; the
reference boxes are benchmarks/data/follow_reference.json's, checked by hand.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from geometry_msgs.msg import Point, PoseStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from fastsam_msgs.msg import BoundingBox, FollowedArray, FollowedObject
from fastsam_msgs.srv import FollowBox, FollowPoint, FollowText, Unfollow
from fastsam_ros.core.rendering import FOLLOWED_YELLOW
from fastsam_ros.ros.convert import array_to_image, msg_to_instance, stamp_from_ns, stamp_to_ns
from fastsam_ros.tools.sample_videos import sample_video, video_frames
from test_support.checkout import PACKAGE_FOLDER

NODE_PARAMETERS = [
    "tracker:=bytetrack",
    "text_backend:=class_names",
    # A region of interest no instance reaches: no obstacles, yet followed objects are located.
    "obstacle_roi:=[0.0, 0.0, 0.01, 0.0, 0.01, 0.01, 0.0, 0.01]",
]
NODE_ARGS = ["-r", "depth:=/test/camera/depth", "-r", "camera_info:=/test/camera/camera_info"]

REFERENCE = PACKAGE_FOLDER / "benchmarks" / "data" / "follow_reference.json"
PERSON = "jeans, dark jacket, walks up"
FIRST_FRAME, FOLLOW_FRAME, DEPTH_FRAME, LAST_FRAME = 36, 44, 62, 76
"""Frames sent: from FIRST_FRAME (the tracker confirms the person before the follow request on
FOLLOW_FRAME) to LAST_FRAME, and two more after unfollowing; depth and camera_info come with
the frames from DEPTH_FRAME on."""
FRAME_PERIOD_NS = 100_000_000
DEPTH_MM = 3000
FX = FY = 600.0


def _iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _box(msg: BoundingBox) -> tuple[float, float, float, float]:
    return (msg.x1, msg.y1, msg.x2, msg.y2)


class Clip:
    """Sends the clip's frames one by one and keeps what the node answered for each."""

    def __init__(self, client) -> None:
        self.client = client
        node = client.node
        self.depth = node.create_publisher(Image, "/test/camera/depth", qos_profile_sensor_data)
        self.info = node.create_publisher(CameraInfo, "/test/camera/camera_info", qos_profile_sensor_data)
        self.followed: dict[int, FollowedArray] = {}
        self.poses: dict[int, PoseStamped] = {}
        self.markers: list[MarkerArray] = []
        node.create_subscription(FollowedArray, "/fastsam/followed", self._keep(self.followed), 50)
        node.create_subscription(PoseStamped, "/fastsam/followed_pose", self._keep(self.poses), 50)
        node.create_subscription(MarkerArray, "/fastsam/markers", self.markers.append, 50)
        client.wait(lambda: self.depth.get_subscription_count() > 0, 30.0, "depth subscription")
        client.wait(lambda: node.count_publishers("/fastsam/followed") > 0, 30.0, "followed publisher")
        reference = json.loads(REFERENCE.read_text())["people"]
        person = next(p for p in reference if p["video"] == "vtest.avi" and p["person"] == PERSON)
        self.reference = {int(frame): box for frame, box in person["boxes"].items()}
        frames = video_frames(sample_video("vtest.avi"), LAST_FRAME + 3 - FIRST_FRAME, FIRST_FRAME)
        self.frames = dict(enumerate(frames, FIRST_FRAME))
        self.stamps: dict[int, int] = {}
        self.start_ns = time.time_ns()

    @staticmethod
    def _keep(by_stamp: dict):
        return lambda msg: by_stamp.__setitem__(stamp_to_ns(msg.header.stamp), msg)

    def send(self, number: int, with_depth: bool = False) -> int:
        """Send frame ``number`` until the node answers it; its stamp."""
        image = self.frames[number]
        height, width = image.shape[:2]
        for attempt in range(5):
            stamp = self.start_ns + number * FRAME_PERIOD_NS + attempt
            if with_depth:
                info = CameraInfo(width=width, height=height)
                info.header.stamp = stamp_from_ns(stamp)
                info.k = [FX, 0.0, width / 2, 0.0, FY, height / 2, 0.0, 0.0, 1.0]
                self.info.publish(info)
                depth = array_to_image(np.full((height, width), DEPTH_MM, np.uint16), "16UC1")
                depth.header.stamp = stamp_from_ns(stamp)
                self.depth.publish(depth)
                time.sleep(0.05)
            msg = array_to_image(image, "bgr8")
            msg.header.stamp = stamp_from_ns(stamp)
            msg.header.frame_id = "camera"
            self.client.camera.publish(msg)
            try:
                self.client.result_for(stamp, timeout=20.0)
                self.client.wait(lambda stamp=stamp: stamp in self.followed, 10.0, "~/followed")
            except TimeoutError:
                continue  # a best-effort sample lost: send the frame again
            self.stamps[number] = stamp
            return stamp
        raise TimeoutError(f"no answer to frame {number}")


@pytest.fixture(scope="module")
def clip(node_graph) -> Clip:
    return Clip(node_graph)


def _call(clip: Clip, service, name: str, request):
    return clip.client.call(service, f"/fastsam/{name}", request)


def _follow_point(clip: Clip, number: int):
    x1, y1, x2, y2 = clip.reference[number]
    point = Point(x=(x1 + x2) / 2, y=y1 + 0.85 * (y2 - y1))  # on the jeans (the jacket is under a backpack)
    return _call(clip, FollowPoint, "follow_point", FollowPoint.Request(points=[point], labels=[1], name="walker"))


@pytest.fixture(scope="module")
def followed(clip):
    """Stream the clip, follow the person by a point on FOLLOW_FRAME, and stream on."""
    for number in range(FIRST_FRAME, FOLLOW_FRAME + 1):
        clip.send(number)
    assert all(not clip.followed[clip.stamps[n]].objects for n in clip.stamps), "nothing is followed yet"
    response = _follow_point(clip, FOLLOW_FRAME)
    assert response.success, response.message
    for number in range(FOLLOW_FRAME + 1, LAST_FRAME + 1):
        clip.send(number, with_depth=number >= DEPTH_FRAME)
    return response


def test_follow_point_answers_the_person_under_it(clip, followed):
    assert stamp_to_ns(followed.header.stamp) == clip.stamps[FOLLOW_FRAME]
    assert followed.selection_id >= 1
    assert followed.instance.class_name == "person" and followed.instance.track_id >= 0
    assert _iou(_box(followed.instance.box), clip.reference[FOLLOW_FRAME]) >= 0.5


def test_followed_holds_the_person_in_every_frame_after(clip, followed):
    boxes = []
    for number in range(FOLLOW_FRAME + 1, LAST_FRAME + 1):
        objects = clip.followed[clip.stamps[number]].objects
        assert [o.selection_id for o in objects] == [followed.selection_id], number
        item = objects[0]
        assert item.status == FollowedObject.TRACKING and item.name == "walker", (number, item.status)
        assert stamp_to_ns(item.last_seen) == clip.stamps[number]
        box = _box(item.instance.box)
        assert _iou(box, clip.reference[number]) >= 0.5, (number, box, clip.reference[number])
        assert msg_to_instance(item.instance).area == item.instance.area > 0
        boxes.append(box)
    walked = (boxes[0][0] + boxes[0][2]) / 2 - (boxes[-1][0] + boxes[-1][2]) / 2
    assert walked > 60, f"the followed box moved {walked:.0f} px left with the person"


def test_followed_pose_comes_with_depth_and_camera_info(clip, followed):
    without = [n for n in range(FOLLOW_FRAME + 1, DEPTH_FRAME) if clip.stamps[n] in clip.poses]
    assert not without, f"a pose without depth on frames {without}"
    with_depth = [n for n in range(DEPTH_FRAME, LAST_FRAME + 1) if clip.stamps[n] in clip.poses]
    assert len(with_depth) >= 0.8 * (LAST_FRAME + 1 - DEPTH_FRAME), with_depth
    for number in with_depth:
        pose = clip.poses[clip.stamps[number]]
        assert pose.header.frame_id == "camera"
        position = pose.pose.position
        assert position.z == pytest.approx(DEPTH_MM / 1000, rel=0.05)
        x1, _, x2, _ = clip.reference[number]
        pixel_x = FX * position.x / position.z + clip.frames[number].shape[1] / 2
        assert x1 - 10 <= pixel_x <= x2 + 10, (number, pixel_x, x1, x2)
        q = pose.pose.orientation
        assert np.hypot(np.hypot(q.x, q.y), np.hypot(q.z, q.w)) == pytest.approx(1.0)
        item = clip.followed[clip.stamps[number]].objects[0]
        assert item.has_position and item.position.z == pytest.approx(position.z)


def test_followed_object_is_drawn_and_marked(clip, followed):
    stamp = clip.stamps[LAST_FRAME]
    debug = clip.client.result_for(stamp, "debug_image")
    overlay = np.frombuffer(debug.data, np.uint8).reshape(debug.height, debug.width, 3)
    x1, y1, x2, y2 = (round(v) for v in _box(clip.followed[stamp].objects[0].instance.box))
    yellow = np.all(overlay[max(y1 - 25, 0) : y2 + 5, x1 - 5 : x2 + 5] == FOLLOWED_YELLOW, axis=-1)
    assert np.count_nonzero(yellow) > 100, "a yellow outline and label on the followed person"

    def marked():
        frame = [array for array in clip.markers if stamp_to_ns(array.markers[0].header.stamp) == stamp]
        return [marker for array in frame for marker in array.markers]

    clip.client.wait(marked, 10.0, "~/markers")
    assert any(m.ns == "followed_labels" and m.text == "follow walker" for m in marked())


@pytest.mark.parametrize(
    ("service", "name", "request_", "reason"),
    [
        (FollowPoint, "follow_point", FollowPoint.Request(points=[Point(x=5000.0)], labels=[1]), "outside"),
        (FollowPoint, "follow_point", FollowPoint.Request(), "no points"),
        (FollowPoint, "follow_point", FollowPoint.Request(points=[Point(x=2.0, y=2.0)], labels=[1]), "no instance"),
        (FollowBox, "follow_box", FollowBox.Request(box=BoundingBox(x1=50.0, y1=50.0, x2=10.0, y2=90.0)), "inverted"),
        (FollowText, "follow_text", FollowText.Request(text=""), "empty"),
        (
            FollowPoint,
            "follow_point",
            FollowPoint.Request(points=[Point(x=2.0, y=2.0)], labels=[1], name="n" * 1_000_000),
            "a name of 1000000 characters exceeds the limit of 200",
        ),
        (Unfollow, "unfollow", Unfollow.Request(selection_id=999), "no selection 999"),
    ],
)
def test_bad_requests_fail_with_a_reason(clip, followed, service, name, request_, reason):
    response = _call(clip, service, name, request_)
    assert not response.success and reason in response.message, response.message


def test_box_and_text_follow_and_unfollow(clip, followed):
    x1, y1, x2, y2 = (float(v) for v in clip.reference[LAST_FRAME])
    box = _call(clip, FollowBox, "follow_box", FollowBox.Request(box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)))
    assert box.success, box.message
    assert box.selection_id == followed.selection_id, "the person followed already answers their selection"
    text = _call(clip, FollowText, "follow_text", FollowText.Request(text="person"))
    assert text.success and text.backend == "class_names" and text.instance.class_name == "person", text.message
    ended = _call(clip, Unfollow, "unfollow", Unfollow.Request(selection_id=followed.selection_id))
    assert ended.success and list(ended.ended) == [followed.selection_id], ended.message
    again = _call(clip, Unfollow, "unfollow", Unfollow.Request(selection_id=followed.selection_id))
    assert not again.success and f"no selection {followed.selection_id}" in again.message
    stamp = clip.send(LAST_FRAME + 1)
    others = clip.followed[stamp].objects
    assert followed.selection_id not in [o.selection_id for o in others]
    if text.selection_id != followed.selection_id:
        assert [o.selection_id for o in others] == [text.selection_id]
    everything = _call(clip, Unfollow, "unfollow", Unfollow.Request(all=True))
    assert everything.success
    assert not clip.followed[clip.send(LAST_FRAME + 2)].objects, "~/followed is empty once everything is unfollowed"
