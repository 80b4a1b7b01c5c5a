"""ROS side of the prompt services: requests in, core selection, responses out.

Every handler reads the latest frame result once, so a response is about exactly one
frame even while the worker publishes the next. Nothing raises out of a handler:
bad requests come back with success=false and a reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from std_msgs.msg import Header

from fastsam_ros.mask_set import Instance, MaskSet
from fastsam_ros.msg import InstanceArray
from fastsam_ros.prompts import PromptError, select_by_box, select_by_points
from fastsam_ros.ros_convert import instance_to_msg
from fastsam_ros.text_prompts import ClassNameBackend, ClipBackend, TextBackend, TextPromptError

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.publisher import Publisher

TEXT_BACKENDS = ("clip", "class_names")


@dataclass(frozen=True)
class FrameResult:
    """What prompts need of the latest frame: its masks, pixels and header."""

    masks: MaskSet
    image: np.ndarray
    header: Header


def merge_instances(masks: MaskSet, indices: list[int]) -> Instance:
    """One instance covering the union of the selected masks, cropped to its extent."""
    if not indices:
        return Instance((0.0, 0.0, 0.0, 0.0), 0.0, -1, "merged", (0, 0), np.zeros((0, 0), dtype=bool))
    plane = masks.merged_mask(indices)
    rows, cols = np.nonzero(plane.any(axis=1))[0], np.nonzero(plane.any(axis=0))[0]
    r1, r2, c1, c2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    score = max(masks[i].score for i in indices)
    return Instance((float(c1), float(r1), float(c2), float(r2)), score, -1, "merged", (c1, r1), plane[r1:r2, c1:c2])


class TextBackends:
    """Text backends by name, loaded once; the default one is loaded in the background."""

    def __init__(
        self,
        class_names: dict[int, str],
        values: dict[str, Any],
        device: torch.device,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._class_names = class_names
        self._values = values
        self._device = device
        self._lock = threading.Lock()
        self._loaded: dict[str, TextBackend | TextPromptError] = {}
        self._log = log or (lambda message: None)
        self.default = values["text_backend"]
        if self.default == "auto":
            self.default = "class_names" if len(class_names) > 1 else "clip"
        self._loader = threading.Thread(target=self._load_default, name="text_backend_load")
        self._loader.start()

    def _load_default(self) -> None:
        """Frames segmented meanwhile share the CPU with this load, so say when it is over."""
        started = time.perf_counter()
        try:
            self.get(self.default)
        except TextPromptError as error:
            self._log(f"text prompts unavailable with the {self.default} backend: {error}")
            return
        self._log(f"text prompts ready ({self.default} backend, loaded in {time.perf_counter() - started:.1f} s)")

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Wait for the background load of the default backend (at shutdown, say)."""
        self._loader.join(timeout)

    def get(self, name: str) -> TextBackend:
        if name not in TEXT_BACKENDS:
            raise TextPromptError(f"unknown text backend '{name}' (known: {', '.join(TEXT_BACKENDS)})")
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = self._load(name)
                except TextPromptError as error:
                    self._loaded[name] = error
            backend = self._loaded[name]
        if isinstance(backend, TextPromptError):
            raise backend
        return backend

    def _load(self, name: str) -> TextBackend:
        if name == "class_names":
            return ClassNameBackend(self._class_names, prefer_onnx=self._values["runtime"] != "torch")
        return ClipBackend(self._values["clip_model"], self._values["clip_pretrained"], self._device)


class PromptService:
    """The prompt services of one camera, answering from that camera's latest frame."""

    def __init__(
        self,
        node: Node,
        latest: Callable[[], FrameResult | None],
        text_backends: TextBackends,
        selection_pub: Publisher,
        image_topic: str,
    ) -> None:
        self._node = node
        self._latest = latest
        self.text_backends = text_backends
        self._selection_pub = selection_pub
        self._image_topic = image_topic

    def _frame(self) -> FrameResult:
        frame = self._latest()
        if frame is None:
            raise PromptError(f"no frame has been segmented yet: is a camera publishing on '{self._image_topic}'?")
        return frame

    def _publish_selection(self, frame: FrameResult, indices: list[int]) -> None:
        msg = InstanceArray(header=frame.header, width=frame.masks.width, height=frame.masks.height)
        msg.instances = [instance_to_msg(frame.masks[i], i) for i in indices]
        self._selection_pub.publish(msg)

    def _answer(self, response: Any, handler: Callable[[FrameResult], str]) -> Any:
        try:
            frame = self._frame()
            response.header = frame.header
            response.message = handler(frame)
            response.success = True
        except (PromptError, TextPromptError) as error:
            response.success = False
            response.message = str(error)
        except Exception as error:  # a bug must not take the service down
            response.success = False
            response.message = f"internal error: {error!r}"
            self._node.get_logger().error(f"prompt failed: {error!r}")
        return response

    def point(self, request: Any, response: Any) -> Any:
        def handle(frame: FrameResult) -> str:
            points = [(p.x, p.y) for p in request.points]
            indices = select_by_points(frame.masks, points, list(request.labels))
            response.instances = [instance_to_msg(frame.masks[i], i) for i in indices]
            response.merged = instance_to_msg(merge_instances(frame.masks, indices), 0)
            self._publish_selection(frame, indices)
            return f"selected {len(indices)} of {len(frame.masks)} instances"

        return self._answer(response, handle)

    def box(self, request: Any, response: Any) -> Any:
        def handle(frame: FrameResult) -> str:
            if not request.boxes:
                raise PromptError("no boxes given")
            matches = [select_by_box(frame.masks, (b.x1, b.y1, b.x2, b.y2)) for b in request.boxes]
            response.instances = [instance_to_msg(frame.masks[m.index], m.index) for m in matches]
            response.ious = [float(m.iou) for m in matches]
            self._publish_selection(frame, [m.index for m in matches])
            return f"selected {len(matches)} instance(s) for {len(matches)} box(es)"

        return self._answer(response, handle)

    def text(self, request: Any, response: Any) -> Any:
        def handle(frame: FrameResult) -> str:
            backend = self.text_backends.get(request.backend or self.text_backends.default)
            response.backend = backend.name
            matches = backend.rank(frame.masks, frame.image, list(request.texts), max(int(request.top_k), 1))
            response.text_index = [m.text_index for m in matches]
            response.scores = [m.score for m in matches]
            response.instances = [instance_to_msg(frame.masks[m.instance_index], m.instance_index) for m in matches]
            self._publish_selection(frame, list(dict.fromkeys(m.instance_index for m in matches)))
            return f"{len(matches)} match(es) for {len(request.texts)} text(s) with the {backend.name} backend"

        return self._answer(response, handle)
