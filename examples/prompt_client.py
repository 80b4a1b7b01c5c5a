"""Ask the running fastsam node for instances by point, box or text.

python examples/prompt_client.py point 400 500          # foreground point x y
python examples/prompt_client.py box 50 400 250 900     # x1 y1 x2 y2
python examples/prompt_client.py text "a bus" people    # one or more texts
"""

import sys

import rclpy
from geometry_msgs.msg import Point

from fastsam_msgs.msg import BoundingBox
from fastsam_msgs.srv import BoxPrompt, PointPrompt, TextPrompt
from fastsam_ros.ros.qos import SERVICE_QOS


def build_request(kind: str, args: list[str]):
    if kind == "point":
        x, y = (float(v) for v in args)
        return PointPrompt, PointPrompt.Request(points=[Point(x=x, y=y)], labels=[1])
    if kind == "box":
        x1, y1, x2, y2 = (float(v) for v in args)
        return BoxPrompt, BoxPrompt.Request(boxes=[BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)])
    return TextPrompt, TextPrompt.Request(texts=args, top_k=1)


def main() -> int:
    kind, args = sys.argv[1], sys.argv[2:]
    service_type, request = build_request(kind, args)
    rclpy.init()
    node = rclpy.create_node("fastsam_prompt_client")
    # A deeper response history than ROS's default of 10: see fastsam_ros/ros/qos.py.
    client = node.create_client(service_type, f"/fastsam/prompt_{kind}", qos_profile=SERVICE_QOS)
    if not client.wait_for_service(timeout_sec=30.0):
        print(f"/fastsam/prompt_{kind} is not available: is fastsam_node running?")
        return 1
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
    response = future.result()
    stamp = response.header.stamp
    print(f"success={response.success} frame={stamp.sec}.{stamp.nanosec:09d}: {response.message}")
    for instance in response.instances:
        box = instance.box
        print(
            f"  id {instance.id} {instance.class_name} score {instance.score:.2f} "
            f"box ({box.x1:.0f}, {box.y1:.0f}, {box.x2:.0f}, {box.y2:.0f}) area {instance.area} px"
        )
    node.destroy_node()
    rclpy.shutdown()
    return 0 if response.success else 1


if __name__ == "__main__":
    sys.exit(main())
