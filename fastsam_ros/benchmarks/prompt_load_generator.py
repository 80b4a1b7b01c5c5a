"""A prompt-calling client process for soak and concurrency runs.

Calls one prompt service (point at (x, y), box from the origin to (2x, 2y), or the text
"person") at a fixed rate for a while and writes one JSON line per answer:
the frame it names, success, and the instances chosen (id and box), so the caller
can check each answer against the InstanceArray of that frame. The output file is
created only once the first answer has arrived, so its existence means "calling".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import rclpy
from geometry_msgs.msg import Point

from fastsam_msgs.msg import BoundingBox
from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt
from fastsam_ros.ros.convert import stamp_to_ns
from fastsam_ros.ros.graph_exit import leave_graph
from fastsam_ros.ros.qos import SERVICE_QOS
from fastsam_ros.tools.node_client import first_answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--x", type=float, required=True)
    parser.add_argument("--y", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop-file", default="", help="stop early once this file exists")
    parser.add_argument("--kind", choices=("point", "box", "text"), default="point", help="which service to call")
    args = parser.parse_args(argv)
    rclpy.init()
    node = rclpy.create_node("fastsam_prompt_load")
    service_type, request = _request(args.kind, args.x, args.y)
    client = node.create_client(service_type, f"/fastsam/prompt_{args.kind}", qos_profile=SERVICE_QOS)
    if not client.wait_for_service(timeout_sec=60.0):
        print("prompt service not available", file=sys.stderr)
        return 1
    if not first_answer(client, request, lambda f, t: rclpy.spin_until_future_complete(node, f, timeout_sec=t), 60.0):
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
            # Calls missed while this process was stalled are dropped, not made up in a burst: a
            # burst of hundreds of answers would push a paused client's own response out of its
            # history (docs/RELIABILITY.md), which is not the load a run asks for.
            next_call = max(next_call + 1 / args.rate, time.monotonic())
            time.sleep(max(0.0, next_call - time.monotonic()))
        out.write(json.dumps({"unanswered": unanswered}) + "\n")
    leave_graph(node)
    return 0


def _request(kind: str, x: float, y: float) -> tuple[type, Any]:
    if kind == "point":
        return PointPrompt, PointPrompt.Request(points=[Point(x=x, y=y)], labels=[1])
    if kind == "box":
        return BoxPrompt, BoxPrompt.Request(boxes=[BoundingBox(x1=0.0, y1=0.0, x2=2 * x, y2=2 * y)])
    return TextPrompt, TextPrompt.Request(texts=["person"], top_k=1)


if __name__ == "__main__":
    sys.exit(main())
