"""The browser view, end to end: Debian's headless Chromium, fastsam_web, and a node that
fastsam_play starts itself, looping the real bus.jpg photo.

The page's selection is compared with what the prompt service answers this process for
the same prompt, pixel for pixel. The page's screenshot goes to the file that
FASTSAM_ROS_SCREENSHOT names (`make test-own-data` refreshes docs/web_view.jpg), else
to the test's temporary folder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point
from ultralytics.utils import ASSETS

from fastsam_msgs.msg import BoundingBox
from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt
from fastsam_ros.ros.convert import msg_to_instance
from fastsam_ros.tools.node_client import NodeClient, installed_command
from fastsam_ros.tools.sample_frames import asset_image
from test_support.node_driver import free_port

CAMERA = "/web/camera/image_raw"
BUS_POINT = (400, 500)  # on the bus's side, between the people in front of it
BROWSER_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1250",
)  # fmt: skip
# Debian's chromium and chromium-driver, unpacked there by make setup (no root needed).
CHROMIUM = Path(sys.prefix) / "opt" / "chromium" / "usr" / "lib" / "chromium"


def http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """fastsam_web on a free port of 127.0.0.1, before any node or camera exists."""
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    process = subprocess.Popen(
        [installed_command("fastsam_web"), "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            http(url + "/")
            break
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "fastsam_web did not start"
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGINT)
    assert process.wait(15) == 0, log.read_text()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM / "chromium").is_file():
        pytest.skip(f"no Chromium in {CHROMIUM}: make setup unpacks Debian's there, and says why when it cannot")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM / "chromium")
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    driver = webdriver.Chrome(service=Service(str(CHROMIUM / "chromedriver")), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def test_server_serves_only_its_page_and_refuses_bad_requests(server):
    status, page = http(server + "/")
    assert status == 200 and b"click to segment" in page
    for path in ("/app.js", "/style.css"):
        assert http(server + path)[0] == 200
    for path in ("/../setup.py", "/%2e%2e/setup.py", "/app.js/../../setup.py", "/web_static/app.js", "/web.py",
                 "/static/..%2f..%2fsetup.py", "/..%2fweb.py", "/etc/passwd"):  # fmt: skip
        status, body = http(server + path)
        assert status == 404 and b"import" not in body and b"root:" not in body, path

    def post(kind: str, body: bytes) -> tuple[int, str]:
        status, answer = http(f"{server}/api/prompt/{kind}", body)
        return status, json.loads(answer)["message"]

    assert post("point", b"{not json") == (400, "request body is not valid JSON")
    assert post("point", b'{"points": [[1, 2]]}')[0] == 400
    assert post("point", b'{"points": [[1, "a"]], "labels": [1]}') == (
        400,
        "point 0 y must be a finite number, got 'a'",
    )
    assert post("box", b'{"box": [50, 10, 20, 30]}')[0] == 400
    assert post("text", b'{"text": "  "}')[0] == 400
    assert post("lasso", b"{}")[0] == 404
    status, message = post("point", b'{"points": [[1, 2]], "labels": [1]}')
    assert status == 409 and message.startswith("no camera frame yet")


def page_mask(browser) -> np.ndarray:
    """The overlay the page shows, as a boolean mask at source resolution."""
    src = browser.find_element("id", "mask").get_attribute("src")
    png = base64.b64decode(src.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)[:, :, 3] > 0


def wait_for_answer(browser, previous: str | None = None) -> dict:
    """The page's message once a prompt has been answered (and changed from previous)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def answered(driver):
        element = driver.find_element("id", "message")
        text = element.text
        return {"text": text, "class": element.get_attribute("class")} if text and text != previous else False

    return WebDriverWait(browser, 60).until(answered)


def selected_ids(browser) -> list[int]:
    return [int(item.get_attribute("data-id")) for item in browser.find_elements("css selector", "#selection li")]


def union(instances, shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for msg in instances:
        msg_to_instance(msg).paste(mask)
    return mask


def test_click_drag_and_text_select_in_the_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    stage = browser.find_element("id", "stage")
    ActionChains(browser).move_to_element(stage).click().perform()
    before = wait_for_answer(browser)
    assert before["class"] == "error" and before["text"].startswith("no camera frame yet")

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(ASSETS / "bus.jpg", photos / "bus.jpg")
    player = subprocess.Popen(
        [installed_command("fastsam_play"), str(photos), "--loop", "--rate", "2", "--topic", CAMERA, "--quiet",
         "--param", "device:=cpu", "--node-log", str(tmp_path / "node.log")],
    )  # fmt: skip
    client = NodeClient(CAMERA, name="web_test_client", outputs=())
    try:
        frame = browser.find_element("id", "frame")
        WebDriverWait(browser, 180).until(lambda d: frame.get_attribute("data-seq"))
        first = int(frame.get_attribute("data-seq"))
        WebDriverWait(browser, 30).until(lambda d: int(frame.get_attribute("data-seq")) > first)
        WebDriverWait(browser, 30).until(lambda d: "bus" in d.find_element("id", "instances").text)

        # A client that asks late gets the latest frame, not the next one in a queue.
        with urllib.request.urlopen(server + "/api/frame?after=-1", timeout=30) as response:
            seen = int(response.headers["X-Frame-Seq"])
        time.sleep(2.0)  # about four frames at 2 Hz
        with urllib.request.urlopen(f"{server}/api/frame?after={seen}", timeout=30) as response:
            assert int(response.headers["X-Frame-Seq"]) >= seen + 2
            assert response.headers["Content-Type"] == "image/jpeg"
            assert cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR).shape == (1080, 810, 3)

        # A click on the bus: the page shows what the service answers for that point.
        width = browser.execute_script("return arguments[0].clientWidth", frame)
        height = browser.execute_script("return arguments[0].clientHeight", frame)
        bus = asset_image("bus.jpg")
        scale = width / bus.shape[1]
        x, y = BUS_POINT
        ActionChains(browser).move_to_element_with_offset(
            frame, round(x * scale - width / 2), round(y * scale - height / 2)
        ).click().perform()
        clicked = wait_for_answer(browser, before["text"])
        assert clicked["class"] == "ok", clicked["text"]
        WebDriverWait(browser, 10).until(lambda d: int(d.find_element("id", "mask").get_attribute("data-pixels")) > 0)
        shown_ids, shown_mask = selected_ids(browser), page_mask(browser)
        screenshot = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
        target = Path(os.environ.get("FASTSAM_ROS_SCREENSHOT") or tmp_path / "web_view.jpg")
        assert cv2.imwrite(str(target), screenshot, [cv2.IMWRITE_JPEG_QUALITY, 85])
        latency = float(browser.find_element("id", "latency").get_attribute("data-ms"))

        point = client.call(
            PointPrompt, "/fastsam/prompt_point", PointPrompt.Request(points=[_point(x, y)], labels=[1])
        )
        assert point.success and [i.class_name for i in point.instances] == ["bus"]
        assert shown_ids == [i.id for i in point.instances]
        assert np.array_equal(shown_mask, union(point.instances, bus.shape[:2]))
        assert shown_mask[y, x]

        # A drag draws a box around the bus's front half: the box prompt picks the bus.
        start, end = (60, 250), (450, 760)
        chain = ActionChains(browser).move_to_element_with_offset(
            frame, round(start[0] * scale - width / 2), round(start[1] * scale - height / 2)
        )
        chain.click_and_hold().move_by_offset(40, 40)
        chain.move_by_offset(round((end[0] - start[0]) * scale) - 40, round((end[1] - start[1]) * scale) - 40)
        chain.release().perform()
        boxed = wait_for_answer(browser, clicked["text"])
        assert boxed["class"] == "ok", boxed["text"]
        box_ids, box_mask = selected_ids(browser), page_mask(browser)
        request = BoxPrompt.Request(boxes=[BoundingBox(x1=60.0, y1=250.0, x2=450.0, y2=760.0)])
        answer = client.call(BoxPrompt, "/fastsam/prompt_box", request)
        assert answer.success and box_ids == [i.id for i in answer.instances]
        assert np.array_equal(box_mask, union(answer.instances, bus.shape[:2]))

        # A text selects by what the objects are. The service call goes first: the node's
        # first text prompt waits for its text model, longer than the page waits.
        answer = client.call(TextPrompt, "/fastsam/prompt_text", TextPrompt.Request(texts=["bus"], top_k=1), 180.0)
        assert answer.success and [i.class_name for i in answer.instances] == ["bus"]
        browser.find_element("id", "text").send_keys("bus", Keys.ENTER)
        texted = wait_for_answer(browser, boxed["text"])
        assert texted["class"] == "ok", texted["text"]
        assert selected_ids(browser) == [i.id for i in answer.instances]
        assert " bus " in browser.find_element("css selector", "#selection li").text
        print(f"\nweb: click to mask shown {latency:.0f} ms (page-measured, bus.jpg 810x1080, CPU node)")
    finally:
        client.close()
        player.send_signal(signal.SIGINT)
        code = player.wait(30)
    assert code == 0, (tmp_path / "node.log").read_text()


def _point(x: float, y: float) -> Point:
    return Point(x=float(x), y=float(y))
