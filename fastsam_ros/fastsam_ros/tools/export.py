"""`fastsam_export`: prepare the CPU runtimes' cached networks ahead of the first start.

int8 is calibrated on real photos and video frames (tools/int8_frames) and checked by the
quality guard on other frames of them; `runtime: auto` uses int8 only when that check passed.
The other precisions only export and compile.
"""

from __future__ import annotations

import argparse
import sys

from fastsam_ros.core.backends.model_loading import load_model, resolve_weights
from fastsam_ros.core.int8_calibration import calibrate_int8
from fastsam_ros.tools.int8_frames import calibration_frames, guard_frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolo11n-seg.pt")
    parser.add_argument("--precision", default="int8", choices=("f32", "bf16", "int8"))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    weights = resolve_weights(args.model)
    if args.precision == "int8":
        report = calibrate_int8(weights, calibration_frames(), guard_frames(), threads=args.threads)
        return 0 if report.passed else 1
    loaded = load_model(weights, "cpu", runtime="openvino", precision=args.precision, threads=(args.threads,))
    print(f"compiled {weights} for OpenVINO {loaded.precision}: {loaded.choice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
