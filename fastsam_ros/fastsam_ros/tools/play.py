"""fastsam_play: the user's own video, image folder, V4L2 camera or bag into the node.

`fastsam_play video.mp4` starts fastsam_node as a child process listening on the play
topic, publishes the frames at the source's rate (or --rate), then stops the node;
`--no-node` drives a node that is already running. Every frame is stamped with the time
it is published and carries --frame-id.

The source is opened and checked before anything heavy is imported or started. Frames over
the node's max_pixels (its default, or --param max_pixels:=N) and frames that cannot be
decoded are skipped with a counted warning; a source with nothing to play is refused with
one line. The started node ends with this process, even when this one is killed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fastsam_ros.core.signal_flag import SignalFlag
from fastsam_ros.ros.process import PARENT_PID_VARIABLE, Shutdown
from fastsam_ros.tools.command_line import OneLineParser, integer_in, number_in, one_line
from fastsam_ros.tools.frame_sources import (
    FOLDER_RATE,
    BagSource,
    SourceError,
    SourceFrame,
    open_regular,
    open_source,
    reason,
)

DEFAULT_TOPIC = "/camera/image_raw"
MATCH_SETTLE_S = 0.5
"""A subscriber counted here has matched this publisher, but its own side may need a moment more
to match back; a best-effort frame sent before then is lost to it (on a busy host, often the first)."""
DELIVERY_GRACE_S = 0.5
"""How long this publisher stays after the last frame, whatever --linger says. A subscriber may
learn that the publisher left before it reads the publisher's last frame, and then drops that
frame: on a busy 2-core host, 4 of 56 runs that left at once lost their last frame (and only
that one), none of 40 that stayed 0.3 s."""
MAX_LATE_S = 1.0
"""A frame due longer ago than this (the player was stopped, or the host stalled) moves the schedule
on: the frames after it keep their pace instead of coming in a burst."""
MAX_SECONDS = 86400.0
"""The longest --wait or --linger: a day; much longer overflows the wait itself."""
RATE_RANGE = (1e-3, 1e3)
"""--rate in frames per second: one frame in 1000 s at the slowest; a slower rate overflowed the wait."""
ROOT = Path(__file__).resolve().parents[2]


def paced(frames: Iterator[SourceFrame], rate: float | None, stop: SignalFlag) -> Iterator[SourceFrame]:
    """Frames released at their due times: every 1/rate s, else at the source's own offsets,
    until stop is set.

    Due times are kept on one schedule from the first frame, so a late frame does not
    shift the ones after it, unless it is over MAX_LATE_S late. Frames with neither (a live
    camera) go as they come.
    """
    start = None
    for index, frame in enumerate(frames):
        now = time.monotonic()
        start = now if start is None else start
        due = index / rate if rate is not None else None if frame.offset_ns is None else frame.offset_ns / 1e9
        if due is not None and start + due < now - MAX_LATE_S:
            start = now - due
        if stop.wait(max(0.0, start + due - now) if due is not None else 0.0):
            return
        yield frame


def passes(source, loop: bool) -> Iterator[SourceFrame]:
    """The source's frames once, or over and over, with offsets running on across passes.

    The next pass starts one mean frame interval after the last frame of the previous one, or
    one folder frame interval when the pass has no time span (one message, or one log time for all).
    """
    base = 0
    while True:
        first = last = None
        count = 0
        for frame in source.frames():
            count += 1
            if frame.offset_ns is None:
                yield frame
                continue
            first = frame.offset_ns if first is None else first
            last = frame.offset_ns
            yield SourceFrame(frame.image, base + frame.offset_ns)
        if not loop or count == 0:
            return
        if last is not None:
            base += last + ((last - first) // max(count - 1, 1) or round(1e9 / FOLDER_RATE))


def use_large_frame_profile() -> None:
    """The large-frame Fast DDS profile of the source tree, when none is set, for this process and the node.

    Must run before the first DDS participant is created.
    """
    profile = ROOT / "config" / "fastdds_large_frames.xml"
    if profile.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))


class Player:
    """A publisher of frames on one topic, in its own rclpy context."""

    def __init__(self, topic: str, frame_id: str) -> None:
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        self.context.init(args=[])
        self.node = rclpy.create_node("fastsam_play", context=self.context)
        self.publisher = self.node.create_publisher(Image, topic, qos_profile_sensor_data)
        self.frame_id = frame_id

    def wait_for_subscribers(self, count: int, timeout: float, stop: SignalFlag, process=None) -> bool:
        deadline = time.monotonic() + timeout
        while self.publisher.get_subscription_count() < count:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"fastsam_node exited with code {process.returncode} before subscribing")
            if time.monotonic() > deadline or stop.wait(0.1):
                return False
        stop.wait(MATCH_SETTLE_S)
        return True

    def publish(self, image) -> int:
        """Publish one BGR frame stamped now; returns the stamp in nanoseconds."""
        from fastsam_ros.ros.convert import array_to_image, stamp_from_ns

        stamp = time.time_ns()
        msg = array_to_image(image, "bgr8")
        msg.header.stamp = stamp_from_ns(stamp)
        msg.header.frame_id = self.frame_id
        self.publisher.publish(msg)
        return stamp

    def close(self) -> None:
        from fastsam_ros.ros.graph_exit import leave_graph

        leave_graph(self.node, self.context)


def topic_name(text: str) -> str:
    """A valid ROS topic name: rclpy refuses any other only once the publisher is made, after the node started."""
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(text)
    except (InvalidTopicNameException, UnicodeError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a valid ROS topic name") from None
    return text


def utf8_text(text: str) -> str:
    """Text that a ROS string field can carry: a byte that is not UTF-8 would fail the first publish."""
    try:
        text.encode()
    except UnicodeError:
        raise argparse.ArgumentTypeError(f"{text.encode(errors='surrogateescape')!r} is not UTF-8 text") from None
    return text


def writable_log(text: str) -> str:
    """A file the node's output can go to, created now: a missing folder, a folder or a pipe (which would
    block the start until something reads it) fails here with one line instead."""
    try:
        os.close(open_regular(text, write=True))
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot write '{text}': {reason(error)}") from None
    return text


class ParameterError(ValueError):
    """A --param value this player must use itself, and cannot."""


def node_max_pixels(parameters: list[str]) -> int:
    """The pixel limit the node will apply: the last --param max_pixels:=N, else the parameter's default."""
    from fastsam_ros.core.parameters import SPECS

    spec = SPECS["max_pixels"]
    values = [value for name, _, value in (p.partition(":=") for p in parameters) if name.strip() == "max_pixels"]
    if not values:
        return spec.default
    try:
        value = int(values[-1])
    except ValueError:
        raise ParameterError(f"--param max_pixels: expected an integer, got '{values[-1]}'") from None
    problem = spec.problem(value)
    if problem is not None:
        raise ParameterError(f"--param {problem}")
    return value


def warn(message: str) -> None:
    """A warning on its own line, above the progress bar."""
    from tqdm import tqdm

    tqdm.write(one_line(f"fastsam_play: {message}"), file=sys.stderr)


class UnbreakableStream:
    """A text stream whose reader may be gone (a closed pipe or terminal): what is written then
    goes nowhere, instead of a BrokenPipeError ending playback."""

    def __init__(self, stream) -> None:
        self.stream = stream if stream is not None else open(os.devnull, "w")  # noqa: SIM115 - for the process

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except (OSError, ValueError):
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - for the process
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - for the process

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def command_line() -> OneLineParser:
    """fastsam_play's options (docs/USAGE.md lists them from here)."""
    parser = OneLineParser(prog="fastsam_play", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="video file, image folder, /dev/videoN, rosbag2 folder or .mcap file")
    parser.add_argument(
        "--rate",
        type=number_in(*RATE_RANGE, low_allowed=True),
        help=f"frames per second (default: the source's; {FOLDER_RATE} for folders)",
    )
    parser.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    parser.add_argument(
        "--topic", type=topic_name, default=DEFAULT_TOPIC, help=f"camera topic (default {DEFAULT_TOPIC})"
    )
    parser.add_argument("--frame-id", type=utf8_text, default="camera", help="header.frame_id of every frame")
    parser.add_argument("--bag-topic", help="image topic to play from a bag (needed when it has several)")
    parser.add_argument("--limit", type=integer_in(1), help="stop after this many frames")
    parser.add_argument("--no-node", action="store_true", help="drive a running node instead of starting one")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="node parameter; max_pixels:=N also sets the frames this player skips (with --no-node too)",
    )
    parser.add_argument(
        "--node-log", type=writable_log, help="file for the started node's output (default: this terminal)"
    )
    parser.add_argument(
        "--wait",
        type=number_in(0.0, MAX_SECONDS, low_allowed=False),
        default=180.0,
        help="seconds to wait for the node to subscribe",
    )
    parser.add_argument(
        "--subscribers",
        type=integer_in(0),
        default=1,
        help="subscribers to wait for before the first frame",
    )
    parser.add_argument(
        "--linger",
        type=number_in(0.0, MAX_SECONDS, low_allowed=True),
        default=2.0,
        help=f"seconds to leave the node after the last frame (at least {DELIVERY_GRACE_S})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def play(args: argparse.Namespace, stop: SignalFlag) -> int:
    """Publish the source until it ends or stop is set; the number of frames published.

    SourceError when not one frame of the source could be played.
    """
    source = open_source(args.source, args.bag_topic, lambda: node_max_pixels(args.param), warn)
    if args.bag_topic is not None and not isinstance(source, BagSource):
        raise ParameterError(f"--bag-topic applies to bags only; '{args.source}' is not a bag")
    if stop.is_set():  # Ctrl-C while the source was checked: start nothing
        return 0
    from tqdm import tqdm

    from fastsam_ros.tools.node_client import start_node, stop_node

    use_large_frame_profile()
    player = Player(args.topic, args.frame_id)
    process = None
    published = 0
    try:
        if not args.no_node:
            ros_args = ["-r", f"image:={args.topic}"]
            for parameter in args.param:
                ros_args += ["-p", parameter]
            # The node's process entry asks the kernel to end it when this process ends.
            process = start_node(ros_args, {**os.environ, PARENT_PID_VARIABLE: str(os.getpid())}, args.node_log)
        if not player.wait_for_subscribers(args.subscribers, args.wait, stop, process) and not stop.is_set():
            print(f"fastsam_play: too few subscribers on {args.topic}; publishing anyway", file=sys.stderr)
        total = min(filter(None, (None if args.loop else source.length, args.limit)), default=None)
        with tqdm(total=total, unit="frame", disable=args.quiet) as bar:
            for frame in paced(passes(source, args.loop), args.rate or source.default_rate, stop):
                player.publish(frame.image)
                published += 1
                bar.update()
                if published == args.limit:
                    break
        stop.wait(max(args.linger, DELIVERY_GRACE_S))
    finally:
        player.close()
        if process is not None:
            stop_node(process)
    if source.skipped:
        if not published and not stop.is_set():
            raise SourceError(f"no frame of '{args.source}' could be played ({source.skipped} skipped)")
        print(f"fastsam_play: {published} frames published, {source.skipped} skipped", file=sys.stderr)
    return published


def main(argv: list[str] | None = None) -> None:
    # Ctrl-C and `kill` only set an event that playback waits on, as in the node's own process:
    # raised from the handler, the interrupt could land inside rclpy and leave it unable to shut down.
    shutdown = Shutdown()
    shutdown.install()
    sys.stderr = UnbreakableStream(sys.stderr)
    args = command_line().parse_args(argv)
    try:
        play(args, shutdown.requested)
    except (SourceError, RuntimeError) as error:
        sys.exit(one_line(f"fastsam_play: {error}"))
    except ParameterError as error:
        print(one_line(f"fastsam_play: error: {error}"), file=sys.stderr)
        sys.exit(2)
