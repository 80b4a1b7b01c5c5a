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

from fastsam_msgs.msg import InstanceArray
from fastsam_ros.tools.command_line import one_line
from fastsam_ros.tools.node_client import NodeClient, isolated_ros_env, start_node, stop_node
from fastsam_ros.tools.sample_frames import demo_sequence

CAMERA_TOPIC = "/demo/camera/image_raw"


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
    client = NodeClient(CAMERA_TOPIC, name="fastsam_demo")
    client.process = process
    failures = 0
    try:
        print("[demo] waiting for the node to load its model and subscribe ...", flush=True)
        client.wait(lambda: client.camera.get_subscription_count() > 0, timeout, "fastsam_node to subscribe")
        client.warm_up()
        frames = demo_sequence()
        print(f"[demo] publishing {len(frames)} frames on {CAMERA_TOPIC}\n")
        print(f"{'frame':>5}  {'source':<11} {'size':>9}  {'inst':>4}  {'node ms':>7}  {'e2e ms':>7}  top instances")
        processing, end_to_end = [], []
        for index, (source, frame) in enumerate(frames):
            sent = time.perf_counter()
            stamp = client.send(frame)
            try:
                msg = client.result_for(stamp, timeout=60.0)
                debug = client.result_for(stamp, "debug_image", timeout=10.0)
            except TimeoutError:
                failures += 1
                print(f"{index:>5}  {source:<11} no result within 60 s")
                continue
            processing.append(msg.processing_ms)
            end_to_end.append((client.arrival[stamp] - sent) * 1e3)
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
        client.close()
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
        print(one_line(f"[demo] error: {error}"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
