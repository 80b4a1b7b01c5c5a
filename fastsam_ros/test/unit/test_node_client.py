"""The node client's own side, in this process: what it keeps of a node's outputs, how it stamps
the frames it sends, and what it says when an answer does not come.

A node of this process, in a context of its own, stands in for fastsam_node, so that each
test takes a second rather than a node's start-up; the client against a real node process is
tested in test/graph/test_demo.py and the other graph tests.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from fastsam_msgs.msg import InstanceArray
from fastsam_msgs.srv import Unfollow
from fastsam_ros.ros.convert import stamp_from_ns, stamp_to_ns
from fastsam_ros.ros.qos import SERVICE_QOS
from fastsam_ros.tools import node_client
from fastsam_ros.tools.node_client import NodeClient
from fastsam_ros.tools.play import MATCH_SETTLE_S
from test_support.own_context import NodeInOwnContext

NODE = f"client_test_{os.getpid()}"
"""The stand-in node's name: this process's own, so that parallel test processes never meet."""
CAMERA = f"/{NODE}/camera/image_raw"


class StandIn(NodeInOwnContext):
    """The node side: publishes two of the outputs, hears the camera, offers a service."""

    def __init__(self) -> None:
        super().__init__(NODE)
        self.instances = self.node.create_publisher(InstanceArray, f"/{NODE}/instances", 10)
        self.debug_image = self.node.create_publisher(Image, f"/{NODE}/debug_image", 10)
        self.frames: list[Image] = []
        self.node.create_subscription(Image, CAMERA, self.frames.append, qos_profile_sensor_data)
        self.calls: list[Unfollow.Request] = []
        self.node.create_service(Unfollow, f"/{NODE}/unfollow", self._unfollow, qos_profile=SERVICE_QOS)

    def _unfollow(self, request: Unfollow.Request, response: Unfollow.Response) -> Unfollow.Response:
        self.calls.append(request)
        response.success, response.ended = True, [request.selection_id]
        return response


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    side = StandIn()
    yield side
    side.close()


@pytest.fixture
def client() -> Iterator[NodeClient]:
    made = NodeClient(CAMERA, node_name=NODE)
    yield made
    made.close()


def _matched(client: NodeClient, stand_in: StandIn) -> None:
    """Until both sides of the outputs and the camera are matched, and a moment more for the way back."""
    stand_in.spin_in_thread()
    topics = [f"/{NODE}/instances", f"/{NODE}/debug_image"]
    client.wait(
        lambda: (
            all(client.node.count_publishers(topic) > 0 for topic in topics)
            and stand_in.instances.get_subscription_count() > 0
            and stand_in.debug_image.get_subscription_count() > 0
            and client.camera.get_subscription_count() > 0
        ),
        10.0,
        "the stand-in's outputs",
    )
    settled = time.monotonic() + MATCH_SETTLE_S
    client.wait(lambda: time.monotonic() > settled, 2.0, "the way back")


def test_the_client_is_named_and_keeps_the_last_ten_of_each_output(client):
    assert client.node.get_name() == "fastsam_client"
    topics = sorted(subscription.topic_name for subscription in client.node.subscriptions)
    assert topics == sorted(f"/{NODE}/{topic}" for topic in ("instances", "label_image", "debug_image", "selection"))
    assert {subscription.qos_profile.depth for subscription in client.node.subscriptions} == {10}


def test_only_instances_are_timed_and_each_output_is_kept_under_its_topic(client, stand_in):
    _matched(client, stand_in)
    debug = Image(height=1, width=1, encoding="bgr8", step=3, data=bytes(3))
    debug.header.stamp = stamp_from_ns(1_000_000_001)
    stand_in.debug_image.publish(debug)
    before = time.perf_counter()
    instances = InstanceArray()
    instances.header.stamp = stamp_from_ns(2_000_000_002)
    stand_in.instances.publish(instances)
    shown = client.result_for(1_000_000_001, "debug_image", timeout=10.0)
    found = client.result_for(2_000_000_002, timeout=10.0)
    assert (stamp_to_ns(shown.header.stamp), stamp_to_ns(found.header.stamp)) == (1_000_000_001, 2_000_000_002)
    assert list(client.arrival) == [2_000_000_002], "the end-to-end time is the instances' arrival"
    assert before <= client.arrival[2_000_000_002] <= time.perf_counter()
    assert {topic: len(kept) for topic, kept in client.received.items()} == {
        "instances": 1,
        "label_image": 0,
        "debug_image": 1,
        "selection": 0,
    }
    with pytest.raises(TimeoutError) as waited:
        client.result_for(1_000_000_001, timeout=1.0)
    assert str(waited.value) == "timed out after 1 s waiting for instances for frame 1000000001"


def test_a_frame_is_sent_stamped_with_the_time_it_returns(client, stand_in):
    _matched(client, stand_in)
    frame = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    before = time.time_ns()
    stamp = client.send(frame, "rgb8", frame_id="left_camera")
    assert before <= stamp <= time.time_ns()
    client.wait(lambda: len(stand_in.frames) == 1, 10.0, "the frame")
    [sent] = stand_in.frames
    assert (stamp_to_ns(sent.header.stamp), sent.header.frame_id, sent.encoding) == (stamp, "left_camera", "rgb8")
    np.testing.assert_array_equal(np.frombuffer(bytes(sent.data), np.uint8).reshape(4, 6, 3), frame)
    client.send(frame)
    client.wait(lambda: len(stand_in.frames) == 2, 10.0, "the second frame")
    assert (stand_in.frames[1].header.frame_id, stand_in.frames[1].encoding) == ("camera", "bgr8"), "the defaults"


def test_warm_up_sends_small_grey_frames_until_every_image_output_answered(client, stand_in):
    """The stand-in never publishes ~/label_image: the warm-up ends naming what it still awaited."""
    _matched(client, stand_in)
    with pytest.raises(TimeoutError) as waited:
        client.warm_up(timeout=2.0)
    assert str(waited.value) == "no output from the node on ['instances', 'label_image', 'debug_image']"
    assert stand_in.frames, "it sent frames while it waited"
    for frame in stand_in.frames:
        assert (frame.height, frame.width, frame.encoding, set(bytes(frame.data))) == (48, 64, "bgr8", {127})
        assert len(frame.data) == 48 * 64 * 3


def test_a_service_is_ready_only_once_it_answered_and_its_silence_is_named(client, stand_in):
    """A server that is never spun is seen in the graph and never answers: the wait for a first
    answer ends naming the service; once the server spins, the client is handed out and calls it."""
    name = f"/{NODE}/unfollow"
    with pytest.raises(TimeoutError) as waited:
        client.service_client(Unfollow, f"/{NODE}/nobody", timeout=1.0)
    assert str(waited.value) == f"timed out after 1 s waiting for service /{NODE}/nobody"
    with pytest.raises(TimeoutError) as waited:
        client.service_client(Unfollow, name, timeout=3.0, probe=Unfollow.Request(selection_id=0))
    assert str(waited.value) == f"timed out after 3 s waiting for a first answer from {name}"
    assert stand_in.calls == []
    stand_in.spin_in_thread()
    ready = client.service_client(Unfollow, name, timeout=10.0, probe=Unfollow.Request(selection_id=0))
    assert ready.service_name == name and len(stand_in.calls) >= 1
    clients = len(list(client.node.clients))
    response = client.call(Unfollow, name, Unfollow.Request(selection_id=7), timeout=10.0)
    assert (response.success, list(response.ended)) == (True, [7])
    assert len(list(client.node.clients)) == clients, "a call's own client is destroyed after it"


def test_the_installed_command_is_the_one_beside_this_interpreter():
    """Tests run what set-up installed in this environment, not another on the PATH."""
    assert node_client.installed_command("fastsam_node") == os.path.join(
        os.path.dirname(sys.executable), "fastsam_node"
    )
    assert node_client.installed_command("no_such_program") == "no_such_program", "left to the PATH"


def test_closing_the_client_shuts_its_own_context_down():
    closed = NodeClient(CAMERA, node_name=NODE, name="closed_client")
    closed.close()
    assert not closed.context.ok()
