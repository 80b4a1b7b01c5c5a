"""`make demo`: the node segmenting a real image sequence, seen from another process.

Starts fastsam_node as its own process on a private ROS domain, publishes twelve
panned frames of the photos ultralytics ships, receives ~/instances and
~/debug_image over DDS, prints a per-frame table and writes the overlays as PNGs.
Each frame is sent once the previous result arrived, so none is dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from fastsam_ros.msg import InstanceArray
from fastsam_ros.ros_graph import (
    bgr_image_msg,
    isolated_ros_env,
    stamp_to_ns,
    start_node,
    stop_node,
    wait_until,
)
from fastsam_ros.sample_frames import demo_sequence

CAMERA_TOPIC = "/demo/camera/image_raw"


class DemoClient(Node):
    def __init__(self) -> None:
        super().__init__("fastsam_demo_client")
        self.camera = self.create_publisher(Image, CAMERA_TOPIC, 1)
        self.instances: dict[int, tuple[InstanceArray, float]] = {}
        self.debug: dict[int, Image] = {}
        self.create_subscription(InstanceArray, "/fastsam/instances", self._on_instances, 10)
        self.create_subscription(Image, "/fastsam/debug_image", self._on_debug, 10)

    def _on_instances(self, msg: InstanceArray) -> None:
        self.instances[stamp_to_ns(msg.header.stamp)] = (msg, time.perf_counter())

    def _on_debug(self, msg: Image) -> None:
        self.debug[stamp_to_ns(msg.header.stamp)] = msg


def summarise(msg: InstanceArray) -> str:
    ranked = sorted(msg.instances, key=lambda inst: inst.score, reverse=True)[:3]
    return ", ".join(f"{inst.class_name or 'object'} {inst.score:.2f}" for inst in ranked)


def run(output: Path, model: str, timeout: float) -> int:
    output.mkdir(parents=True, exist_ok=True)
    env = isolated_ros_env()
    os.environ.update(env)
    print(f"[demo] starting fastsam_node (model {model}); its log: {output / 'node.log'}", flush=True)
    process = start_node(
        ["-r", f"image:={CAMERA_TOPIC}", "-p", f"model:={model}"],
        env,
        str(output / "node.log"),
    )
    rclpy.init()
    client = DemoClient()
    failures = 0
    try:

        def spin() -> None:
            if process.poll() is not None:
                raise RuntimeError(f"fastsam_node exited with code {process.returncode}; see {output / 'node.log'}")
            rclpy.spin_once(client, timeout_sec=0.1)

        print("[demo] waiting for the node to load its model and subscribe ...", flush=True)
        wait_until(
            lambda: client.camera.get_subscription_count() > 0 and client.count_publishers("/fastsam/debug_image") > 0,
            timeout,
            spin,
            "fastsam_node to subscribe to the camera",
        )
        frames = demo_sequence()
        print(f"[demo] publishing {len(frames)} frames on {CAMERA_TOPIC}\n")
        print(f"{'frame':>5}  {'source':<11} {'size':>9}  {'inst':>4}  {'node ms':>7}  {'e2e ms':>7}  top instances")
        processing, end_to_end = [], []
        for index, (source, frame) in enumerate(frames):
            stamp = time.time_ns()
            sent = time.perf_counter()
            client.camera.publish(bgr_image_msg(frame, stamp))
            try:
                wait_until(lambda s=stamp: s in client.instances and s in client.debug, 60.0, spin, "results")
            except TimeoutError:
                failures += 1
                print(f"{index:>5}  {source:<11} no result within 60 s")
                continue
            msg, received = client.instances[stamp]
            processing.append(msg.processing_ms)
            end_to_end.append((received - sent) * 1e3)
            debug = client.debug[stamp]
            overlay = np.frombuffer(bytes(debug.data), np.uint8).reshape(debug.height, debug.width, 3)
            cv2.imwrite(str(output / f"frame_{index:02d}.png"), overlay)
            size = f"{msg.width}x{msg.height}"
            print(
                f"{index:>5}  {source:<11} {size:>9}  {len(msg.instances):>4}  {msg.processing_ms:>7.1f}  "
                f"{end_to_end[-1]:>7.1f}  {summarise(msg)}",
                flush=True,
            )
        if processing:
            print(
                f"\n[demo] {len(processing)}/{len(frames)} frames; median node processing "
                f"{np.median(processing):.1f} ms, median end-to-end {np.median(end_to_end):.1f} ms"
            )
        print(f"[demo] overlays written to {output.resolve()}/frame_*.png")
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        code = stop_node(process)
    if code != 0:
        print(f"[demo] fastsam_node exited with code {code}; see {output / 'node.log'}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for PNGs and the node log")
    parser.add_argument("--model", default="yolo11n-seg.pt", help="weights path or model name")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the node to start")
    args = parser.parse_args(argv)
    try:
        return run(args.output, args.model, args.timeout)
    except (RuntimeError, TimeoutError) as error:
        print(f"[demo] error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
