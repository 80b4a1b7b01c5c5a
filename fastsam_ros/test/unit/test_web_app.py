"""The web tool's HTTP side in this process: its real LiveView and WebApp, served by aiohttp on
loopback, in front of a camera's prompt services (the node's own handlers, answering on the bus
photo's segmentation) and a debug image and instances published in this process.

The web tool as a program (its command line, signals, connection limits, a real browser) is
tested in test/graph/test_web_hostile.py and test_web_page.py; these tests are fast enough to
run under every mutant of tools/web.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from rclpy.executors import MultiThreadedExecutor
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fastsam_msgs.msg import BoundingBox, InstanceArray
from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt
from fastsam_ros.core.follow import Follower
from fastsam_ros.core.prompts import PromptLimits
from fastsam_ros.core.text_prompts import TextBackends
from fastsam_ros.ros.convert import array_to_image, mask_set_to_msg, msg_to_instance, stamp_from_ns, stamp_to_ns
from fastsam_ros.ros.prompt_service import PromptService, SegmentedFrame
from fastsam_ros.ros.qos import SERVICE_QOS
from fastsam_ros.tools import web
from fastsam_ros.tools.node_client import wait_until
from test_support.node_driver import free_port, signal_handlers_kept
from test_support.own_context import NodeInOwnContext

NODE = f"web_test_{os.getpid()}"
"""The node name the web tool is pointed at: this process's own, so parallel test processes never meet."""
HEADER = Header(stamp=Time(sec=1700, nanosec=42), frame_id="bus_camera")
BUS, PERSON_LEFT = 0, 2
"""Indices of the bus photo's instances (yolo11n-seg at the engine's defaults)."""
SERVICES = {"point": PointPrompt, "box": BoxPrompt, "text": TextPrompt}
REFUSED_ORIGIN = "refused: prompts come only from this server's page"


class NodeSide(NodeInOwnContext):
    """What a fastsam node offers the web tool, in a context of its own: the debug image and
    instances it publishes and its prompt services, answered on the bus frame after `delay` s."""

    def __init__(self, frame: SegmentedFrame, backends: TextBackends, bus: np.ndarray) -> None:
        super().__init__(NODE, MultiThreadedExecutor)
        self.frame, self.bus = frame, bus
        self.images = self.node.create_publisher(Image, web.private_name(NODE, "", "debug_image"), 2)
        self.instances = self.node.create_publisher(InstanceArray, web.private_name(NODE, "", "instances"), 5)
        selection = self.node.create_publisher(InstanceArray, web.private_name(NODE, "", "selection"), 5)
        self.service = PromptService(
            self.node, lambda: frame, PromptLimits, backends, selection, "camera/image", Follower()
        )
        self.delay = 0.0
        self.answered = 0
        for kind, srv in SERVICES.items():
            self.node.create_service(
                srv, web.private_name(NODE, "", f"prompt_{kind}"), self._handler(kind), qos_profile=SERVICE_QOS
            )
        self.spin_in_thread()

    def _handler(self, kind: str) -> Callable[[Any, Any], Any]:
        def answer(request: Any, response: Any) -> Any:
            time.sleep(self.delay)
            self.answered += 1
            return getattr(self.service, kind)(request, response)

        return answer

    def expected(self, kind: str, request: Any) -> Any:
        """The service's own answer to request, called directly."""
        return getattr(self.service, kind)(request, SERVICES[kind].Response())

    def publish_image(self, view: web.LiveView, stamp_ns: int, image: Image | None = None) -> None:
        """Publish a debug image (the bus photo unless given) and wait until the view has it or skipped it."""
        if image is None:
            header = Header(stamp=stamp_from_ns(stamp_ns), frame_id="bus_camera")
            image = array_to_image(self.bus, "bgr8", header)
        seen = (view.frame.seq if view.frame else -1, view.skipped_images)
        wait_until(lambda: self.images.get_subscription_count() > 0, 10.0, lambda: time.sleep(0.02), "the view")
        self.images.publish(image)
        wait_until(
            lambda: (view.frame.seq if view.frame else -1, view.skipped_images) != seen,
            10.0,
            lambda: time.sleep(0.01),
            "the debug image taken",
        )


@pytest.fixture(scope="module")
def node_side(loaded_model, bus_masks, bus) -> Iterator[NodeSide]:
    values = {"text_backend": "class_names", "runtime": "onnxruntime", "clip_model": "", "clip_pretrained": ""}
    backends = TextBackends(loaded_model.class_names, values, None)
    backends.wait_loaded()
    frame = SegmentedFrame(bus_masks, bus, HEADER, tuple(mask_set_to_msg(bus_masks, HEADER).instances))
    side = NodeSide(frame, backends, bus)
    try:
        yield side
    finally:
        side.close()


@pytest.fixture(scope="module")
def live_view(node_side) -> Iterator[web.LiveView]:
    live = web.LiveView(NODE, "", 80)
    live.start()
    try:
        wait_until(
            lambda: all(client.service_is_ready() for client in live.clients.values()),
            10.0,
            lambda: time.sleep(0.02),
            "the prompt services",
        )
        yield live
    finally:
        live.close()


@pytest.fixture
def view(live_view, node_side) -> web.LiveView:
    """The LiveView of the node as a new one starts: no frame, no instances, nothing skipped or warned.
    (One view for the module: discovering the node's services takes a new view seconds.)"""
    with live_view.lock:
        live_view.frame = None
        live_view.latest = None
    live_view.skipped_images = 0
    for warning in (live_view.image_warning, live_view.callback_warning):
        warning.next_at, warning.left_out = 0.0, 0
    node_side.delay = 0.0
    return live_view


def served(view: web.LiveView, talk: Callable[[TestClient, int], Awaitable[Any]], service_timeout: float = 10.0) -> Any:
    """Serve view's WebApp on loopback and run talk(client, port) against it."""

    async def run() -> Any:
        port = free_port()
        app = web.WebApp(view, service_timeout, web.Served.of("127.0.0.1", port))
        async with TestClient(TestServer(app.app, host="127.0.0.1", port=port)) as client:
            return await asyncio.wait_for(talk(client, port), 60.0)

    return asyncio.run(run())


async def _json(response) -> tuple[int, dict]:
    return response.status, await response.json()


def test_the_page_files_are_served_and_never_taken_from_a_cache(view):
    async def talk(client: TestClient, port: int) -> None:
        for path, (name, content_type) in web.PAGE_FILES.items():
            response = await client.get(path)
            assert (response.status, response.content_type) == (200, content_type), path
            assert response.headers["Cache-Control"] == "no-cache"
            expected = (web.resources.files("fastsam_ros.tools") / "web_static" / name).read_text()
            assert await response.text() == expected
        assert (await client.get("/index.html")).status == 404, "only the three page files"

    served(view, talk)


def test_requests_for_another_host_are_refused_with_the_address_to_open(view):
    async def talk(client: TestClient, port: int) -> None:
        status, body = await _json(await client.get("/api/instances", headers={"Host": "evil.example:8080"}))
        message = f"Host 'evil.example:8080' is not an address of this server: open http://127.0.0.1:{port}/"
        assert (status, body) == (403, {"success": False, "message": message})
        assert (await client.get("/", headers={"Host": f"LOCALHOST:{port}"})).status == 200, "names are caseless"
        assert (await client.get("/", headers={"Host": f"[::1]:{port}"})).status == 200
        assert (await client.get("/", headers={"Host": "127.0.0.1"})).status == 403, "port 80 only without port"

    served(view, talk)


def test_a_request_target_naming_another_server_is_refused(view):
    async def talk(client: TestClient, port: int) -> None:
        assert await _request(port, f"http://127.0.0.1:{port}/api/instances") == b"HTTP/1.1 200 OK"
        assert await _request(port, f"HTTP://127.0.0.1:{port}/api/instances") == b"HTTP/1.1 200 OK"
        assert await _request(port, f"http://LocalHost:{port}/api/instances") == b"HTTP/1.1 200 OK", "caseless"
        assert await _request(port, f"https://127.0.0.1:{port}/api/instances") == b"HTTP/1.1 400 Bad Request"
        target = "http://evil.example/"  # short enough to be named in full
        message = f"request target '{target}' is not a path of this server"
        head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        assert await _response(port, head) == (b"HTTP/1.1 400 Bad Request", {"success": False, "message": message})

    served(view, talk)


def test_a_request_without_a_host_is_refused_with_the_address_to_open(view):
    """HTTP/1.0 lets a client leave out Host; such a request names no address of this server."""

    async def talk(client: TestClient, port: int) -> None:
        message = f"Host '' is not an address of this server: open http://127.0.0.1:{port}/"
        answer = await _response(port, "GET /api/instances HTTP/1.0\r\n\r\n")
        assert answer == (b"HTTP/1.0 403 Forbidden", {"success": False, "message": message})

    served(view, talk)


def test_prompts_come_only_from_this_servers_own_page(view, node_side):
    node_side.publish_image(view, 1)
    body = {"points": [[400, 500]], "labels": [1]}

    async def talk(client: TestClient, port: int) -> None:
        foreign = await client.post("/api/prompt/point", json=body, headers={"Origin": "http://evil.example"})
        assert await _json(foreign) == (
            403,
            {
                "success": False,
                "message": "Origin 'http://evil.example' refused: prompts come only from this server's page",
            },
        )
        own = await client.post("/api/prompt/point", json=body, headers={"Origin": f"HTTP://127.0.0.1:{port}"})
        assert own.status == 200, await own.text()
        assert (await client.post("/api/prompt/point", json=body)).status == 200, "no Origin: not a browser's page"
        reading = await client.get("/api/instances", headers={"Origin": "http://evil.example"})
        assert reading.status == 200, "reading is not prompting"
        heading = await client.head("/api/instances", headers={"Origin": "http://evil.example"})
        assert heading.status == 200, "nor is asking for the headers only"
        named = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
        assert (await client.post("/api/prompt/point", json=body, headers=named)).status == 200, "the page by name"

    served(view, talk)


def _instance_array(node_side: NodeSide, stamp_ns: int, indices: list[int]) -> InstanceArray:
    header = Header(stamp=stamp_from_ns(stamp_ns), frame_id="bus_camera")
    msg = mask_set_to_msg(node_side.frame.masks, header)
    msg.instances = [msg.instances[i] for i in indices]
    return msg


def test_instances_are_the_latest_arrays_summary(view, node_side):
    async def talk(client: TestClient, port: int) -> tuple[int, dict]:
        return await _json(await client.get("/api/instances"))

    assert served(view, talk) == (200, {"stamp": None, "instances": []})
    wait_until(lambda: node_side.instances.get_subscription_count() > 0, 10.0, lambda: time.sleep(0.02), "the view")
    node_side.instances.publish(_instance_array(node_side, 5_000_000_001, [BUS]))
    node_side.instances.publish(_instance_array(node_side, 5_500_000_001, [BUS]))
    latest = _instance_array(node_side, 6_000_000_002, [PERSON_LEFT, BUS])
    latest.instances[0].track_id = 17
    node_side.instances.publish(latest)
    wait_until(
        lambda: view.latest is not None and view.latest.header == latest.header,
        10.0,
        lambda: time.sleep(0.01),
        "the newest array",
    )
    status, body = served(view, talk)
    assert (status, body["stamp"]) == (200, 6_000_000_002)
    expected = []
    for msg in latest.instances:
        box = [msg.box.x1, msg.box.y1, msg.box.x2, msg.box.y2]
        expected.append(
            {
                "id": msg.id,
                "class_name": msg.class_name,
                "score": round(msg.score, 3),
                "track_id": msg.track_id,
                "box": [round(v, 1) for v in box],
                "area": msg.area,
            }
        )
    assert body["instances"] == expected
    assert [i["track_id"] for i in body["instances"]] == [17, latest.instances[1].track_id]


def test_a_frame_is_the_latest_debug_image_as_jpeg_at_the_chosen_quality(view, node_side, bus, monkeypatch):
    monkeypatch.setattr(web, "FRAME_WAIT_S", 0.3)

    async def frame(client: TestClient, after: str) -> Any:
        response = await client.get(f"/api/frame?after={after}")
        return response.status, dict(response.headers), await response.read()

    async def none_yet(client: TestClient, port: int) -> None:
        start = time.monotonic()
        assert (await frame(client, "-1"))[0] == 204, "no frame within FRAME_WAIT_S"
        assert time.monotonic() - start >= web.FRAME_WAIT_S, "the request waits for a frame"

    served(view, none_yet)
    node_side.publish_image(view, 7_000_000_003)
    node_side.publish_image(view, 8_000_000_004)

    async def talk(client: TestClient, port: int) -> None:
        status, headers, jpeg = await frame(client, "-1")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert headers["X-Frame-Seq"] == "1" and headers["X-Frame-Stamp"] == "8000000004"
        assert headers["X-Frame-Size"] == f"{bus.shape[1]}x{bus.shape[0]}"
        assert headers["Cache-Control"] == "no-store"
        assert jpeg == cv2.imencode(".jpg", bus, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        assert (await frame(client, "0"))[0] == 200, "newer than frame 0"
        latest = await client.get("/api/frame")
        assert (latest.status, await latest.read()) == (200, jpeg), "without 'after', the latest frame"
        assert (await frame(client, "1"))[0] == 204, "nothing newer than frame 1"
        status, body = await _json(await client.get("/api/frame?after=one"))
        assert (status, body) == (400, {"success": False, "message": "'after' must be an integer frame number"})

    served(view, talk)


def test_a_waiting_frame_request_is_answered_as_soon_as_a_new_frame_arrives(view, node_side, monkeypatch):
    monkeypatch.setattr(web, "FRAME_WAIT_S", 8.0)
    node_side.publish_image(view, 9_000_000_000)

    async def talk(client: TestClient, port: int) -> tuple[float, int, str]:
        start = time.monotonic()
        later = threading.Timer(0.3, node_side.publish_image, (view, 9_100_000_000))
        later.start()
        response = await client.get("/api/frame?after=0")
        later.join()
        return time.monotonic() - start, response.status, response.headers.get("X-Frame-Stamp", "")

    waited, status, stamp = served(view, talk)
    assert (status, stamp) == (200, "9100000000")
    assert 0.3 <= waited < 4.0, "answered when the frame came, not at the end of the wait"


def test_debug_images_that_cannot_be_shown_are_skipped_and_counted(view, node_side, capfd, monkeypatch):
    monkeypatch.setattr(web, "WARNING_INTERVAL_S", 0.0)  # each skip warned about, not only the first
    broken = array_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8", HEADER)
    broken.data = broken.data[:-1]
    too_wide = array_to_image(np.zeros((1, 65_501, 3), np.uint8), "bgr8", HEADER)
    capfd.readouterr()
    node_side.publish_image(view, 0, too_wide)
    node_side.publish_image(view, 0, broken)
    assert view.frame is None and view.skipped_images == 2
    # The view's one thread takes this frame only once it has printed both warnings, so the output
    # is read once, after it: reading while a warning is written could lose it.
    node_side.publish_image(view, 10_000_000_000)
    assert (view.frame.seq, view.frame.stamp_ns, view.skipped_images) == (0, 10_000_000_000, 2)
    assert capfd.readouterr().err == (
        "fastsam_web: debug image not encodable as JPEG skipped (1 so far): 65501x1, over 65500 pixels a side\n"
        "fastsam_web: undecodable debug image skipped (2 so far): data has 47 bytes, expected step x height = 48\n"
    )


def _mask_of(data_url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return cv2.imdecode(np.frombuffer(base64.b64decode(data_url[len(prefix) :]), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize(
    ("kind", "body", "request_msg"),
    [
        ("point", {"points": [[400, 500]], "labels": [1]}, PointPrompt.Request(points=[Point(x=400.0, y=500.0)])),
        ("box", {"box": [40, 220, 790, 770]}, BoxPrompt.Request(boxes=[BoundingBox(x1=40, y1=220, x2=790, y2=770)])),
        ("text", {"text": "  bus "}, TextPrompt.Request(texts=["bus"], top_k=1)),
    ],
)  # fmt: skip
def test_a_prompt_answers_with_the_services_selection_and_its_mask(view, node_side, kind, body, request_msg):
    node_side.publish_image(view, 11_000_000_000)
    if kind == "point":
        request_msg.labels = [1]
    expected = node_side.expected(kind, request_msg)
    assert expected.success and BUS in [i.id for i in expected.instances], expected.message

    async def talk(client: TestClient, port: int) -> tuple[int, dict]:
        return await _json(await client.post(f"/api/prompt/{kind}", json=body))

    status, answer = served(view, talk)
    assert status == 200
    assert (answer["success"], answer["message"]) == (True, expected.message)
    assert answer["stamp"] == stamp_to_ns(HEADER.stamp), "the stamp of the frame answered about"
    assert [i["id"] for i in answer["instances"]] == [i.id for i in expected.instances]
    assert answer["instances"][0] == web.instance_summary(expected.instances[0])
    masks = node_side.frame.masks
    union = np.zeros((masks.height, masks.width), bool)
    for instance in expected.instances:
        union |= msg_to_instance(instance).full_mask(masks.height, masks.width)
    overlay = _mask_of(answer["mask"])
    assert overlay.shape == (masks.height, masks.width, 4)
    assert np.array_equal(overlay[..., 3] > 0, union)
    assert (overlay[union] == web.MASK_COLOUR_BGRA).all()
    assert answer["mask_pixels"] == int(union.sum())


def test_an_unsuccessful_prompt_has_no_instances_and_no_mask(view, node_side):
    node_side.publish_image(view, 12_000_000_000)
    expected = node_side.expected("point", PointPrompt.Request(points=[Point(x=9000.0, y=10.0)], labels=[1]))
    assert not expected.success

    async def talk(client: TestClient, port: int) -> tuple[int, dict]:
        return await _json(await client.post("/api/prompt/point", json={"points": [[9000, 10]], "labels": [1]}))

    assert served(view, talk) == (
        200,
        {
            "success": False,
            "message": expected.message,
            "stamp": stamp_to_ns(HEADER.stamp),
            "instances": [],
            "mask": None,
            "mask_pixels": 0,
        },
    )


def test_prompt_refusals_say_what_is_wrong(view, node_side):
    async def talk(client: TestClient, port: int) -> list[tuple[int, str]]:
        answers = [await client.post("/api/prompt/point", json={"points": [[1, 1]], "labels": [1]})]
        answers.append(await client.post("/api/prompt/lasso", json={}))
        answers.append(await client.post("/api/prompt/point", data=b"{}", headers={"Content-Type": "text/plain"}))
        big = b'{"text": "bus"' + b" " * (web.MAX_BODY_BYTES - 14) + b"}"  # one byte over
        answers.append(await client.post("/api/prompt/text", data=big, headers={"Content-Type": "application/json"}))
        answers.append(await client.post("/api/prompt/box", json={"box": [3, 3, 1, 1]}))
        return [(a.status, (await a.json())["message"]) for a in answers]

    assert served(view, talk) == [
        (409, f"no camera frame yet: nothing to select on (waiting for /{NODE}/debug_image)"),
        (404, "unknown prompt 'lasso': use point, box or text"),
        (415, "a prompt's body must be JSON, sent as Content-Type: application/json"),
        (413, f"request body is larger than {web.MAX_BODY_BYTES} bytes"),
        (400, "box needs x1 < x2 and y1 < y2, got [3.0, 3.0, 1.0, 1.0]"),
    ]


def test_a_body_at_the_size_limit_is_read(view, node_side):
    node_side.publish_image(view, 13_000_000_000)
    head, tail = b'{"text": "bus"', b"}"
    body = head + b" " * (web.MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(body) == web.MAX_BODY_BYTES

    async def talk(client: TestClient, port: int) -> int:
        return (await client.post("/api/prompt/text", data=body, headers={"Content-Type": "application/json"})).status

    assert served(view, talk) == 200


def test_a_new_view_takes_frames_before_a_server_listens_and_leaves_the_graph_when_closed(node_side, capfd):
    heard_by = node_side.images.get_subscription_count()
    fresh = web.LiveView(NODE, "", 80)
    fresh.start()
    try:
        # The module's own view may already listen: wait for this one's subscription to match.
        wait_until(
            lambda: node_side.images.get_subscription_count() > heard_by,
            10.0,
            lambda: time.sleep(0.02),
            "the new view's subscription",
        )
        assert (fresh.frame, fresh.latest, fresh.skipped_images) == (None, None, 0), "a new view has nothing"
        assert all(c.qos_profile == SERVICE_QOS for c in fresh.clients.values()), "ros/qos.py: no answer pushed out"
        capfd.readouterr()
        node_side.publish_image(fresh, 17_000_000_000)
    finally:
        fresh.close()
    assert fresh.frame.stamp_ns == 17_000_000_000
    assert "dropped" not in capfd.readouterr().err
    assert not fresh.context.ok(), "the view's own ROS context is shut down"


def test_a_body_that_does_not_arrive_in_time_is_refused(view, monkeypatch):
    monkeypatch.setattr(web, "BODY_WAIT_S", 1.0)

    async def talk(client: TestClient, port: int) -> tuple[bytes, dict]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST /api/prompt/text HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: 100\r\n\r\n{{".encode())
        await writer.drain()
        status, *fields = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)).split(b"\r\n")
        length = next(int(f.split(b":")[1]) for f in fields if f.lower().startswith(b"content-length:"))
        body = json.loads(await reader.readexactly(length))
        writer.close()
        return status, body

    assert served(view, talk) == (
        b"HTTP/1.1 408 Request Timeout",
        {"success": False, "message": "request body did not arrive within 1 s"},
    )


def test_a_failing_callback_is_reported_and_the_view_goes_on(view, node_side, capfd):
    def fail() -> None:
        raise RuntimeError("the page's frame event failed")

    capfd.readouterr()
    view.on_frame = fail
    try:
        node_side.publish_image(view, 15_000_000_000)
        # The view's one thread takes this frame only once it has printed the first warning, so the
        # output is read once, after it: reading while it is written could lose it.
        node_side.publish_image(view, 16_000_000_000)
    finally:
        view.on_frame = lambda: None
    assert view.frame.stamp_ns == 16_000_000_000, "the view goes on after a failing callback"
    warning = "fastsam_web: a message was dropped: RuntimeError: the page's frame event failed\n"
    assert capfd.readouterr().err == warning, "the second failure, within the warning's interval, is left out"
    assert view.callback_warning.left_out == 1


def test_a_node_that_does_not_answer_in_time_or_at_all_is_named(view, node_side, capfd):
    node_side.publish_image(view, 14_000_000_000)
    node_side.delay = 1.5
    answered = node_side.answered

    async def talk(client: TestClient, port: int) -> tuple[int, dict]:
        return await _json(await client.post("/api/prompt/point", json={"points": [[1, 1]], "labels": [1]}))

    start = time.monotonic()
    status, body = served(view, talk, service_timeout=1.0)
    assert (status, body["message"]) == (504, "the node did not answer the point prompt within 1 s")
    assert time.monotonic() - start < 1.5 + 1.0
    wait_until(lambda: node_side.answered > answered, 5.0, lambda: time.sleep(0.02), "the late answer")
    time.sleep(0.5)
    assert "dropped" not in capfd.readouterr().err, "an answer after its server's loop closed is let go quietly"
    node_side.delay = 0.0
    elsewhere = web.LiveView(f"{NODE}_absent", "", 80)
    elsewhere.start()
    try:
        elsewhere.frame = web.Frame(0, b"", 4, 4, 0)
        status, body = served(elsewhere, talk)
        assert (status, body["message"]) == (
            503,
            f"service /{NODE}_absent/prompt_point is not available: is the fastsam node running?",
        )
    finally:
        elsewhere.close()


# The server around the app: serve(), its connection guard and its stop.


STOPS: list[web.StopRequest] = []
"""The StopRequests of the running test, newest last."""


class RecordedStopRequest(web.StopRequest):
    def __init__(self) -> None:
        super().__init__()
        STOPS.append(self)


def _signal(number: int) -> None:
    """What the kernel does for a stop signal: call the handler the web tool installed. Real signals
    are sent to the web tool's process in test_web_hostile.py; sent to this process, a SIGINT crashed
    it (SIGSEGV) when a mutation run had forked it after the earlier test files' rclpy contexts."""
    STOPS[-1]._on_signal(number, None)


@pytest.fixture
def stop_requests(monkeypatch) -> Iterator[list[web.StopRequest]]:
    """StopRequest installs its handlers in this process: pytest's are put back after the test."""
    monkeypatch.setattr(web, "StopRequest", RecordedStopRequest)
    STOPS.clear()
    with signal_handlers_kept(web.STOP_SIGNALS):
        yield STOPS


def serving(view: web.LiveView, talk: Callable[[int], Awaitable[Any]], port: int | None = None) -> tuple[int, Any]:
    """web.serve on loopback until talk(port) has run and SIGTERM came: its exit code and talk's result."""

    async def run() -> tuple[int, Any]:
        listen_on = port or free_port()
        app = web.WebApp(view, 10.0, web.Served.of("127.0.0.1", listen_on))
        server = asyncio.create_task(web.serve(app, "127.0.0.1", listen_on, stop))
        while not server.done():
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", listen_on)
                writer.close()
                break
            await asyncio.sleep(0.02)
        result = None if server.done() else await talk(listen_on)
        _signal(signal.SIGTERM)
        return await asyncio.wait_for(server, 10.0), result

    stop = web.StopRequest()
    return asyncio.run(run())


async def _request(port: int, path: str = "/api/instances") -> bytes:
    """The status line of one complete request on a new connection (path: the request target as sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    line = await asyncio.wait_for(reader.readline(), 10.0)
    writer.close()
    return line.strip()


async def _response(port: int, head: str) -> tuple[bytes, dict]:
    """The status line and JSON body of the answer to one request sent as `head`, read to its end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    answer = await asyncio.wait_for(reader.read(), 10.0)
    writer.close()
    status, _, body = answer.partition(b"\r\n\r\n")
    return status.split(b"\r\n")[0], json.loads(body)


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closed this connection within `within` seconds."""
    try:
        return await asyncio.wait_for(reader.read(100), within) == b""
    except (TimeoutError, ConnectionResetError):
        return False


@pytest.mark.parametrize("number", web.STOP_SIGNALS)
def test_the_server_answers_until_a_stop_signal_and_then_returns_0(view, capsys, number, stop_requests):
    async def talk(port: int) -> bytes:
        answered = await _request(port)
        _signal(number)
        return answered

    code, answered = serving(view, talk)
    assert (code, answered) == (0, b"HTTP/1.1 200 OK")
    out = capsys.readouterr().out
    assert "fastsam_web: open http://127.0.0.1:" in out and f"(camera image from /{NODE}/debug_image)" in out


def test_a_server_on_loopback_is_not_reached_on_another_address(view, stop_requests):
    """127.0.0.2 is this machine's loopback too: only a server bound to every address answers there."""

    async def talk(port: int) -> str:
        try:
            _, writer = await asyncio.open_connection("127.0.0.2", port)
        except ConnectionRefusedError:
            return "refused"
        writer.close()
        return "answered"

    assert serving(view, talk) == (0, "refused")


def test_the_server_starts_again_at_once_on_the_port_it_left(view, stop_requests):
    """The server closes each `Connection: close` exchange first, which leaves its side waiting
    (TIME_WAIT) on the port after it stopped: a restart must still listen there."""
    port = free_port()
    assert serving(view, _request, port=port) == (0, b"HTTP/1.1 200 OK")
    assert serving(view, _request, port=port) == (0, b"HTTP/1.1 200 OK")


def test_event_loop_errors_while_serving_are_one_throttled_line(view, capsys, stop_requests):
    async def talk(port: int) -> None:
        for _ in range(3):
            context = {"message": "accept failed", "exception": OSError(24, "Too many open files")}
            asyncio.get_running_loop().call_exception_handler(context)

    assert serving(view, talk) == (0, None)
    assert capsys.readouterr().err == "fastsam_web: accept failed: [Errno 24] Too many open files\n"


def test_an_address_in_use_is_one_line_and_exit_code_2(view, capsys, stop_requests):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _ = serving(view, lambda port: asyncio.sleep(0), port=port)
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fastsam_web: cannot listen on 127.0.0.1:{port}: [Errno 98]"), line


def test_a_frame_request_waiting_at_the_stop_ends_with_204_at_once(view, monkeypatch, stop_requests):
    monkeypatch.setattr(web, "FRAME_WAIT_S", 30.0)

    async def talk(port: int) -> tuple[bytes, float]:
        waiting = asyncio.create_task(_request(port, "/api/frame?after=5"))
        await asyncio.sleep(0.3)
        start = time.monotonic()
        _signal(signal.SIGINT)
        return await waiting, time.monotonic() - start

    code, (status, seconds) = serving(view, talk)
    assert (code, status) == (0, b"HTTP/1.1 204 No Content")
    assert seconds < web.STOP_WAIT_S


def test_over_the_connection_cap_the_oldest_silent_connection_makes_room(view, monkeypatch, capsys, stop_requests):
    monkeypatch.setattr(web, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(web, "WARNING_INTERVAL_S", 0.0)

    async def talk(port: int) -> tuple[list[bool], bytes]:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        answered = await _request(port)
        closed = [await _closed(reader, 0.5) for reader, _ in idle]
        for _, writer in idle:
            writer.close()
        return closed, answered

    _, (closed, answered) = serving(view, talk)
    assert answered == b"HTTP/1.1 200 OK"
    assert closed == [True, False, False], "the oldest idle connection, only it"
    assert "fastsam_web: 3 connections open: the oldest one without a request was closed" in capsys.readouterr().err


def test_over_the_cap_with_every_connection_heard_a_new_one_is_closed(view, monkeypatch, capsys, stop_requests):
    monkeypatch.setattr(web, "MAX_CONNECTIONS", 3)

    async def talk(port: int) -> tuple[bool, list[bytes]]:
        held = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /api/instances HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            held.append((reader, writer, await asyncio.wait_for(reader.readline(), 10.0)))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await _closed(reader, 2.0)
        writer.close()
        for _, held_writer, _ in held:
            held_writer.close()
        return refused, [line.strip() for _, _, line in held]

    _, (refused, answers) = serving(view, talk)
    assert answers == [b"HTTP/1.1 200 OK"] * 3 and refused
    assert capsys.readouterr().err == "fastsam_web: 3 connections busy: a new one was closed\n", "and nothing else"


@pytest.mark.parametrize(
    ("pieces", "answer"),
    [
        ((b"GET /api/instances HTTP/1.1\r\nHost: {host}\r\n",), b""),  # never ends its headers: closed
        ((b"GET /api/instances HTTP/1.1\r\nHost: {host}\r\n\r", b"\n"), b"HTTP/1.1 200 OK"),  # end split in two
        ((b"GET /api/instances HTTP/1.1\r\nHost: {host}\r", b"\n\r\n"), b"HTTP/1.1 200 OK"),
        ((b"GET /api/instances HTTP/1.1\nHost: {host}\n", b"\n"), b"HTTP/1.0 400 Bad Request"),  # bare line feeds
    ],
)
def test_a_connection_must_send_its_headers_in_time(view, monkeypatch, pieces, answer, stop_requests):
    """Complete headers however they are split are heard (aiohttp then answers them); others are closed."""
    monkeypatch.setattr(web, "HEADER_WAIT_S", 0.5)

    async def talk(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for piece in pieces:
            writer.write(piece.replace(b"{host}", f"127.0.0.1:{port}".encode()))
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.6)
        line = await asyncio.wait_for(reader.readline(), 5.0)
        writer.close()
        return line.strip()

    _, line = serving(view, talk)
    assert line == answer


def test_event_loop_errors_are_one_throttled_line(monkeypatch, capsys):
    warning = web.ThrottledWarning()
    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):
            web.report_loop_error(loop, {"message": "accept failed", "exception": OSError(24, "Too many")}, warning)
        monkeypatch.setattr(warning, "next_at", 0.0)
        web.report_loop_error(loop, {"message": "socket.accept() out of system resource"}, warning)
        web.report_loop_error(loop, {}, web.ThrottledWarning())
    finally:
        loop.close()
    assert capsys.readouterr().err.splitlines() == [
        "fastsam_web: accept failed: [Errno 24] Too many",
        "fastsam_web: socket.accept() out of system resource (2 more like it left out)",
        "fastsam_web: event loop error",
    ]


def _http(url: str, body: dict | None = None) -> tuple[int, bytes]:
    """Status and body of one request to the web tool (a prompt, from its own page, when body is
    given); status 0 when nothing answers."""
    origin = "/".join(url.split("/")[:3])
    headers = {"Content-Type": "application/json", "Origin": origin} if body is not None else {}
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=15.0) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def test_the_program_serves_its_camera_with_its_settings_until_a_stop_signal(
    node_side, bus, capsys, stop_requests, monkeypatch
):
    """The command line's camera, JPEG quality and service timeout reach the page's answers, from a
    node named fastsam_web whatever ROS arguments the process itself was started with."""
    monkeypatch.setattr(sys, "argv", ["fastsam_web", "--ros-args", "-r", "__node:=renamed"])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    camera_images = node_side.node.create_publisher(Image, web.private_name(NODE, "front", "debug_image"), 2)
    camera_instances = node_side.node.create_publisher(InstanceArray, web.private_name(NODE, "front", "instances"), 2)
    answered = threading.Event()

    def slow_answer(request: Any, response: Any) -> Any:
        time.sleep(2.0)
        answered.set()
        return response

    slow_service = node_side.node.create_service(
        PointPrompt, web.private_name(NODE, "front", "prompt_point"), slow_answer, qos_profile=SERVICE_QOS
    )
    answers: dict[str, tuple[int, bytes]] = {}
    deadline = time.monotonic() + 30.0

    def ask(name: str, publish: Callable[[], None], path: str, taken: Callable[[int, bytes], bool], body=None) -> None:
        """Publish and request until the answer is taken (the tool discovers topics and services late)."""
        while time.monotonic() < deadline:
            publish()
            if taken(*(answer := _http(url + path, body))):
                answers[name] = answer
                return
            time.sleep(0.05)

    def talk_then_stop() -> None:
        image, instances = array_to_image(bus, "bgr8", HEADER), _instance_array(node_side, 21_000_000_000, [BUS])
        ask("frame", lambda: camera_images.publish(image), "api/frame?after=-1", lambda status, _: status == 200)
        answers["nodes"] = (0, " ".join(node_side.node.get_node_names()).encode())
        ask(
            "instances",
            lambda: camera_instances.publish(instances),
            "api/instances",
            lambda status, body: json.loads(body)["stamp"] == 21_000_000_000,
        )
        point = {"points": [[1, 1]], "labels": [1]}
        ask("prompt", lambda: None, "api/prompt/point", lambda status, _: status != 503, point)
        _signal(signal.SIGTERM)

    talker = threading.Thread(target=talk_then_stop, daemon=True)
    talker.start()
    try:
        web.main(
            ["--port", str(port), "--node", NODE, "--camera", "front", "--jpeg-quality", "35", "--service-timeout", "1"]
        )
    finally:
        talker.join(35.0)
        node_side.node.destroy_publisher(camera_images)
        node_side.node.destroy_publisher(camera_instances)
        answered.wait(5.0)
        time.sleep(0.2)  # the executor sends the answer after the handler returns
        node_side.node.destroy_service(slow_service)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN, "a late signal cannot end the finished process"
    out = capsys.readouterr().out
    assert out == f"fastsam_web: open {url} (camera image from /{NODE}/front/debug_image)\n"
    assert answers["frame"] == (200, cv2.imencode(".jpg", bus, [cv2.IMWRITE_JPEG_QUALITY, 35])[1].tobytes())
    nodes = answers["nodes"][1].decode().split()
    assert "fastsam_web" in nodes and "renamed" not in nodes
    assert [i["id"] for i in json.loads(answers["instances"][1])["instances"]] == [BUS]
    status, body = answers["prompt"]
    assert (status, json.loads(body)["message"]) == (504, "the node did not answer the point prompt within 1 s")


def test_the_program_on_an_address_in_use_exits_with_code_2(node_side, capsys, stop_requests):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as ended:
            web.main(["--port", str(port), "--node", NODE])
    assert ended.value.code == 2
    assert capsys.readouterr().err.startswith(f"fastsam_web: cannot listen on 127.0.0.1:{port}: ")
