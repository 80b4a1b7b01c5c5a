"""The managed node driven through the standard lifecycle services, and /diagnostics."""

from __future__ import annotations

import time

import psutil
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

from fastsam_msgs.srv import TextPrompt
from fastsam_ros.ros.convert import stamp_to_ns

NODE_EXECUTABLE = "fastsam_lifecycle_node"


def _state(graph) -> int:
    return graph.call(GetState, "/fastsam/get_state", GetState.Request()).current_state.id


def _transition(graph, transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return graph.call(ChangeState, "/fastsam/change_state", request, timeout=180.0).success


def _frames_answered(graph, image, count: int = 5, wait: float = 3.0) -> int:
    stamps = {graph.send(image) for _ in range(count)}
    end = time.monotonic() + wait
    while time.monotonic() < end:
        graph.spin()
    return sum(stamp_to_ns(m.header.stamp) in stamps for m in graph.received["instances"])


def test_lifecycle_transitions(node_graph, bus):
    graph = node_graph
    diagnostics: list[DiagnosticArray] = []
    graph.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    assert _state(graph) == State.PRIMARY_STATE_UNCONFIGURED
    assert graph.camera.get_subscription_count() == 0

    assert _transition(graph, Transition.TRANSITION_CONFIGURE)
    assert _state(graph) == State.PRIMARY_STATE_INACTIVE
    assert graph.camera.get_subscription_count() == 0, "inactive: no camera subscription"

    assert _transition(graph, Transition.TRANSITION_ACTIVATE)
    assert _state(graph) == State.PRIMARY_STATE_ACTIVE
    graph.wait(lambda: graph.camera.get_subscription_count() > 0, 30.0, "camera subscription")
    _, result = graph.first_result(bus)
    assert "bus" in [i.class_name for i in result.instances]

    graph.wait(lambda: any(float(_values(d)["fps"]) > 0 for d in diagnostics), 15.0, "diagnostics with frames")
    status = diagnostics[-1].status[0]
    assert status.name == "fastsam: segmentation" and status.hardware_id == "cpu"
    assert {"fps", "latency p50 ms", "frames dropped", "device", "model"} <= set(_values(diagnostics[-1]))

    # The text backend loads in the background after configure; a text prompt waits for
    # it, so that its memory is not counted as growth while inactive.
    graph.call(TextPrompt, "/fastsam/prompt_text", TextPrompt.Request(texts=["bus"]), timeout=120.0)
    assert _transition(graph, Transition.TRANSITION_DEACTIVATE)
    graph.wait(lambda: graph.camera.get_subscription_count() == 0, 30.0, "camera unsubscribed")
    rss_before = psutil.Process(graph.process.pid).memory_info().rss
    assert _frames_answered(graph, bus, count=20) == 0, "inactive: no inference"
    rss_after = psutil.Process(graph.process.pid).memory_info().rss
    assert rss_after - rss_before < 5 * 2**20

    assert _transition(graph, Transition.TRANSITION_CLEANUP)
    assert _state(graph) == State.PRIMARY_STATE_UNCONFIGURED
    assert _set_conf(graph, 7.0) == (False, "conf: must be in [0.0, 1.0], got 7.0")
    assert _set_conf(graph, 0.3)[0], "valid values are kept for the next configure"

    assert _transition(graph, Transition.TRANSITION_CONFIGURE)
    assert _transition(graph, Transition.TRANSITION_ACTIVATE)
    graph.wait(lambda: graph.camera.get_subscription_count() > 0, 30.0, "camera subscription again")
    _, again = graph.first_result(bus)
    assert len(again.instances) == len(result.instances)


def _values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in array.status[0].values}


def _set_conf(graph, value: float) -> tuple[bool, str]:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    parameter = Parameter(name="conf", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    result = graph.call(SetParameters, "/fastsam/set_parameters", SetParameters.Request(parameters=[parameter]))
    return result.results[0].successful, result.results[0].reason
