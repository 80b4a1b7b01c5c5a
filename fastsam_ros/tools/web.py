"""fastsam_web: click-to-segment in a browser, beside a running fastsam node.

A separate rclpy node subscribes to the node's debug image and instances and calls its
prompt services; an aiohttp server on 127.0.0.1 (by default) serves one page. Frames go
out by long polling: the page asks for a frame newer than the one it shows and gets
the latest, so a slow browser skips frames instead of queueing them. Masks are decoded
here and sent as a PNG overlay. The server serves only its three page files.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np
from aiohttp import web

FRAME_WAIT_S = 10.0
MASK_COLOUR_BGRA = (255, 144, 30, 150)
PAGE_FILES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}


class RequestError(Exception):
    """A request the page or a user sent that cannot be served; status and message go back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Frame:
    seq: int
    jpeg: bytes
    width: int
    height: int
    stamp_ns: int


def private_name(node: str, camera: str, name: str) -> str:
    """Topic or service of a node's camera ('' = the single unnamed camera)."""
    return f"/{node}/{camera}/{name}" if camera else f"/{node}/{name}"


def instance_summary(msg) -> dict:
    return {
        "id": int(msg.id),
        "class_name": msg.class_name,
        "score": round(float(msg.score), 3),
        "track_id": int(msg.track_id),
        "box": [round(float(v), 1) for v in (msg.box.x1, msg.box.y1, msg.box.x2, msg.box.y2)],
        "area": int(msg.area),
    }


def mask_overlay(instances, width: int, height: int) -> tuple[str | None, int]:
    """PNG data URL of the union of the instances' masks over a width x height frame, and its pixel count."""
    from fastsam_ros.ros_convert import msg_to_instance

    union = np.zeros((height, width), bool)
    for msg in instances:
        msg_to_instance(msg).paste(union)
    if not union.any():
        return None, 0
    overlay = np.zeros((height, width, 4), np.uint8)
    overlay[union] = MASK_COLOUR_BGRA
    ok, png = cv2.imencode(".png", overlay)
    if not ok:
        raise RuntimeError("PNG encoding of the mask failed")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode(), int(union.sum())


# Request bodies: checked here, before anything reaches the node.


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(400, f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_point_request(body: dict) -> tuple[list[tuple[float, float]], list[int]]:
    points, labels = body.get("points"), body.get("labels")
    if not isinstance(points, list) or not points:
        raise RequestError(400, "'points' must be a non-empty list of [x, y] pairs")
    if not isinstance(labels, list) or len(labels) != len(points):
        raise RequestError(400, "'labels' must be a list with one label (1 foreground, 0 background) per point")
    parsed = []
    for index, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 2:
            raise RequestError(400, f"point {index} must be an [x, y] pair, got {point!r}")
        parsed.append((_number(point[0], f"point {index} x"), _number(point[1], f"point {index} y")))
    if any(label not in (0, 1) or isinstance(label, bool) for label in labels):
        raise RequestError(400, "labels must be 1 (foreground) or 0 (background)")
    return parsed, labels


def parse_box_request(body: dict) -> tuple[float, float, float, float]:
    box = body.get("box")
    if not isinstance(box, list) or len(box) != 4:
        raise RequestError(400, "'box' must be [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_number(v, "box coordinate") for v in box)
    if not (x1 < x2 and y1 < y2):
        raise RequestError(400, f"box needs x1 < x2 and y1 < y2, got {box}")
    return x1, y1, x2, y2


def parse_text_request(body: dict) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RequestError(400, "'text' must be a non-empty string, e.g. \"bus\"")
    # The node's default limit, from the parameter's one definition; imported here since the
    # config module brings torch, which the page's server does not otherwise need.
    from fastsam_ros.config import default_of

    longest = default_of("max_text_length")
    if len(text) > longest:
        raise RequestError(400, f"'text' is longer than {longest} characters")
    return text.strip()


class LiveView:
    """The ROS side: latest frame and instances of one camera, and its prompt services."""

    def __init__(self, node_name: str, camera: str, jpeg_quality: int) -> None:
        import rclpy
        from sensor_msgs.msg import Image

        from fastsam_ros.msg import InstanceArray
        from fastsam_ros.ros_qos import SERVICE_QOS
        from fastsam_ros.srv import BoxPrompt, PointPrompt, TextPrompt

        self.context = rclpy.Context()
        self.context.init(args=[])
        self.node = rclpy.create_node("fastsam_web", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.image_topic = private_name(node_name, camera, "debug_image")
        self.node.create_subscription(Image, self.image_topic, self._on_image, 2)
        self.node.create_subscription(
            InstanceArray, private_name(node_name, camera, "instances"), self._on_instances, 5
        )
        self.clients = {
            kind: self.node.create_client(
                srv, private_name(node_name, camera, f"prompt_{kind}"), qos_profile=SERVICE_QOS
            )
            for kind, srv in (("point", PointPrompt), ("box", BoxPrompt), ("text", TextPrompt))
        }
        self.jpeg_quality = jpeg_quality
        self.lock = threading.Lock()
        self.frame: Frame | None = None
        self.instances: deque = deque(maxlen=30)
        self.on_frame = lambda: None
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def _on_image(self, msg) -> None:
        from fastsam_ros.ros_convert import image_to_bgr, stamp_to_ns

        image = image_to_bgr(msg)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return
        with self.lock:
            seq = 0 if self.frame is None else self.frame.seq + 1
            self.frame = Frame(seq, jpeg.tobytes(), msg.width, msg.height, stamp_to_ns(msg.header.stamp))
        self.on_frame()

    def _on_instances(self, msg) -> None:
        with self.lock:
            self.instances.append(msg)

    def latest_instances(self) -> dict:
        from fastsam_ros.ros_convert import stamp_to_ns

        with self.lock:
            msg = self.instances[-1] if self.instances else None
        if msg is None:
            return {"stamp": None, "instances": []}
        return {"stamp": stamp_to_ns(msg.header.stamp), "instances": [instance_summary(i) for i in msg.instances]}

    def call(self, kind: str, request, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """Call a prompt service; the response arrives in an asyncio future of loop."""
        client = self.clients[kind]
        if not client.service_is_ready():
            raise RequestError(503, f"service {client.srv_name} is not available: is the fastsam node running?")
        result = loop.create_future()

        def done(future) -> None:
            def deliver() -> None:
                if not result.done():
                    result.set_result(future.result())

            loop.call_soon_threadsafe(deliver)

        client.call_async(request).add_done_callback(done)
        return result

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(5.0)
        self.node.destroy_node()
        self.context.try_shutdown()


class WebApp:
    """The HTTP side: page files, the frame long poll, instances and the three prompts."""

    def __init__(self, view: LiveView, service_timeout: float) -> None:
        self.view = view
        self.service_timeout = service_timeout
        self.frame_event: asyncio.Event | None = None
        self.app = web.Application(middlewares=[self._errors])
        self.app.router.add_get("/", self.page_file)
        self.app.router.add_get("/app.js", self.page_file)
        self.app.router.add_get("/style.css", self.page_file)
        self.app.router.add_get("/api/frame", self.frame)
        self.app.router.add_get("/api/instances", self.instances)
        self.app.router.add_post("/api/prompt/{kind}", self.prompt)
        self.app.on_startup.append(self._on_startup)

    async def _on_startup(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.frame_event = asyncio.Event()

        def new_frame() -> None:
            self.frame_event.set()
            self.frame_event = asyncio.Event()

        self.view.on_frame = lambda: loop.call_soon_threadsafe(new_frame)

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except RequestError as error:
            return web.json_response({"success": False, "message": str(error)}, status=error.status)

    async def page_file(self, request: web.Request) -> web.Response:
        name, content_type = PAGE_FILES[request.path]
        text = resources.files("fastsam_ros.tools").joinpath("web_static", name).read_text()
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-cache"})

    async def frame(self, request: web.Request) -> web.Response:
        """The latest frame once it is newer than ?after=SEQ; 204 when none comes within FRAME_WAIT_S."""
        try:
            after = int(request.query.get("after", "-1"))
        except ValueError as error:
            raise RequestError(400, "'after' must be an integer frame number") from error
        deadline = time.monotonic() + FRAME_WAIT_S
        while (frame := self.view.frame) is None or frame.seq <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=204)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.frame_event.wait(), remaining)
        headers = {
            "X-Frame-Seq": str(frame.seq),
            "X-Frame-Stamp": str(frame.stamp_ns),
            "X-Frame-Size": f"{frame.width}x{frame.height}",
            "Cache-Control": "no-store",
        }
        return web.Response(body=frame.jpeg, content_type="image/jpeg", headers=headers)

    async def instances(self, request: web.Request) -> web.Response:
        return web.json_response(self.view.latest_instances())

    async def prompt(self, request: web.Request) -> web.Response:
        from geometry_msgs.msg import Point

        from fastsam_ros.msg import BoundingBox
        from fastsam_ros.srv import BoxPrompt, PointPrompt, TextPrompt

        kind = request.match_info["kind"]
        if kind not in ("point", "box", "text"):
            raise RequestError(404, f"unknown prompt '{kind}': use point, box or text")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(400, "request body is not valid JSON") from error
        if not isinstance(body, dict):
            raise RequestError(400, "request body must be a JSON object")
        if kind == "point":
            points, labels = parse_point_request(body)
            service_request = PointPrompt.Request(points=[Point(x=x, y=y) for x, y in points], labels=labels)
        elif kind == "box":
            x1, y1, x2, y2 = parse_box_request(body)
            service_request = BoxPrompt.Request(boxes=[BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)])
        else:
            service_request = TextPrompt.Request(texts=[parse_text_request(body)], top_k=1)
        frame = self.view.frame
        if frame is None:
            raise RequestError(409, f"no camera frame yet: nothing to select on (waiting for {self.view.image_topic})")
        try:
            response = await asyncio.wait_for(
                self.view.call(kind, service_request, asyncio.get_running_loop()), self.service_timeout
            )
        except asyncio.TimeoutError as error:
            raise RequestError(
                504, f"the node did not answer the {kind} prompt within {self.service_timeout:.0f} s"
            ) from error
        return web.json_response(self._selection(response, frame))

    def _selection(self, response, frame: Frame) -> dict:
        from fastsam_ros.ros_convert import stamp_to_ns

        instances = list(response.instances) if response.success else []
        mask, pixels = mask_overlay(instances, frame.width, frame.height)
        return {
            "success": bool(response.success),
            "message": response.message,
            "stamp": stamp_to_ns(response.header.stamp),
            "instances": [instance_summary(i) for i in instances],
            "mask": mask,
            "mask_pixels": pixels,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastsam_web", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--node", default="fastsam", help="name of the fastsam node (default fastsam)")
    parser.add_argument("--camera", default="", help="camera name of a multi-camera node")
    parser.add_argument("--jpeg-quality", type=int, default=80, help="JPEG quality of the frames sent (1-100)")
    parser.add_argument("--service-timeout", type=float, default=30.0, help="seconds to wait for a prompt's answer")
    args = parser.parse_args(argv)
    if not 1 <= args.jpeg_quality <= 100:
        parser.error("--jpeg-quality must be within 1..100")
    view = LiveView(args.node, args.camera, args.jpeg_quality)
    view.start()
    try:
        print(f"fastsam_web: open http://{args.host}:{args.port}/ (camera image from {view.image_topic})", flush=True)
        web.run_app(WebApp(view, args.service_timeout).app, host=args.host, port=args.port, print=None)
    finally:
        view.close()
