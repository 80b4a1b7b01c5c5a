"""fastsam_export: prepare the CPU runtimes' cached networks ahead of the first start.

int8 is calibrated on real photos and video frames (tools/int8_frames) and checked by the
quality guard on other frames of them; `runtime: auto` uses int8 only when that check passed.
The other precisions only export and compile.
"""

from __future__ import annotations

import sys

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import load_model, resolve_weights
from fastsam_ros.core.int8_calibration import calibrate_int8
from fastsam_ros.core.parameters import SPECS
from fastsam_ros.tools.command_line import OneLineParser, integer_unless, one_line
from fastsam_ros.tools.int8_frames import calibration_frames, guard_frames

PRECISIONS = tuple(choice for choice in SPECS["precision"].choices if choice != "auto")


def command_line() -> OneLineParser:
    """fastsam_export's options (docs/USAGE.md lists them from here)."""
    parser = OneLineParser(prog="fastsam_export", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=SPECS["model"].default, help="weights path or model name, as the node's `model`"
    )
    parser.add_argument(
        "--precision",
        default="int8",
        choices=PRECISIONS,
        help="int8: calibrate, then run the quality guard (exit code 1 when it fails); f32, bf16: export and compile",
    )
    parser.add_argument(
        "--threads",
        type=integer_unless(SPECS["inference_threads"].problem),
        default=SPECS["inference_threads"].default,
        help="CPU threads for this run's compiling and checking (0: OpenVINO chooses), as `inference_threads` allows",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = command_line().parse_args(argv)
    try:
        weights = resolve_weights(args.model)
        if args.precision == "int8":
            report = calibrate_int8(weights, calibration_frames(), guard_frames(), threads=args.threads)
            return 0 if report.passed else 1
        loaded = load_model(weights, "cpu", runtime="openvino", precision=args.precision, threads=(args.threads,))
    except (ModelLoadError, FileNotFoundError) as error:  # FileNotFoundError: the sample videos are missing
        print(one_line(f"fastsam_export: error: {error}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the cache is written by renames: an interrupted run leaves nothing half-written
        print("fastsam_export: interrupted", file=sys.stderr)
        return 130
    print(f"compiled {weights} for OpenVINO {loaded.precision}: {loaded.choice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
