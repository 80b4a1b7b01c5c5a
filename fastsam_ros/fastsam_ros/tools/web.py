"""fastsam_web: click-to-segment in a browser, beside a running fastsam node.

A separate rclpy node subscribes to the node's debug image and instances and calls its
prompt services; an aiohttp server on 127.0.0.1 (by default) serves one page. Frames go
out by long polling: the page asks for a frame newer than the one it shows and gets
the latest, so a slow browser skips frames instead of queueing them. Masks are decoded
here and sent as a PNG overlay. The server serves only its three page files and its API,
only to requests addressed to it (Host: against DNS rebinding) and prompts only from its own
page (Origin, JSON content type: against cross-site requests). Bodies are bounded before
they are read and parsed in worker threads, so that no request stalls the others; connections
are capped and must send their headers in time, so that idle ones cannot lock the page out.

Stop signals are caught before anything heavy is imported (OpenCV, aiohttp and rclpy load
inside the functions that need them): a signal at any moment is a clean stop, exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import reprlib
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from fastsam_ros.core.parameters import default_of
from fastsam_ros.core.signal_flag import SignalFlag
from fastsam_ros.tools.command_line import OneLineParser, integer_in, number_in, one_line

if TYPE_CHECKING:
    from aiohttp import web

FRAME_WAIT_S = 10.0
BODY_WAIT_S = 5.0
"""Longest wait for a request body to arrive in full: the page's few kilobytes take milliseconds."""
STOP_WAIT_S = 2.0
"""At a stop, how long requests in flight (a prompt the node is answering) may still finish."""
MAX_CONNECTIONS = 64
"""Connections held at once; a browser opens at most six to a server. Above it, the oldest
connection that has not sent a request yet makes room, or the new one is closed."""
HEADER_WAIT_S = 5.0
"""Longest wait for a new connection's request line and headers: a browser sends them at once."""
KEEPALIVE_S = 15.0
"""An idle connection between requests is closed after this (aiohttp's default is an hour)."""
WARNING_INTERVAL_S = 10.0
"""A warning that repeats (broken frames, refused connections) is printed at most this often."""
MAX_COORDINATE = 1e6
"""Largest pixel coordinate of a prompt: far beyond any frame the node takes (max_pixels)."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
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


class ThrottledWarning:
    """A warning that may repeat without end (a publisher of broken frames, a connection flood):
    one line at most every WARNING_INTERVAL_S, saying how many were left out, so the log stays readable."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_at = 0.0
        self.left_out = 0

    def warn(self, message: str) -> None:
        with self.lock:
            now = time.monotonic()
            if now < self.next_at:
                self.left_out += 1
                return
            more = f" ({self.left_out} more like it left out)" if self.left_out else ""
            self.next_at, self.left_out = now + WARNING_INTERVAL_S, 0
        print(one_line(f"fastsam_web: {message}{more}"), file=sys.stderr)


def mask_overlay(instances, width: int, height: int) -> tuple[str | None, int]:
    """PNG data URL of the union of the instances' masks over a width x height frame, and its pixel count."""
    import cv2
    import numpy as np

    from fastsam_ros.ros.convert import msg_to_instance

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


# Request bodies: checked here, in a worker thread, before anything reaches the node.

MAX_BODY_BYTES = 4096 + max(128 * default_of("max_prompt_points"), 12 * default_of("max_text_length"))
"""Largest request body read: a point and its label in 128 bytes, a text character escaped in 12."""


def _shown(value) -> str:
    """A value in a message, cut short and shallow: a request's values need be neither small nor flat."""
    return reprlib.repr(value)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(400, f"{what} must be a finite number, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError as error:
        raise RequestError(400, f"{what} is too large: {_shown(value)}") from error
    if not math.isfinite(number):
        raise RequestError(400, f"{what} must be a finite number, got {_shown(value)}")
    return number


def _coordinate(value, what: str) -> float:
    """A pixel coordinate: a finite number within MAX_COORDINATE (beyond float32, the message would carry inf)."""
    number = _number(value, what)
    if abs(number) > MAX_COORDINATE:
        raise RequestError(400, f"{what} {_shown(value)} is outside -{MAX_COORDINATE:g}..{MAX_COORDINATE:g} pixels")
    return number


def _float32(number: float) -> float:
    """A number as a float32 message field holds it."""
    return struct.unpack("f", struct.pack("f", number))[0]


def _limited(**counts) -> None:
    """The node's default prompt limits: the page asks no more of a node than one answers by default."""
    from fastsam_ros.core.prompts import PromptError, PromptLimits

    try:
        PromptLimits().check(**counts)
    except PromptError as error:
        raise RequestError(400, str(error)) from error


def parse_body(raw: bytes) -> dict:
    """The JSON object of a request body; anything else is a 400 that says why."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise RequestError(400, "request body is not UTF-8") from error
    except RecursionError as error:
        raise RequestError(400, "request body is nested too deeply") from error
    except ValueError as error:  # JSONDecodeError, and integers longer than Python converts
        raise RequestError(400, "request body is not valid JSON") from error
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    return body


def parse_point_request(body: dict) -> tuple[list[tuple[float, float]], list[int]]:
    points, labels = body.get("points"), body.get("labels")
    if not isinstance(points, list) or not points:
        raise RequestError(400, "'points' must be a non-empty list of [x, y] pairs")
    if not isinstance(labels, list) or len(labels) != len(points):
        raise RequestError(400, "'labels' must be a list with one label (1 foreground, 0 background) per point")
    _limited(points=len(points))
    parsed = []
    for index, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 2:
            raise RequestError(400, f"point {index} must be an [x, y] pair, got {_shown(point)}")
        parsed.append((_coordinate(point[0], f"point {index} x"), _coordinate(point[1], f"point {index} y")))
    if any(type(label) is not int or label not in (0, 1) for label in labels):
        raise RequestError(400, "labels must be the integers 1 (foreground) or 0 (background)")
    return parsed, labels


def parse_box_request(body: dict) -> tuple[float, float, float, float]:
    box = body.get("box")
    if not isinstance(box, list) or len(box) != 4:
        raise RequestError(400, "'box' must be [x1, y1, x2, y2]")
    x1, y1, x2, y2 = (_float32(_coordinate(v, "box coordinate")) for v in box)
    if not (x1 < x2 and y1 < y2):
        raise RequestError(400, f"box needs x1 < x2 and y1 < y2, got {[x1, y1, x2, y2]}")
    return x1, y1, x2, y2


def parse_text_request(body: dict) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RequestError(400, "'text' must be a non-empty string, e.g. \"bus\"")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RequestError(400, "'text' holds an unpaired surrogate (\\ud800-\\udfff): not a character") from error
    _limited(texts=[text])
    return text.strip()


def service_request(kind: str, raw: bytes):
    """The prompt service's request for a body the page sent (in a worker thread: parsing takes time)."""
    from geometry_msgs.msg import Point

    from fastsam_msgs.msg import BoundingBox
    from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt

    body = parse_body(raw)
    if kind == "point":
        points, labels = parse_point_request(body)
        return PointPrompt.Request(points=[Point(x=x, y=y) for x, y in points], labels=labels)
    if kind == "box":
        x1, y1, x2, y2 = parse_box_request(body)
        return BoxPrompt.Request(boxes=[BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)])
    return TextPrompt.Request(texts=[parse_text_request(body)], top_k=1)


class LiveView:
    """The ROS side: latest frame and instances of one camera, and its prompt services."""

    def __init__(self, node_name: str, camera: str, jpeg_quality: int) -> None:
        import cv2  # noqa: F401 - loaded here, before serving, not in the ROS thread at the first frame
        import rclpy
        from sensor_msgs.msg import Image

        from fastsam_msgs.msg import InstanceArray
        from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt
        from fastsam_ros.ros.qos import SERVICE_QOS

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
        self.skipped_images = 0
        self.image_warning = ThrottledWarning()
        self.callback_warning = ThrottledWarning()
        self.lock = threading.Lock()
        self.frame: Frame | None = None
        self.latest = None
        """The newest InstanceArray heard: the page shows the latest instances only."""
        self.on_frame = lambda: None
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _spin(self) -> None:
        """Spin until close. An exception out of a callback is reported and spinning goes on: a
        thread that ended would leave the page frozen and prompts unanswered, with the server up."""
        from rclpy.executors import ExternalShutdownException

        while True:
            try:
                self.executor.spin()
                return
            except ExternalShutdownException:
                return
            except Exception as error:  # any callback's failure: reported, and the thread goes on
                self.callback_warning.warn(f"a message was dropped: {type(error).__name__}: {error}")

    def _on_image(self, msg) -> None:
        import cv2

        from fastsam_ros.core.image_codec import ImageDecodeError, ImageEncodeError, encode_jpeg
        from fastsam_ros.ros.convert import image_to_bgr, stamp_to_ns

        try:
            image = image_to_bgr(msg)
        except (ImageDecodeError, cv2.error) as error:
            self._skip_image("undecodable debug image", str(error).strip())
            return
        try:
            jpeg = encode_jpeg(image, self.jpeg_quality)
        except ImageEncodeError as error:
            self._skip_image("debug image not encodable as JPEG", str(error))
            return
        with self.lock:
            seq = 0 if self.frame is None else self.frame.seq + 1
            self.frame = Frame(seq, jpeg, msg.width, msg.height, stamp_to_ns(msg.header.stamp))
        self.on_frame()

    def _skip_image(self, what: str, reason: str) -> None:
        self.skipped_images += 1
        self.image_warning.warn(f"{what} skipped ({self.skipped_images} so far): {reason}")

    def _on_instances(self, msg) -> None:
        with self.lock:
            self.latest = msg

    def latest_instances(self) -> dict:
        from fastsam_ros.ros.convert import stamp_to_ns

        with self.lock:
            msg = self.latest
        if msg is None:
            return {"stamp": None, "instances": []}
        return {"stamp": stamp_to_ns(msg.header.stamp), "instances": [instance_summary(i) for i in msg.instances]}

    def call(self, kind: str, request, answer: asyncio.Future) -> None:
        """Send a prompt (in a worker thread: rclpy calls block); its answer is set on answer, in its loop."""
        client = self.clients[kind]
        if not client.service_is_ready():
            raise RequestError(503, f"service {client.srv_name} is not available: is the fastsam node running?")

        def deliver(response) -> None:
            if not answer.done():
                answer.set_result(response)

        def done(future) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the node answered
                answer.get_loop().call_soon_threadsafe(deliver, future.result())

        client.call_async(request).add_done_callback(done)

    def close(self) -> None:
        from fastsam_ros.ros.graph_exit import leave_graph

        self.on_frame = lambda: None
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(5.0)
        leave_graph(self.node, self.context)


ALL_INTERFACES = ("0.0.0.0", "::", "")
"""--host values that listen on every interface of the machine."""


def url_host(address: str) -> str:
    """An address as it stands in a URL and a Host header (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def machine_addresses() -> list[str]:
    """Where other machines reach this one, as far as its hostname resolves; loopback first, then
    IPv4 before IPv6, each in address order."""
    import ipaddress

    addresses = {"127.0.0.1"}
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP):
            addresses.add(sockaddr[0].split("%")[0])
    ordered = ((address != "127.0.0.1", ipaddress.ip_address(address)) for address in addresses)
    return [str(ip) for _, ip in sorted(ordered, key=lambda pair: (pair[0], pair[1].version, pair[1]))]


@dataclass(frozen=True)
class Served:
    """The addresses this server answers as, for its printed URLs and the Host check against DNS rebinding."""

    urls: tuple[str, ...]
    hosts: frozenset[str]

    @classmethod
    def of(cls, host: str, port: int) -> Served:
        names = [host] if host not in ALL_INTERFACES else machine_addresses()
        listed = [f"{url_host(name)}:{port}" for name in names]
        known = {*names, "127.0.0.1", "localhost", "::1"}
        if host in ALL_INTERFACES:
            known.add(socket.gethostname())
        hosts = {f"{url_host(name.lower())}:{port}" for name in known}
        if port == 80:  # a browser leaves the default port out of Host
            hosts |= {url_host(name.lower()) for name in known}
        return cls(tuple(f"http://{name}/" for name in listed), frozenset(hosts))


class WebApp:
    """The HTTP side: page files, the frame long poll, instances and the three prompts."""

    def __init__(self, view: LiveView, service_timeout: float, served: Served) -> None:
        self.view = view
        self.service_timeout = service_timeout
        self.served = served
        self.frame_event: asyncio.Event | None = None
        self.closing = False
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler):
            return await self._guard(request, handler)

        self.app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
        self.app.router.add_get("/", self.page_file)
        self.app.router.add_get("/app.js", self.page_file)
        self.app.router.add_get("/style.css", self.page_file)
        self.app.router.add_get("/api/frame", self.frame)
        self.app.router.add_get("/api/instances", self.instances)
        self.app.router.add_post("/api/prompt/{kind}", self.prompt)
        self.app.on_startup.append(self._on_startup)
        self.app.on_shutdown.append(self._on_shutdown)

    async def _on_startup(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.frame_event = asyncio.Event()

        def new_frame() -> None:
            self.frame_event.set()
            self.frame_event = asyncio.Event()

        def on_frame() -> None:
            with contextlib.suppress(RuntimeError):  # a frame that arrives as the loop closes
                loop.call_soon_threadsafe(new_frame)

        self.view.on_frame = on_frame

    async def _on_shutdown(self, app: web.Application) -> None:
        """Long polls end now with a 204, instead of holding the stop for up to FRAME_WAIT_S."""
        self.view.on_frame = lambda: None
        self.closing = True
        self.frame_event.set()

    async def _guard(self, request: web.Request, handler):
        """Only this server's own page gets an answer: target, Host and Origin checked first, refusals as JSON."""
        from aiohttp import web

        try:
            self._check_origin(request)
            return await handler(request)
        except RequestError as error:
            return web.json_response({"success": False, "message": str(error)}, status=error.status)

    def _check_origin(self, request: web.Request) -> None:
        target = request.raw_path
        if not target.startswith("/"):  # absolute form: its authority outranks Host (RFC 9112)
            parts = urllib.parse.urlsplit(target)
            if parts.scheme.lower() != "http" or parts.netloc.lower() not in self.served.hosts:
                raise RequestError(400, f"request target {_shown(target)} is not a path of this server")
        host = request.headers.get("Host", "")
        if host.lower() not in self.served.hosts:
            raise RequestError(403, f"Host {_shown(host)} is not an address of this server: open {self.served.urls[0]}")
        origin = request.headers.get("Origin")
        if request.method not in ("GET", "HEAD") and origin is not None and origin.lower() != f"http://{host.lower()}":
            raise RequestError(403, f"Origin {_shown(origin)} refused: prompts come only from this server's page")

    async def page_file(self, request: web.Request) -> web.Response:
        from aiohttp import web

        name, content_type = PAGE_FILES[request.path]
        text = resources.files("fastsam_ros.tools").joinpath("web_static", name).read_text()
        return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-cache"})

    async def frame(self, request: web.Request) -> web.Response:
        """The latest frame once it is newer than ?after=SEQ; 204 when none comes within FRAME_WAIT_S."""
        from aiohttp import web

        try:
            after = int(request.query.get("after", "-1"))
        except ValueError as error:
            raise RequestError(400, "'after' must be an integer frame number") from error
        deadline = time.monotonic() + FRAME_WAIT_S
        while (frame := self.view.frame) is None or frame.seq <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closing:
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
        from aiohttp import web

        return web.json_response(await asyncio.to_thread(self.view.latest_instances))

    async def prompt(self, request: web.Request) -> web.Response:
        from aiohttp import web

        kind = request.match_info["kind"]
        if kind not in ("point", "box", "text"):
            raise RequestError(404, f"unknown prompt {_shown(kind)}: use point, box or text")
        if request.content_type != "application/json":
            raise RequestError(415, "a prompt's body must be JSON, sent as Content-Type: application/json")
        try:
            async with asyncio.timeout(BODY_WAIT_S):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge as error:
            raise RequestError(413, f"request body is larger than {MAX_BODY_BYTES} bytes") from error
        except TimeoutError as error:
            raise RequestError(408, f"request body did not arrive within {BODY_WAIT_S:.0f} s") from error
        service_call = await asyncio.to_thread(service_request, kind, raw)
        frame = self.view.frame
        if frame is None:
            raise RequestError(409, f"no camera frame yet: nothing to select on (waiting for {self.view.image_topic})")
        answer = asyncio.get_running_loop().create_future()
        await asyncio.to_thread(self.view.call, kind, service_call, answer)
        try:
            response = await asyncio.wait_for(answer, self.service_timeout)
        except asyncio.TimeoutError as error:
            raise RequestError(
                504, f"the node did not answer the {kind} prompt within {self.service_timeout:.0f} s"
            ) from error
        return web.json_response(await asyncio.to_thread(self._selection, response, frame))

    def _selection(self, response, frame: Frame) -> dict:
        from fastsam_ros.ros.convert import stamp_to_ns

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


def command_line() -> OneLineParser:
    """fastsam_web's options (docs/USAGE.md lists them from here)."""
    parser = OneLineParser(prog="fastsam_web", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=integer_in(1, 65535), default=8080, help="port (default 8080)")
    parser.add_argument("--node", default="fastsam", help="name of the fastsam node (default fastsam)")
    parser.add_argument("--camera", default="", help="camera name of a multi-camera node")
    parser.add_argument(
        "--jpeg-quality", type=integer_in(1, 100), default=80, help="JPEG quality of the frames sent (1-100)"
    )
    parser.add_argument(
        "--service-timeout",
        type=number_in(0.0, math.inf, low_allowed=False),
        default=30.0,
        help="seconds to wait for a prompt's answer",
    )
    return parser


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = command_line()
    args = parser.parse_args(argv)
    from rclpy.exceptions import NameValidationException
    from rclpy.validate_full_topic_name import validate_full_topic_name

    name = private_name(args.node, args.camera, "debug_image")
    try:
        validate_full_topic_name(name)
    except NameValidationException:
        parser.error(f"--node {args.node!r} and --camera {args.camera!r} make {name!r}, not a valid ROS name")
    return args


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal), any number of them at any time, ask once for a clean stop."""

    def __init__(self) -> None:
        self.requested = SignalFlag()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)

    @staticmethod
    def ignore_from_now() -> None:
        """Python puts its handlers back to the default action while it finalizes: a late signal
        would still end the finished process with a signal's exit status."""
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)

    def _on_signal(self, number: int, frame) -> None:
        self.requested.set()
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the stop is under way
                self.loop.call_soon_threadsafe(self.stopping.set)

    async def wait(self) -> None:
        self.stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        if self.requested.is_set():
            self.stopping.set()
        await self.stopping.wait()


class GuardedConnection(asyncio.Protocol):
    """One TCP connection, handed to aiohttp's handler once the guard lets it in; closed when its
    first request line and headers are not complete within HEADER_WAIT_S (later requests on it
    fall under aiohttp's keep-alive timeout)."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.handler: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.heard = False
        self.received_tail = b""
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        if not self.guard.admit(self):
            transport.abort()
            return
        self.deadline = asyncio.get_running_loop().call_later(HEADER_WAIT_S, self._headers_overdue)
        self.handler = self.guard.handler_factory()
        self.handler.connection_made(transport)

    def _headers_overdue(self) -> None:
        if not self.heard:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.heard:
            seen = self.received_tail + data
            self.heard = b"\r\n\r\n" in seen or b"\n\n" in seen
            self.received_tail = seen[-3:]
            if self.heard:
                self.deadline.cancel()
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        if self.handler is not None:
            self.deadline.cancel()
            self.handler.connection_lost(exc)


class ConnectionGuard:
    """The listening socket's protocol factory: at most MAX_CONNECTIONS at once, so idle
    connections cannot use up the process's descriptors and lock the page out."""

    def __init__(self, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        self.handler_factory = handler_factory
        self.open: dict[GuardedConnection, None] = {}
        """Oldest first (a dict keeps insertion order)."""
        self.refusals = ThrottledWarning()

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self)

    def admit(self, connection: GuardedConnection) -> bool:
        if len(self.open) >= MAX_CONNECTIONS:
            silent = next((held for held in self.open if not held.heard), None)
            if silent is None:
                self.refusals.warn(f"{MAX_CONNECTIONS} connections busy: a new one was closed")
                return False
            self.open.pop(silent)
            silent.transport.abort()
            self.refusals.warn(f"{MAX_CONNECTIONS} connections open: the oldest one without a request was closed")
        self.open[connection] = None
        return True

    def release(self, connection: GuardedConnection) -> None:
        self.open.pop(connection, None)


def report_loop_error(loop: asyncio.AbstractEventLoop, context: dict, warning: ThrottledWarning) -> None:
    """An error the event loop could only log (a failed accept when descriptors run out, repeated
    as fast as the loop turns): one throttled line instead of a traceback each time."""
    error, message = context.get("exception"), context.get("message", "event loop error")
    warning.warn(f"{message}: {error}" if error else message)


async def serve(app: WebApp, host: str, port: int, stop: StopRequest) -> int:
    """Serve until a stop signal: exit code 0, or 2 with one line when the address cannot be used."""
    from aiohttp import web

    loop = asyncio.get_running_loop()
    loop_errors = ThrottledWarning()
    loop.set_exception_handler(lambda loop, context: report_loop_error(loop, context, loop_errors))
    runner = web.AppRunner(
        app.app, handle_signals=False, access_log=None, shutdown_timeout=STOP_WAIT_S, keepalive_timeout=KEEPALIVE_S
    )
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        try:
            listener = await loop.create_server(ConnectionGuard(runner.server), host or None, port, reuse_address=True)
        except (OSError, UnicodeError) as error:  # in use, not this machine's, no such name
            print(one_line(f"fastsam_web: cannot listen on {host}:{port}: {error}"), file=sys.stderr)
            return 2
        announce(app.served, host, app.view.image_topic)
        await stop.wait()
        return 0
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


def announce(served: Served, host: str, image_topic: str) -> None:
    """Where to open the page; on all interfaces, loudly, that anyone who reaches it may use it."""
    if host in ALL_INTERFACES:
        print(
            f"fastsam_web: WARNING: listening on all interfaces ({host or 'all'}) with no authentication: anyone "
            "who can reach this machine sees the camera and sends prompts to the node. Use --host 127.0.0.1 "
            "unless this network is trusted.",
            file=sys.stderr,
        )
    print(f"fastsam_web: open {' or '.join(served.urls)} (camera image from {image_topic})", flush=True)


def main(argv: list[str] | None = None) -> None:
    stop = StopRequest()
    code = 0
    try:
        args = arguments(argv)
        if stop.requested.is_set():
            return
        view = LiveView(args.node, args.camera, args.jpeg_quality)
        try:
            view.start()
            app = WebApp(view, args.service_timeout, Served.of(args.host, args.port))
            if not stop.requested.is_set():
                code = asyncio.run(serve(app, args.host, args.port, stop))
        finally:
            view.close()
    finally:
        stop.ignore_from_now()
    if code:
        raise SystemExit(code)
