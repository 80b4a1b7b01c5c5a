"""A prompt-calling client process for soak and concurrency runs.

Calls ~/prompt_point at a fixed rate for a while and writes one JSON line per answer:
the frame it names, success, and the instances chosen (id and box), so the caller
can check each answer against the InstanceArray of that frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import rclpy
from geometry_msgs.msg import Point
from rclpy.client import Client
from rclpy.node import Node

from fastsam_ros.ros_convert import stamp_to_ns
from fastsam_ros.ros_qos import SERVICE_QOS
from fastsam_ros.srv import PointPrompt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--y", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop-file", default="", help="stop early once this file exists")
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("fastsam_prompt_load")
    client = node.create_client(PointPrompt, "/fastsam/prompt_point", qos_profile=SERVICE_QOS)
    if not client.wait_for_service(timeout_sec=60.0):
        print("prompt service not available", file=sys.stderr)
        return 1
    request = PointPrompt.Request(points=[Point(x=args.x, y=args.y)], labels=[1])
    if not _first_answer(node, client, request, timeout=60.0):
        print("prompt service never answered", file=sys.stderr)
        return 1
    unanswered = 0
    with open(args.out, "w") as out:
        start = next_call = time.monotonic()
        while time.monotonic() - start < args.duration and not (args.stop_file and os.path.exists(args.stop_file)):
            sent = time.monotonic()
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
            response = future.result()
            if response is None:
                unanswered += 1
                continue
            record = {
                "stamp": stamp_to_ns(response.header.stamp),
                "success": response.success,
                "message": response.message,
                "latency_ms": (time.monotonic() - sent) * 1e3,
                "instances": [[i.id, i.box.x1, i.box.y1, i.box.x2, i.box.y2] for i in response.instances],
            }
            out.write(json.dumps(record) + "\n")
            next_call += 1 / args.rate
            time.sleep(max(0.0, next_call - time.monotonic()))
        out.write(json.dumps({"unanswered": unanswered}) + "\n")
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _first_answer(node: Node, client: Client, request: PointPrompt.Request, timeout: float) -> bool:
    """Call until one answer arrives; only then is the connection fully matched.

    A service can look ready to a new client before the server has matched the
    client's response reader; a response sent in that window is lost. Calls made
    before the first answer are therefore retried, not counted.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=2.0)
        if future.done():
            return True
        client.remove_pending_request(future)
    return False


if __name__ == "__main__":
    sys.exit(main())
