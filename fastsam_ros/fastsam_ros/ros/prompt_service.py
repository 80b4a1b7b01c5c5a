"""ROS side of the prompt and follow services: requests in, core selection, responses out.

A prompt answers about one frame; a follow request selects the same way and hands the
instance to the camera's Follower, which keeps it across the frames after. Every handler
reads the latest frame result once, so a response is about exactly one frame even while
the worker publishes the next. Requests are checked against the prompt limits before any
work. Nothing raises out of a handler: bad requests come back with success=false and a
reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from std_msgs.msg import Header

from fastsam_msgs.msg import Instance as InstanceMsg
from fastsam_msgs.msg import InstanceArray
from fastsam_ros.core.follow import Follower, FollowError, instance_to_follow
from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.prompts import PromptError, PromptLimits, merge_instances, select_by_box, select_by_points
from fastsam_ros.core.text_prompts import TextBackends, TextPromptError
from fastsam_ros.ros.convert import instance_to_msg

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.publisher import Publisher


@dataclass(frozen=True)
class SegmentedFrame:
    """What prompts need of the latest frame: its masks, pixels, header, and the instances
    already encoded for ~/instances, which responses reuse instead of encoding them again."""

    masks: MaskSet
    image: np.ndarray
    header: Header
    instance_msgs: tuple[InstanceMsg, ...]


class PromptService:
    """The prompt and follow services of one camera, answering from that camera's latest frame."""

    def __init__(
        self,
        node: Node,
        latest: Callable[[], SegmentedFrame | None],
        limits: Callable[[], PromptLimits],
        text_backends: TextBackends,
        selection_pub: Publisher,
        image_topic: str,
        follower: Follower,
    ) -> None:
        self._node = node
        self._latest = latest
        self._limits = limits
        self.text_backends = text_backends
        self._selection_pub = selection_pub
        self._image_topic = image_topic
        self._follower = follower

    def _frame(self) -> SegmentedFrame:
        frame = self._latest()
        if frame is None:
            raise PromptError(f"no frame has been segmented yet: is a camera publishing on '{self._image_topic}'?")
        return frame

    def _publish_selection(self, frame: SegmentedFrame, indices: list[int]) -> None:
        msg = InstanceArray(header=frame.header, width=frame.masks.width, height=frame.masks.height)
        msg.instances = [frame.instance_msgs[i] for i in indices]
        self._selection_pub.publish(msg)

    def _answer(self, response: Any, handler: Callable[[SegmentedFrame], str]) -> Any:
        try:
            frame = self._frame()
            response.header = frame.header
            response.message = handler(frame)
            response.success = True
        except (PromptError, TextPromptError, FollowError) as error:
            response.success = False
            response.message = str(error)
        except Exception as error:  # a bug must not take the service down
            response.success = False
            response.message = f"internal error: {error!r}"
            self._node.get_logger().error(f"prompt failed: {error!r}", throttle_duration_sec=2.0)
        return response

    def point(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            self._limits().check(points=len(request.points))
            points = [(p.x, p.y) for p in request.points]
            indices = select_by_points(frame.masks, points, list(request.labels))
            response.instances = [frame.instance_msgs[i] for i in indices]
            response.merged = instance_to_msg(merge_instances(frame.masks, indices), 0)
            self._publish_selection(frame, indices)
            return f"selected {len(indices)} of {len(frame.masks)} instances"

        return self._answer(response, handle)

    def box(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            if not request.boxes:
                raise PromptError("no boxes given")
            self._limits().check(boxes=len(request.boxes))
            matches = [select_by_box(frame.masks, (b.x1, b.y1, b.x2, b.y2)) for b in request.boxes]
            response.instances = [frame.instance_msgs[m.index] for m in matches]
            response.ious = [float(m.iou) for m in matches]
            self._publish_selection(frame, [m.index for m in matches])
            return f"selected {len(matches)} instance(s) for {len(matches)} box(es)"

        return self._answer(response, handle)

    def text(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            texts = list(request.texts)
            self._limits().check(texts=texts)
            backend = self.text_backends.get(request.backend or self.text_backends.default)
            response.backend = backend.name
            matches = backend.rank(frame.masks, frame.image, texts, max(int(request.top_k), 1))
            response.text_index = [m.text_index for m in matches]
            response.scores = [m.score for m in matches]
            response.instances = [frame.instance_msgs[m.instance_index] for m in matches]
            self._publish_selection(frame, list(dict.fromkeys(m.instance_index for m in matches)))
            return f"{len(matches)} match(es) for {len(texts)} text(s) with the {backend.name} backend"

        return self._answer(response, handle)

    def _follow(self, frame: SegmentedFrame, index: int, name: str, response: Any) -> str:
        selection_id = self._follower.follow(frame.masks, index, frame.image, name)
        response.selection_id = selection_id
        response.instance = frame.instance_msgs[index]
        instance = frame.masks[index]
        return f"following {instance.class_name or 'object'} (instance {index}) as selection {selection_id}"

    def follow_point(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            self._limits().check(points=len(request.points), names=[request.name])
            points = [(p.x, p.y) for p in request.points]
            index = instance_to_follow(frame.masks, points, list(request.labels))
            return self._follow(frame, index, request.name, response)

        return self._answer(response, handle)

    def follow_box(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            self._limits().check(names=[request.name])
            b = request.box
            match = select_by_box(frame.masks, (b.x1, b.y1, b.x2, b.y2))
            response.iou = float(match.iou)
            return self._follow(frame, match.index, request.name, response)

        return self._answer(response, handle)

    def follow_text(self, request: Any, response: Any) -> Any:
        def handle(frame: SegmentedFrame) -> str:
            self._limits().check(texts=[request.text], names=[request.name])
            backend = self.text_backends.get(request.backend or self.text_backends.default)
            response.backend = backend.name
            matches = backend.rank(frame.masks, frame.image, [request.text], 1)
            if not matches:
                raise PromptError(f"no instance matches '{request.text}' ({len(frame.masks)} in the frame)")
            response.score = float(matches[0].score)
            return self._follow(frame, matches[0].instance_index, request.name or request.text, response)

        return self._answer(response, handle)

    def unfollow(self, request: Any, response: Any) -> Any:
        """Needs no frame: selections live in the follower."""
        try:
            ended = self._follower.unfollow(None if request.all else int(request.selection_id))
            response.ended = ended
            response.success = True
            response.message = f"stopped following {len(ended)} selection(s)"
        except FollowError as error:
            response.success = False
            response.message = str(error)
        return response
