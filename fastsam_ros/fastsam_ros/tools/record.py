"""fastsam_record: what a running node publishes, into one MCAP file with ROS 2 schemas.

Instances, selection, obstacles and /diagnostics are written as the serialized bytes
that arrive; the debug image is JPEG-compressed into sensor_msgs/CompressedImage on
'<debug topic>/compressed', a tenth of the raw size. Schemas are the ROS 2 message
definitions ('ros2msg', as rosbag2 writes them), so Foxglove and `ros2 bag play` read
the file. Optionally the debug images also go into an MP4.

An existing output (or a symlink) is never overwritten unless --force, and then only
replaced, atomically, once the new recording is complete. A second recorder on an output
that one is writing is refused (a lock beside it), and an output that another program
replaced during the recording is never reported as written. SIGINT, SIGTERM and SIGHUP,
however many and whenever they come, end the recording with both files closed and
readable; the chunk in progress is written out every second, so a SIGKILL loses at
most about a second of messages (the MCAP then lacks its summary, the MP4 is lost).
A refused command line or path ends with one line and exit code 2, a failed write
(full disk) with one line and exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fastsam_ros.ros.process import Shutdown
from fastsam_ros.tools.command_line import OneLineParser, integer_in, number_in, one_line

DIAGNOSTICS = "/diagnostics"
DEBUG_SUFFIX = "/compressed"
SPIN_SLICE_S = 0.1
"""Signals are acted on between spin slices: also the longest delay before the recorder stops."""
FLUSH_INTERVAL_S = 1.0
"""How often the chunk in progress goes to the file: what a SIGKILL or a crash can lose."""
MAX_VIDEO_FPS = 1000.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HIDDEN_PREFIX = ".fastsam_record-"
"""Names of this tool's hidden files and folders next to an output: short, so that any name
the folder takes for the output also leaves room for them."""
VIDEO_NAME = "video.mp4"


class RecordError(Exception):
    """An output cannot be created or written; its message is the one line the user sees."""


def output_topics(node: str, camera: str) -> dict[str, str]:
    """Topic of each recorded output of a node's camera ('' = the single unnamed camera)."""
    base = f"/{node}/{camera}/" if camera else f"/{node}/"
    return {name: base + name for name in ("instances", "selection", "obstacles", "debug_image")}


def message_definitions(typenames: list[str]) -> dict[str, str]:
    """Full ROS 2 message definitions (dependencies appended, as rosbag2 stores them) by type name.

    Standard types come from rosbags' Kilted type store; this package's own from the
    .msg files installed next to its generated modules.
    """
    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    share = Path(get_package_share_directory("fastsam_msgs")) / "msg"
    for file in sorted(share.glob("*.msg")):
        typestore.register(get_types_from_msg(file.read_text(), f"fastsam_msgs/msg/{file.stem}"))
    return {name: typestore.generate_msgdef(name, ros_version=2)[0] for name in typenames}


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


class OutputLock:
    """An exclusive lock on an output's name, held for the whole run: a second recorder on the
    same output (with --force it would replace the file the first one writes) is refused.

    The lock is a hidden file beside the output, named after it, locked with flock; the kernel
    drops the lock when its holder dies, so a killed recorder never blocks the next one.
    """

    def __init__(self, target: Path) -> None:
        digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]
        self.path = target.parent / f"{HIDDEN_PREFIX}{digest}.lock"
        while True:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise RecordError(f"cannot lock '{target}' ({self.path.name}): {_reason(error)}") from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _identity(os.fstat(self.fd)) == _identity(os.stat(self.path, follow_symlinks=False)):
                    return
            except BlockingIOError:
                os.close(self.fd)
                raise RecordError(f"another fastsam_record is writing '{target}'") from None
            except FileNotFoundError:
                pass
            os.close(self.fd)  # the holder removed this lock file as it finished: lock the next one

    def release(self) -> None:
        """Removed while still held, so that no one locks the removed file."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)


class OutputFile:
    """A file this run creates, never one it finds.

    Without force the target is created with O_EXCL: an existing file, a symlink (even a
    dangling one) or one that appears between the check and the creation is left alone.
    With force the recording goes to a new hidden file next to the target, which replaces
    the target (a symlink itself, not what it points to) only once it is complete. Either
    way the file must still be the one created when the recording ends: one that another
    program removed or replaced meanwhile is an error, not a success.
    """

    def __init__(self, target: Path, force: bool) -> None:
        self.target = target
        self.force = force
        self.lock = OutputLock(target)
        try:
            if force:
                self.fd, name = tempfile.mkstemp(dir=target.parent, prefix=HIDDEN_PREFIX, suffix=".tmp")
                self.path = Path(name)
                with contextlib.suppress(OSError):  # a file system without modes (FAT): they are not kept anyway
                    os.fchmod(self.fd, 0o666 & ~_umask())
            else:
                self.fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                self.path = target
        except OSError as error:
            self.lock.release()
            if isinstance(error, FileExistsError):
                raise RecordError(f"'{target}' already exists; use --force to replace it") from None
            raise RecordError(f"cannot create '{target}': {_reason(error)}") from None
        self.identity = _identity(os.fstat(self.fd))

    def open(self) -> BinaryIO:
        """The created file for writing (takes over its descriptor)."""
        fd, self.fd = self.fd, None
        return os.fdopen(fd, "wb")

    def close_descriptor(self) -> None:
        """Close the descriptor, unless open() took it over. A file written elsewhere and renamed
        onto this one (the video) keeps it open until release(): while it is open no other file can
        be given this file's inode, so a file put in its place is never taken for this one."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def check_ours(self) -> None:
        """RecordError unless the file is still the one this run created."""
        try:
            ours = _identity(os.stat(self.path, follow_symlinks=False)) == self.identity
        except OSError:
            ours = False
        if not ours:
            raise RecordError(f"'{self.path}' was removed or replaced by another program during the recording")

    def commit(self) -> None:
        """The complete recording under the target's name."""
        self.check_ours()
        if self.force:
            try:
                os.replace(self.path, self.target)
            except OSError as error:
                raise RecordError(f"cannot replace '{self.target}': {_reason(error)}") from None

    def discard(self) -> None:
        """Remove what this run created, when nothing worth keeping went into it."""
        with contextlib.suppress(RecordError):
            self.check_ours()
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """The descriptor and the lock on the output's name, given up at the end of the run."""
        self.close_descriptor()
        self.lock.release()


class VideoFile:
    """The MP4, written by OpenCV, which opens its file by name: a name not in UTF-8 crashes it
    (SIGSEGV), and a name in a shared folder could be swapped for a symlink before it opens it.
    So it writes 'video.mp4' in a new private folder beside the output, named through a
    descriptor of that folder (/proc/self/fd/N/video.mp4: ASCII, and no one can change what
    it names); the finished video is renamed onto the output reserved for it."""

    def __init__(self, output: OutputFile) -> None:
        self.output = output
        try:
            self.folder = Path(tempfile.mkdtemp(dir=output.target.parent, prefix=HIDDEN_PREFIX))
        except OSError as error:
            raise RecordError(f"cannot create a folder beside '{output.target}': {_reason(error)}") from None
        self.folder_fd: int | None = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.path = f"/proc/self/fd/{self.folder_fd}/{VIDEO_NAME}"
        """What OpenCV opens."""

    def finish(self) -> None:
        """The video into the output reserved for it, unless another program took that name meanwhile."""
        try:
            self.output.check_ours()
        except RecordError as error:
            raise RecordError(f"{error}; the video is kept in '{self.folder / VIDEO_NAME}'") from None
        try:
            video = _identity(os.stat(VIDEO_NAME, dir_fd=self.folder_fd))
            os.replace(VIDEO_NAME, self.output.path, src_dir_fd=self.folder_fd)
            self.output.identity = video
        except OSError as error:
            raise RecordError(f"cannot write '{self.output.target}': {_reason(error)}") from None
        self.discard()

    def kept(self) -> Path | None:
        """Where the video is, when it could not be moved onto its output."""
        path = self.folder / VIDEO_NAME
        return path if self.folder_fd is not None and os.path.lexists(path) else None

    def discard(self) -> None:
        """The private folder removed, with a video (or an OpenCV probe) still in it."""
        if self.folder_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(VIDEO_NAME, dir_fd=self.folder_fd)
        os.close(self.folder_fd)
        self.folder_fd = None
        with contextlib.suppress(OSError):
            self.folder.rmdir()


@contextlib.contextmanager
def _write_errors(output: OutputFile) -> Iterator[None]:
    """An OSError while writing an output becomes a RecordError naming the file."""
    try:
        yield
    except OSError as error:
        raise RecordError(f"cannot write '{output.target}': {_reason(error)}") from None


def _umask() -> int:
    """The process's umask (reading it means setting it): a forced output gets the usual
    permissions instead of mkstemp's owner-only ones."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class McapRecorder:
    """Writes serialized ROS 2 messages to an MCAP file, one channel per topic."""

    def __init__(self, output: OutputFile, topics: dict[str, str]) -> None:
        from mcap.writer import Writer

        self.output = output
        self.size = 0
        self.file = output.open()
        self.writer = Writer(self.file)
        self.counts = dict.fromkeys(topics, 0)
        self.unflushed = False
        definitions = message_definitions(sorted(set(topics.values())))
        with _write_errors(self.output):
            self.writer.start(profile="ros2", library="fastsam_record")
            schemas = {
                name: self.writer.register_schema(name=name, encoding="ros2msg", data=text.encode())
                for name, text in definitions.items()
            }
            self.channels = {
                topic: self.writer.register_channel(topic=topic, message_encoding="cdr", schema_id=schemas[typename])
                for topic, typename in topics.items()
            }

    def write(self, topic: str, data: bytes, stamp_ns: int) -> None:
        """One message; log and publish times are its arrival time."""
        with _write_errors(self.output):
            self.writer.add_message(
                channel_id=self.channels[topic], log_time=stamp_ns, publish_time=stamp_ns, data=data,
                sequence=self.counts[topic],
            )  # fmt: skip
        self.counts[topic] += 1
        self.unflushed = True

    def flush(self) -> None:
        """The chunk in progress to the file, so that a kill cannot take it along."""
        if self.unflushed:
            with _write_errors(self.output):
                self.writer.flush()
            self.unflushed = False

    def close(self) -> None:
        """Summary written and file closed; the file is closed even when writing fails."""
        try:
            with _write_errors(self.output):
                self.writer.finish()
                self.size = self.file.tell()
        finally:
            with _write_errors(self.output):
                self.file.close()


class NodeRecording:
    """Subscribes to a node's outputs and records them, in its own rclpy context."""

    def __init__(
        self, output: OutputFile, node: str, camera: str, jpeg_quality: int, video: VideoFile | None, fps: float
    ) -> None:
        import cv2
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image

        from fastsam_msgs.msg import InstanceArray, ObstacleArray

        self.context = rclpy.Context()
        self.context.init(args=[])
        self.node = rclpy.create_node("fastsam_record", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        outputs = output_topics(node, camera)
        self.debug_topic = outputs["debug_image"] + DEBUG_SUFFIX
        raw = {
            outputs["instances"]: InstanceArray,
            outputs["selection"]: InstanceArray,
            outputs["obstacles"]: ObstacleArray,
            DIAGNOSTICS: DiagnosticArray,
        }
        typenames = {topic: _typename(kind) for topic, kind in raw.items()}
        typenames[self.debug_topic] = "sensor_msgs/msg/CompressedImage"
        self.recorder = McapRecorder(output, typenames)
        self.instances_topic = outputs["instances"]
        self.jpeg_quality = jpeg_quality
        self.video_file, self.fps, self.video = video, fps, None
        self.video_size: tuple[int, int] | None = None
        self.skipped_images = 0
        self.error: RecordError | None = None
        self.fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        for topic, kind in raw.items():
            self.node.create_subscription(kind, topic, self._writer(topic), 10, raw=True)
        self.node.create_subscription(Image, outputs["debug_image"], self._on_debug_image, 5)

    def _writer(self, topic: str):
        def write(data: bytes) -> None:
            self.recorder.write(topic, data, time.time_ns())

        return write

    def _on_debug_image(self, msg) -> None:
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import CompressedImage

        from fastsam_ros.core.image_codec import ImageDecodeError, ImageEncodeError, encode_jpeg
        from fastsam_ros.ros.convert import image_to_bgr

        try:
            image = image_to_bgr(msg)
            jpeg = encode_jpeg(image, self.jpeg_quality)
        except (ImageDecodeError, ImageEncodeError):
            self.skipped_images += 1
            return
        compressed = CompressedImage(header=msg.header, format="jpeg", data=jpeg)
        self.recorder.write(self.debug_topic, serialize_message(compressed), time.time_ns())
        if self.video_file is not None:
            self._write_video_frame(image)

    def _write_video_frame(self, image) -> None:
        """Frames of another size than the first are scaled to it: an MP4 has one frame size."""
        import cv2

        size = image.shape[1::-1]
        if self.video is None:
            self.video_size = size
            self.video = cv2.VideoWriter(self.video_file.path, self.fourcc, self.fps, size)
            if not self.video.isOpened():
                raise RecordError(f"cannot write '{self.video_file.output.target}': OpenCV cannot open an MP4 writer")
        if size != self.video_size:
            image = cv2.resize(image, self.video_size)
        self.video.write(image)

    def run(self, duration: float | None, frames: int | None, shutdown: Shutdown) -> None:
        """Record until duration seconds, `frames` instance messages or a stop signal; say when
        each topic is first heard. A failed write ends the recording and is kept in self.error."""
        deadline = None if duration is None else time.monotonic() + duration
        heard: set[str] = set()
        next_flush = time.monotonic() + FLUSH_INTERVAL_S
        try:
            while not shutdown.requested.is_set() and (deadline is None or time.monotonic() < deadline):
                for topic, count in self.recorder.counts.items():
                    if count and topic not in heard:
                        heard.add(topic)
                        print(f"fastsam_record: first message on {topic}", flush=True)
                if frames is not None and self.recorder.counts[self.instances_topic] >= frames:
                    return
                self.executor.spin_once(timeout_sec=SPIN_SLICE_S)
                if time.monotonic() >= next_flush:
                    self.recorder.flush()
                    next_flush = time.monotonic() + FLUSH_INTERVAL_S
        except RecordError as error:
            self.error = error

    def close(self) -> None:
        """Both files closed and committed, whatever happened; the first error is kept in self.error."""
        try:
            self.recorder.close()
            if self.error is None:
                self.recorder.output.commit()
        except RecordError as error:
            self.error = self.error or error
        if self.video is not None:
            self.video.release()
            try:
                self.video_file.finish()
                if self.error is None:
                    self.video_file.output.commit()
            except RecordError as error:
                self.error = self.error or error
        elif self.video_file is not None:
            self.video_file.discard()
            self.video_file.output.discard()
        from fastsam_ros.ros.graph_exit import leave_graph

        self.executor.shutdown()
        leave_graph(self.node, self.context)


def _typename(kind: type) -> str:
    """'pkg/msg/Name' of a generated message class."""
    return f"{kind.__module__.split('.')[0]}/msg/{kind.__name__}"


def _check_paths(parser: OneLineParser, output: Path, video: Path | None, force: bool) -> None:
    """Refuse, before anything is created, paths that cannot become a recording."""
    for path, what in ((output, "output"), (video, "--video")):
        if path is None:
            continue
        if not path.parent.is_dir():
            parser.error(f"{what}: folder '{path.parent}' does not exist")
        if path.is_dir():
            parser.error(f"{what}: '{path}' is a folder")
        if os.path.lexists(path) and not force:
            parser.error(f"{what}: '{path}' already exists; use --force to replace it")
    if video is not None and video.parent.resolve() / video.name == output.parent.resolve() / output.name:
        parser.error("--video must be another file than the output")


def _check_topics(parser: OneLineParser, node: str, camera: str) -> None:
    from rclpy.exceptions import NameValidationException
    from rclpy.validate_full_topic_name import validate_full_topic_name

    for topic in output_topics(node, camera).values():
        try:
            validate_full_topic_name(topic)
        except NameValidationException:
            parser.error(f"--node/--camera: '{topic}' is not a valid topic name")


def _check_video_writer(video: VideoFile, fps: float) -> None:
    """OpenCV fails silently when it cannot write an MP4: find out before recording."""
    import cv2

    probe = cv2.VideoWriter(video.path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 64))
    opened = probe.isOpened()
    probe.release()
    if not opened:
        raise RecordError(f"cannot write '{video.output.target}': OpenCV cannot open an MP4 writer for it")


def command_line() -> OneLineParser:
    """fastsam_record's options (docs/USAGE.md lists them from here)."""
    parser = OneLineParser(prog="fastsam_record", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="MCAP file to write, e.g. run.mcap")
    parser.add_argument("--node", default="fastsam", help="name of the node to record (default fastsam)")
    parser.add_argument("--camera", default="", help="camera name of a multi-camera node")
    parser.add_argument(
        "--duration", type=number_in(0.0, math.inf, low_allowed=True), help="seconds to record (default: until Ctrl-C)"
    )
    parser.add_argument("--frames", type=integer_in(1), help="stop after this many ~/instances messages")
    parser.add_argument(
        "--jpeg-quality", type=integer_in(1, 100), default=80, help="JPEG quality of the debug image (1-100)"
    )
    parser.add_argument("--video", type=Path, help="also write the debug images to this MP4 file")
    parser.add_argument(
        "--video-fps",
        type=number_in(0.0, MAX_VIDEO_FPS, low_allowed=False),
        default=10.0,
        help="frame rate written into the MP4",
    )
    parser.add_argument("--force", action="store_true", help="replace existing output files once the recording ends")
    return parser


def main(argv: list[str] | None = None) -> None:
    shutdown = Shutdown()
    shutdown.install()
    signal.signal(signal.SIGHUP, lambda signum, frame: shutdown.requested.set())
    parser = command_line()
    args = parser.parse_args(argv)
    _check_paths(parser, args.output, args.video, args.force)
    _check_topics(parser, args.node, args.camera)
    sys.exit(_record(args, shutdown))


def _record(args: argparse.Namespace, shutdown: Shutdown) -> int:
    """Exit code: 0 recorded, 1 a write failed during the recording, 2 an output cannot be created.
    The outputs' locks are held until the end."""
    from fastsam_ros.tools.play import UnbreakableStream

    # A reader that went away (`| head`, a closed terminal) must not end the recording.
    sys.stdout, sys.stderr = UnbreakableStream(sys.stdout), UnbreakableStream(sys.stderr)
    created: list[OutputFile] = []
    try:
        return _record_into(args, shutdown, created)
    finally:
        for output in created:
            output.release()


def _record_into(args: argparse.Namespace, shutdown: Shutdown, created: list[OutputFile]) -> int:
    video: VideoFile | None = None
    try:
        created.append(OutputFile(args.output, args.force))
        if args.video is not None:
            created.append(OutputFile(args.video, args.force))
            video = VideoFile(created[-1])
            _check_video_writer(video, args.video_fps)
    except RecordError as error:
        _discard(video, created)
        print(one_line(f"fastsam_record: error: {error}"), file=sys.stderr)
        return 2
    try:
        recording = NodeRecording(created[0], args.node, args.camera, args.jpeg_quality, video, args.video_fps)
    except RecordError as error:
        _discard(video, created)
        print(one_line(f"fastsam_record: error: {error}"), file=sys.stderr)
        return 1
    try:
        recording.run(args.duration, args.frames, shutdown)
    finally:
        shutdown.requested.set()
        recording.close()
        # While Python finalizes, its handlers go back to the default action: a late signal
        # would still end the finished process with a signal's exit status.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    if recording.error is not None:
        kept = "".join(f"; unfinished recording kept in '{o.path}'" for o in created if o.force and o.path.exists())
        kept_video = video.kept() if video is not None else None
        if kept_video is not None and str(kept_video) not in str(recording.error):
            kept += f"; the video is kept in '{kept_video}'"
        print(one_line(f"fastsam_record: error: {recording.error}{kept}"), file=sys.stderr)
        return 1
    counts = ", ".join(f"{topic} {count}" for topic, count in recording.recorder.counts.items())
    skipped = (
        f"; {recording.skipped_images} debug images skipped (undecodable, or not encodable as JPEG)"
        if recording.skipped_images
        else ""
    )
    print(f"fastsam_record: wrote {args.output} ({recording.recorder.size} bytes): {counts}{skipped}")
    if args.video is not None and recording.video is None:
        print(f"fastsam_record: no debug image arrived, so no {args.video} was written")
    return 0


def _discard(video: VideoFile | None, created: list[OutputFile]) -> None:
    if video is not None:
        video.discard()
    for output in created:
        output.discard()
