"""The prompt and follow services of one camera, called in this process on the real bus photo's
segmentation: every field of every response, and what ~/selection carries.

The handlers are the ones the node registers; ~/selection goes through a real publisher to a
subscription in the same rclpy context.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import Header

from fastsam_msgs.msg import BoundingBox, InstanceArray
from fastsam_msgs.srv import BoxPrompt, FollowBox, FollowPoint, FollowText, PointPrompt, TextPrompt, Unfollow
from fastsam_ros.core.follow import Follower
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.prompts import PromptLimits, select_by_box
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.convert import mask_set_to_msg, msg_to_instance
from fastsam_ros.ros.prompt_service import PromptService, SegmentedFrame

TINY_CLIP = str(Path(__file__).parents[1] / "data" / "tiny-clip.json")
HEADER = Header(stamp=Time(sec=1700, nanosec=42), frame_id="bus_camera")
BUS, PERSON_LEFT, PERSON_MIDDLE, STOP_SIGN = 0, 2, 3, 4
"""Indices of the bus photo's instances (yolo11n-seg at the engine's defaults)."""


@pytest.fixture(scope="module")
def text_backends(loaded_model) -> TextBackends:
    values = {"text_backend": "class_names", "runtime": "onnxruntime", "clip_model": TINY_CLIP, "clip_pretrained": ""}
    torch.manual_seed(0)
    backends = TextBackends(loaded_model.class_names, values, torch.device("cpu"))
    backends.wait_loaded()
    return backends


@pytest.fixture(scope="module")
def frame(bus_masks, bus) -> SegmentedFrame:
    assert [bus_masks[i].class_name for i in (BUS, PERSON_LEFT, PERSON_MIDDLE, STOP_SIGN)] == [
        "bus",
        "person",
        "person",
        "stop sign",
    ]
    return SegmentedFrame(bus_masks, bus, HEADER, tuple(mask_set_to_msg(bus_masks, HEADER).instances))


class Camera:
    """One camera's prompt service over a frame the test chooses, and the ~/selection it publishes."""

    def __init__(self, ros_graph, selection: list, publisher, backends: TextBackends, frame: SegmentedFrame) -> None:
        self.latest: SegmentedFrame | None = frame
        self.limits = PromptLimits()
        self.follower = Follower()
        self.selection = selection
        self._graph = ros_graph
        self.service = PromptService(
            ros_graph.listener,
            lambda: self.latest,
            lambda: self.limits,
            backends,
            publisher,
            "front/image",
            self.follower,
        )

    def next_selection(self) -> InstanceArray:
        count = len(self.selection)
        self._graph.spin_until(lambda: len(self.selection) > count, "~/selection")
        return self.selection[-1]


@pytest.fixture(scope="module")
def selection_topic(ros_graph):
    publisher = ros_graph.listener.create_publisher(InstanceArray, "~/front/selection", 10)
    received = ros_graph.listen(InstanceArray, publisher.topic_name, publisher.get_subscription_count)
    return publisher, received


@pytest.fixture
def camera(ros_graph, selection_topic, text_backends, frame) -> Camera:
    publisher, received = selection_topic
    received.clear()
    return Camera(ros_graph, received, publisher, text_backends, frame)


def _points(*xy: tuple[float, float]) -> list[Point]:
    return [Point(x=float(x), y=float(y), z=7.0) for x, y in xy]


def _header_of(msg) -> tuple[int, int, str]:
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)


def _centre(masks: MaskSet, index: int) -> tuple[int, int]:
    """A pixel of the instance near its box centre."""
    rows, cols = np.nonzero(masks[index].mask)
    middle = len(rows) // 2
    ox, oy = masks[index].mask_offset
    return int(cols[middle] + ox), int(rows[middle] + oy)


def _common_pixel(masks: MaskSet, first: int, second: int) -> tuple[int, int]:
    """A pixel of both instances."""
    rows, cols = np.nonzero(
        masks[first].full_mask(masks.height, masks.width) & masks[second].full_mask(masks.height, masks.width)
    )
    return int(cols[len(cols) // 2]), int(rows[len(rows) // 2])


def _hits(masks: MaskSet, x: int, y: int) -> set[int]:
    return {i for i, plane in enumerate(masks.full_masks()) if plane[y, x]}


def _assert_selection(selection: InstanceArray, frame: SegmentedFrame, indices: list[int]) -> None:
    assert _header_of(selection) == _header_of(frame)
    assert (selection.width, selection.height) == (810, 1080)
    assert [m.id for m in selection.instances] == indices
    assert list(selection.instances) == [frame.instance_msgs[i] for i in indices]


def test_a_point_prompt_answers_every_instance_under_its_points_and_their_merged_mask(camera, frame):
    masks = frame.masks
    left, middle = _centre(masks, PERSON_LEFT), _centre(masks, PERSON_MIDDLE)
    expected = sorted(_hits(masks, *left) | _hits(masks, *middle))
    assert len(expected) >= 2
    request = PointPrompt.Request(points=_points(left, middle), labels=[1, 1])
    response = camera.service.point(request, PointPrompt.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert [m.id for m in response.instances] == expected
    assert list(response.instances) == [frame.instance_msgs[i] for i in expected]
    merged = response.merged
    assert (merged.id, merged.class_name, merged.track_id) == (0, "merged", -1)
    union = masks.full_masks()[expected].any(axis=0)
    assert np.array_equal(msg_to_instance(merged).full_mask(masks.height, masks.width), union)
    assert merged.area == np.count_nonzero(union)
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    box = merged.box
    assert (box.x1, box.y1, box.x2, box.y2) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    assert merged.score == pytest.approx(max(masks[i].score for i in expected))
    assert response.message == f"selected {len(expected)} of {len(masks)} instances"
    _assert_selection(camera.next_selection(), frame, expected)


def test_background_points_drop_the_instances_under_them(camera, frame):
    masks = frame.masks
    middle = _centre(masks, PERSON_MIDDLE)
    response = camera.service.point(PointPrompt.Request(points=_points(middle), labels=[0]), PointPrompt.Response())
    assert response.success, response.message
    kept = [i for i in range(len(masks)) if i not in _hits(masks, *middle)]
    assert [m.id for m in response.instances] == kept
    _assert_selection(camera.next_selection(), frame, kept)


def test_a_point_on_nothing_selects_nothing_and_merges_to_an_empty_mask(camera, frame):
    corner = (frame.masks.width - 1, 0)
    assert not _hits(frame.masks, *corner)
    response = camera.service.point(PointPrompt.Request(points=_points(corner), labels=[1]), PointPrompt.Response())
    assert response.success and list(response.instances) == []
    assert (response.merged.area, response.merged.mask_width, response.merged.mask_height) == (0, 0, 0)
    assert list(camera.next_selection().instances) == []


def test_a_box_prompt_answers_one_instance_per_box_in_request_order(camera, frame):
    boxes = [frame.masks[i].box for i in (PERSON_MIDDLE, BUS, STOP_SIGN)]
    request = BoxPrompt.Request(boxes=[BoundingBox(x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for b in boxes])
    response = camera.service.box(request, BoxPrompt.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert [m.id for m in response.instances] == [PERSON_MIDDLE, BUS, STOP_SIGN]
    expected_ious = [select_by_box(frame.masks, box).iou for box in boxes]
    assert list(response.ious) == pytest.approx(expected_ious, rel=1e-6)
    assert all(0.5 < iou <= 1.0 for iou in response.ious)
    assert response.message == "selected 3 instance(s) for 3 box(es)"
    _assert_selection(camera.next_selection(), frame, [PERSON_MIDDLE, BUS, STOP_SIGN])


def test_a_text_prompt_answers_each_text_best_first_with_scores(camera, frame, text_backends):
    request = TextPrompt.Request(texts=["bus", "person"], top_k=2, backend="")
    response = camera.service.text(request, TextPrompt.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert response.backend == "class_names"
    assert list(response.text_index) == [0, 0, 1, 1]
    assert response.instances[0].id == BUS
    assert [m.class_name for m in response.instances[2:]] == ["person", "person"]
    matches = text_backends.get("class_names").rank(frame.masks, frame.image, ["bus", "person"], 2)
    assert [m.id for m in response.instances] == [m.instance_index for m in matches]
    assert list(response.instances) == [frame.instance_msgs[m.instance_index] for m in matches]
    assert list(response.scores) == pytest.approx([m.score for m in matches], rel=1e-6)
    assert response.scores[0] > response.scores[1], "best first"
    assert response.message == "4 match(es) for 2 text(s) with the class_names backend"
    once_each = list(dict.fromkeys(m.instance_index for m in matches))
    _assert_selection(camera.next_selection(), frame, once_each)


def test_a_text_prompt_with_top_k_zero_answers_one_per_text_and_names_the_backend_asked(camera, frame):
    response = camera.service.text(TextPrompt.Request(texts=["stop sign"], top_k=0), TextPrompt.Response())
    assert response.success and [m.id for m in response.instances] == [STOP_SIGN]
    assert [m.id for m in camera.next_selection().instances] == [STOP_SIGN]
    response = camera.service.text(TextPrompt.Request(texts=["a cat"], top_k=1, backend="clip"), TextPrompt.Response())
    assert response.success, response.message
    assert response.backend == "clip" and len(response.instances) == 1
    assert list(camera.next_selection().instances) == list(response.instances)
    response = camera.service.text(TextPrompt.Request(texts=["bus"], backend="sonar"), TextPrompt.Response())
    assert response.success is False and "unknown text backend 'sonar'" in response.message


def test_prompts_before_any_frame_say_which_topic_to_publish(camera):
    camera.latest = None
    for handler, kind in (
        (camera.service.point, PointPrompt),
        (camera.service.box, BoxPrompt),
        (camera.service.text, TextPrompt),
        (camera.service.follow_point, FollowPoint),
        (camera.service.follow_box, FollowBox),
        (camera.service.follow_text, FollowText),
    ):
        response = handler(kind.Request(), kind.Response())
        assert response.success is False
        assert response.message == "no frame has been segmented yet: is a camera publishing on 'front/image'?"


def test_limits_are_read_at_each_request_and_a_refused_prompt_publishes_nothing(camera, frame, ros_graph):
    point = _centre(frame.masks, BUS)
    camera.limits = PromptLimits(max_points=1, max_boxes=1, max_texts=1, max_text_length=5)
    response = camera.service.point(
        PointPrompt.Request(points=_points(point, point), labels=[1, 1]), PointPrompt.Response()
    )
    assert response.success is False and "(parameter max_prompt_points)" in response.message
    box = BoundingBox(x1=1.0, y1=1.0, x2=9.0, y2=9.0)
    response = camera.service.box(BoxPrompt.Request(boxes=[box, box]), BoxPrompt.Response())
    assert response.success is False and "(parameter max_prompt_boxes)" in response.message
    response = camera.service.text(TextPrompt.Request(texts=["bus", "car"]), TextPrompt.Response())
    assert response.success is False and "(parameter max_prompt_texts)" in response.message
    response = camera.service.follow_text(FollowText.Request(text="a red bus"), FollowText.Response())
    assert response.success is False and "(parameter max_text_length)" in response.message
    response = camera.service.follow_point(
        FollowPoint.Request(points=_points(point, point), labels=[1, 1]), FollowPoint.Response()
    )
    assert response.success is False and "(parameter max_prompt_points)" in response.message
    named = "walker"
    for service, request, reply in (
        (camera.service.follow_point, FollowPoint.Request(points=_points(point), labels=[1], name=named), FollowPoint),
        (camera.service.follow_box, FollowBox.Request(box=frame.instance_msgs[BUS].box, name=named), FollowBox),
        (camera.service.follow_text, FollowText.Request(text="bus", name=named), FollowText),
    ):
        response = service(request, reply.Response())
        assert response.success is False
        assert response.message == "a name of 6 characters exceeds the limit of 5 (parameter max_text_length)"
    response = camera.service.box(BoxPrompt.Request(boxes=[]), BoxPrompt.Response())
    assert response.success is False and response.message == "no boxes given"
    ros_graph.spin_for()
    assert camera.selection == [], "a refused prompt selects nothing"
    assert len(camera.follower) == 0
    camera.limits = PromptLimits(max_points=2)
    response = camera.service.point(
        PointPrompt.Request(points=_points(point, point), labels=[1, 1]), PointPrompt.Response()
    )
    assert response.success, "a raised limit applies to the next request"
    assert [m.id for m in camera.next_selection().instances] == [m.id for m in response.instances]


def test_each_response_is_about_the_latest_frame_at_its_call(camera, frame):
    later = SegmentedFrame(
        frame.masks, frame.image, Header(stamp=Time(sec=1701), frame_id="bus_camera"), frame.instance_msgs
    )
    camera.latest = later
    response = camera.service.box(
        BoxPrompt.Request(boxes=[BoundingBox(x1=0.0, y1=0.0, x2=50.0, y2=50.0)]), BoxPrompt.Response()
    )
    assert response.success and _header_of(response) == (1701, 0, "bus_camera")
    assert _header_of(camera.next_selection()) == (1701, 0, "bus_camera")


def test_a_handler_bug_is_answered_not_raised_and_logged_once_a_while(camera, frame, capfd):
    camera.latest = SegmentedFrame(frame.masks, frame.image, frame.header, ())
    point = _centre(frame.masks, BUS)
    for _ in range(2):
        response = camera.service.point(PointPrompt.Request(points=_points(point), labels=[1]), PointPrompt.Response())
        assert response.success is False and response.message.startswith("internal error: IndexError(")
    logged = capfd.readouterr().err
    assert logged.count("prompt failed: IndexError(") == 1, "the log is throttled"


def test_follow_point_follows_the_smallest_instance_under_the_point(camera, frame):
    point = _common_pixel(frame.masks, BUS, PERSON_LEFT)
    assert _hits(frame.masks, *point) == {BUS, PERSON_LEFT}, "the person stands in front of the bus"
    request = FollowPoint.Request(points=_points(point), labels=[1], name="walker")
    response = camera.service.follow_point(request, FollowPoint.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert response.selection_id == 1
    assert response.instance == frame.instance_msgs[PERSON_LEFT]
    assert response.message == f"following person (instance {PERSON_LEFT}) as selection 1"
    again = camera.service.follow_point(FollowPoint.Request(points=_points(point), labels=[1]), FollowPoint.Response())
    assert again.success and again.selection_id == 2, "an untracked instance gets a selection of its own"
    followed = camera.follower.update(frame.masks, frame.image, frame.masks.stamp_ns + 1, {})
    assert [(f.selection_id, f.name) for f in followed] == [(1, "walker"), (2, "")]
    corner = (frame.masks.width - 1, 0)
    response = camera.service.follow_point(
        FollowPoint.Request(points=_points(corner), labels=[1]), FollowPoint.Response()
    )
    assert response.success is False and response.message == "no instance under the foreground points"


def test_follow_box_answers_the_matched_instance_and_its_iou(camera, frame):
    box = frame.masks[STOP_SIGN].box
    request = FollowBox.Request(box=BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]), name="sign")
    response = camera.service.follow_box(request, FollowBox.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert response.instance == frame.instance_msgs[STOP_SIGN]
    assert response.iou == pytest.approx(select_by_box(frame.masks, box).iou, rel=1e-6)
    assert (response.selection_id, camera.follower.update(frame.masks, frame.image, 2, {})[0].name) == (1, "sign")
    response = camera.service.follow_box(
        FollowBox.Request(box=BoundingBox(x1=5.0, y1=5.0, x2=1.0, y2=9.0)), FollowBox.Response()
    )
    assert response.success is False and "empty or inverted" in response.message


def test_follow_text_follows_the_best_match_named_after_the_text(camera, frame):
    response = camera.service.follow_text(FollowText.Request(text="bus"), FollowText.Response())
    assert response.success, response.message
    assert _header_of(response) == _header_of(frame)
    assert response.backend == "class_names"
    assert response.instance == frame.instance_msgs[BUS]
    [best] = camera.service.text_backends.get("class_names").rank(frame.masks, frame.image, ["bus"], 1)
    assert response.score == pytest.approx(best.score, rel=1e-6)
    named = camera.service.follow_text(FollowText.Request(text="stop sign", name="sign"), FollowText.Response())
    assert named.success and named.instance == frame.instance_msgs[STOP_SIGN]
    assert (response.selection_id, named.selection_id) == (1, 2)
    followed = camera.follower.update(frame.masks, frame.image, 2, {})
    assert [f.name for f in followed] == ["bus", "sign"]
    empty = SegmentedFrame(MaskSet(1080, 810), frame.image, frame.header, ())
    camera.latest = empty
    response = camera.service.follow_text(FollowText.Request(text="bus"), FollowText.Response())
    assert response.success is False and response.message == "no instance matches 'bus' (0 in the frame)"


def test_follow_text_through_clip_ranks_the_frame_pixels(camera, frame):
    # A mask set of its own: CLIP keeps the crops of the last one it saw.
    masks = dataclasses.replace(frame.masks, stamp_ns=frame.masks.stamp_ns + 1)
    camera.latest = frame = SegmentedFrame(masks, frame.image, frame.header, frame.instance_msgs)
    response = camera.service.follow_text(FollowText.Request(text="a bus", backend="clip"), FollowText.Response())
    assert response.success, response.message
    assert response.backend == "clip"
    [best] = camera.service.text_backends.get("clip").rank(frame.masks, frame.image, ["a bus"], 1)
    assert response.instance == frame.instance_msgs[best.instance_index]
    assert response.score == pytest.approx(best.score, rel=1e-5)


def test_following_an_instance_without_class_names_it_an_object(camera, frame):
    agnostic = tuple(dataclasses.replace(instance, class_name="") for instance in frame.masks.instances)
    masks = dataclasses.replace(frame.masks, instances=agnostic)
    camera.latest = SegmentedFrame(masks, frame.image, frame.header, frame.instance_msgs)
    box = masks[STOP_SIGN].box
    request = FollowBox.Request(box=BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]))
    response = camera.service.follow_box(request, FollowBox.Response())
    assert response.message == f"following object (instance {STOP_SIGN}) as selection 1"


def test_unfollow_ends_one_selection_or_all_and_refuses_an_unknown_id(camera, frame):
    point = _centre(frame.masks, PERSON_MIDDLE)
    for _ in range(3):
        camera.service.follow_point(FollowPoint.Request(points=_points(point), labels=[1]), FollowPoint.Response())
    camera.latest = None  # needs no frame
    response = camera.service.unfollow(Unfollow.Request(selection_id=2), Unfollow.Response())
    assert response.success and list(response.ended) == [2]
    assert response.message == "stopped following 1 selection(s)"
    response = camera.service.unfollow(Unfollow.Request(selection_id=2), Unfollow.Response())
    assert response.success is False and response.message == "no selection 2 (followed now: 1, 3)"
    response = camera.service.unfollow(Unfollow.Request(selection_id=9, all=True), Unfollow.Response())
    assert response.success and list(response.ended) == [1, 3]
    assert len(camera.follower) == 0
