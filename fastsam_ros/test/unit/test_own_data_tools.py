"""The own-data tools without a graph: frame sources, the web server's request checks and mask overlay."""

from __future__ import annotations

import base64
import itertools
import re
import threading
import time

import cv2
import numpy as np
import pytest

from fastsam_ros.core.parameters import default_of
from fastsam_ros.core.signal_flag import SignalFlag
from fastsam_ros.tools.frame_sources import (
    FOLDER_RATE,
    MAX_FAILED_VIDEO_READS,
    FolderSource,
    SourceError,
    VideoSource,
    open_source,
)
from fastsam_ros.tools.play import paced, passes
from fastsam_ros.tools.sample_videos import sample_video, video_frames, videos_dir
from fastsam_ros.tools.web import (
    RequestError,
    mask_overlay,
    parse_box_request,
    parse_point_request,
    parse_text_request,
)
from test_support.videos import GREY_STEP, MJPEG_FPS, mjpeg_video


def test_sample_video_is_the_real_pedestrian_clip():
    video = VideoSource(str(sample_video("vtest.avi")))
    first = next(video.frames())
    assert first.image.shape == (576, 768, 3) and first.offset_ns == 0
    assert video.length == 795 and video.fps == pytest.approx(10.0)
    with pytest.raises(FileNotFoundError, match="make setup"):
        sample_video("missing.avi")


def test_the_sample_videos_folder_can_be_moved_with_fastsam_ros_videos(monkeypatch, tmp_path):
    installed = sample_video("vtest.avi")
    monkeypatch.setenv("FASTSAM_ROS_VIDEOS", str(tmp_path))
    assert videos_dir() == tmp_path
    missing = rf"^sample video 'vtest.avi' not found in {re.escape(str(tmp_path))}: run"
    with pytest.raises(FileNotFoundError, match=missing):
        sample_video("vtest.avi")
    (tmp_path / "vtest.avi").symlink_to(installed)
    assert sample_video("vtest.avi") == tmp_path / "vtest.avi"


def test_video_frames_are_the_consecutive_frames_from_start_and_stop_at_the_end(tmp_path):
    video = sample_video("vtest.avi")
    every = list(itertools.islice(VideoSource(str(video)).frames(), 6))
    taken = video_frames(video, 3, start=2)
    assert len(taken) == 3 and all(np.array_equal(a, b.image) for a, b in zip(taken, every[2:5], strict=True))
    assert len(video_frames(video, 5, start=793)) == 2, "the video has 795 frames"
    assert all(np.array_equal(a, b.image) for a, b in zip(video_frames(video, 2), every[:2], strict=True)), "from 0"
    (tmp_path / "broken.avi").write_bytes(b"not a video")
    with pytest.raises(FileNotFoundError, match=rf"^cannot open video '{re.escape(str(tmp_path / 'broken.avi'))}'$"):
        video_frames(tmp_path / "broken.avi", 1)


def test_video_offsets_follow_its_frame_rate():
    frames = itertools.islice(VideoSource(str(sample_video("vtest.avi"))).frames(), 4)
    offsets = [frame.offset_ns for frame in frames]
    assert offsets == [0, 100_000_000, 200_000_000, 300_000_000]


def played(video: VideoSource) -> list[tuple[int, int]]:
    """(frame number told by its grey level, offset in ns) of every frame the source yields."""
    return [(round(float(frame.image.mean()) / GREY_STEP), frame.offset_ns) for frame in video.frames()]


def expected_frames(indices) -> list[tuple[int, int]]:
    return [(index, round(index * 1e9 / MJPEG_FPS)) for index in indices]


def test_video_plays_past_corrupt_frames_each_at_its_own_time(tmp_path):
    warnings: list[str] = []
    path = mjpeg_video(tmp_path / "clip.avi", 30, corrupt=[9, 20, 21])
    video = VideoSource(str(path), warn=warnings.append)
    assert video.length == 30 and video.fps == MJPEG_FPS and video.default_rate is None
    assert played(video) == expected_frames(i for i in range(30) if i not in (9, 20, 21))
    assert video.skipped == 3
    assert warnings == [f"skipped frame {index} of '{path}': it could not be read or decoded" for index in (9, 20, 21)]


@pytest.mark.parametrize("run", [MAX_FAILED_VIDEO_READS, MAX_FAILED_VIDEO_READS + 1])
def test_a_run_of_unreadable_frames_ends_the_video_only_past_the_limit(tmp_path, run):
    warnings: list[str] = []
    path = mjpeg_video(tmp_path / "clip.avi", 40, corrupt=range(5, 5 + run))
    video = VideoSource(str(path), warn=warnings.append)
    frames = played(video)
    if run <= MAX_FAILED_VIDEO_READS:
        assert frames == expected_frames([*range(5), *range(5 + run, 40)]) and video.skipped == run
        assert len(warnings) == run
    else:
        assert frames == expected_frames(range(5)) and video.skipped == 0
        assert warnings == [f"video '{path}' ended early at frame 5 of 40"]


def test_unreadable_frames_at_the_end_end_the_video_with_one_warning(tmp_path):
    warnings: list[str] = []
    path = mjpeg_video(tmp_path / "clip.avi", 20, corrupt=[17, 18, 19])
    video = VideoSource(str(path), warn=warnings.append)
    assert played(video) == expected_frames(range(17)) and video.skipped == 0
    assert warnings == [f"video '{path}' ended early at frame 17 of 20"]


def test_a_whole_video_plays_without_a_warning(tmp_path):
    warnings: list[str] = []
    video = VideoSource(str(mjpeg_video(tmp_path / "clip.avi", 12)), warn=warnings.append)
    assert played(video) == expected_frames(range(12)) and video.skipped == 0 and warnings == []
    assert played(video) == expected_frames(range(12)), "a second pass starts from the first frame again"


def test_a_slow_video_is_paced_by_its_own_frame_rate(tmp_path):
    video = VideoSource(str(mjpeg_video(tmp_path / "clip.avi", 3, fps=1)))
    assert video.fps == 1 and video.default_rate is None
    assert [frame.offset_ns for frame in video.frames()] == [0, 10**9, 2 * 10**9]


def test_video_frame_size_is_checked_against_the_limit_it_is_given(tmp_path):
    path = str(mjpeg_video(tmp_path / "clip.avi", 2))
    assert VideoSource(path, max_pixels=lambda: 32 * 24).length == 2
    with pytest.raises(SourceError, match=r"32x24, over the 767-pixel limit"):
        VideoSource(path, max_pixels=lambda: 32 * 24 - 1)


def test_folder_plays_images_in_name_order_and_skips_other_files(tmp_path):
    for name, value in (("b.png", 2), ("a.png", 1), ("c.jpg", 3)):
        cv2.imwrite(str(tmp_path / name), np.full((4, 6, 3), value, np.uint8))
    (tmp_path / "readme.txt").write_text("x")
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource) and source.length == 3 and source.default_rate == FOLDER_RATE
    frames = list(source.frames())
    assert [int(frame.image[0, 0, 0]) for frame in frames] == [1, 2, 3]
    assert all(frame.offset_ns is None for frame in frames)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.mp4", None, "does not exist"),
        ("", None, "no images"),
        ("broken.mp4", "not a video", "cannot open video"),
        ("broken.mcap", "not a bag", "cannot read bag"),
    ],
)
def test_unreadable_sources_get_clear_errors(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(SourceError, match=message):
        open_source(str(tmp_path / name))


def test_bag_with_several_image_topics_needs_a_choice(tmp_path):
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CompressedImage

    from fastsam_ros.ros.convert import array_to_image

    typestore = get_typestore(Stores.ROS2_KILTED)
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        front = writer.add_connection("/front/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=typestore)
        rear = writer.add_connection("/rear/image", "sensor_msgs/msg/Image", typestore=typestore)
        writer.write(front, 1, serialize_message(CompressedImage(format="jpeg", data=jpeg)))
        writer.write(rear, 1, serialize_message(array_to_image(np.zeros((4, 6, 3), np.uint8), "bgr8")))
    with pytest.raises(SourceError, match=r"several image topics.*/front/image/compressed"):
        open_source(str(tmp_path / "bag"))
    with pytest.raises(SourceError, match="no image topic '/side/image'"):
        open_source(str(tmp_path / "bag"), "/side/image")
    rear_frames = list(open_source(str(tmp_path / "bag"), "/rear/image").frames())
    assert [f.image.shape for f in rear_frames] == [(4, 6, 3)] and rear_frames[0].offset_ns == 0


def test_looping_keeps_the_clock_running_across_passes(tmp_path):
    path = tmp_path / "three.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for value in (10, 120, 240):
        writer.write(np.full((24, 32, 3), value, np.uint8))
    writer.release()
    frames = list(itertools.islice(passes(VideoSource(str(path)), loop=True), 7))
    assert [f.offset_ns for f in frames] == [i * 200_000_000 for i in range(7)]
    assert [round(float(f.image.mean()) / 10) for f in frames] == [1, 12, 24, 1, 12, 24, 1]
    assert len(list(passes(VideoSource(str(path)), loop=False))) == 3


def test_pacing_keeps_every_frame_in_order_and_ends_as_soon_as_stopped():
    frames = list(itertools.islice(VideoSource(str(sample_video("vtest.avi"))).frames(), 3))
    stop = SignalFlag()
    assert [f.offset_ns for f in paced(iter(frames), 1000.0, stop)] == [f.offset_ns for f in frames]
    released = []
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    for frame in paced(iter(frames * 10), 2.0, stop):
        released.append(frame)
    assert len(released) == 1 and time.monotonic() - started < 2.0, "the 0.5 s wait for the second frame ends at stop"


def test_prompt_requests_are_checked_before_reaching_the_node():
    assert parse_point_request({"points": [[1, 2.5]], "labels": [1]}) == ([(1.0, 2.5)], [1])
    assert parse_box_request({"box": [1, 2, 3, 4]}) == (1.0, 2.0, 3.0, 4.0)
    assert parse_text_request({"text": " bus "}) == "bus"
    longest = "x" * default_of("max_text_length")
    assert parse_text_request({"text": longest}) == longest, "as long as the node takes by default"
    bad = [
        (parse_point_request, {"points": [], "labels": []}),
        (parse_point_request, {"points": [[1, 2]], "labels": [2]}),
        (parse_point_request, {"points": [[1, 2]], "labels": [True]}),
        (parse_point_request, {"points": [[1, float("nan")]], "labels": [1]}),
        (parse_point_request, {"points": [[1, 2, 3]], "labels": [1]}),
        (parse_box_request, {"box": [3, 2, 1, 4]}),
        (parse_box_request, {"box": [1, 2, 3]}),
        (parse_text_request, {"text": 5}),
        (parse_text_request, {"text": "x" * (default_of("max_text_length") + 1)}),
    ]
    for parse, body in bad:
        with pytest.raises(RequestError) as error:
            parse(body)
        assert error.value.status == 400, body


def test_mask_overlay_is_the_union_of_the_instances_masks(bus_masks):
    from fastsam_ros.ros.convert import instance_to_msg

    chosen = [instance_to_msg(bus_masks[i], i) for i in (0, 1)]
    url, pixels = mask_overlay(chosen, bus_masks.width, bus_masks.height)
    overlay = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    expected = bus_masks.merged_mask([0, 1])
    assert overlay.shape == (bus_masks.height, bus_masks.width, 4)
    assert np.array_equal(overlay[:, :, 3] > 0, expected) and pixels == int(expected.sum())
    assert mask_overlay([], 8, 8) == (None, 0)
