"""Track ids on real video against ultralytics' own track(), same frames and weights."""

from __future__ import annotations

import pytest

from benchmarks.tracking_comparison import TrackedBox, compare, tracking_metrics
from fastsam_ros.core.engine import EngineSettings, SegmentationEngine
from fastsam_ros.tools.sample_videos import sample_video, video_frames

FRAMES = 60


@pytest.fixture(scope="module")
def pedestrians():
    return video_frames(sample_video("vtest.avi"), FRAMES)


def test_the_video_is_real_and_long_enough(pedestrians):
    assert len(pedestrians) == FRAMES and pedestrians[0].shape == (576, 768, 3)


def test_node_tracks_as_well_as_ultralytics_track_on_real_video(loaded_model, pedestrians):
    conf = EngineSettings.conf
    node, reference = compare(SegmentationEngine(loaded_model), loaded_model.source, pedestrians, conf)
    print(f"\nvtest.avi, {FRAMES} frames: node {node.row()}, ultralytics track() {reference.row()}")
    assert reference.tracked > 5 * FRAMES, "a crowded street: several people per frame"
    assert node.switches <= reference.switches
    assert node.tracked >= 0.98 * reference.tracked


def test_switch_metric_counts_a_changed_id_on_an_overlapping_box():
    box = (10.0, 10.0, 50.0, 90.0)
    moved = (12.0, 10.0, 52.0, 90.0)
    frames = [
        [TrackedBox(box, 0.9, 0, 1), TrackedBox((200, 10, 240, 90), 0.9, 0, 2)],
        [TrackedBox(moved, 0.9, 0, 3), TrackedBox((200, 10, 240, 90), 0.9, 0, 2)],
        [TrackedBox(moved, 0.9, 1, 3), TrackedBox((200, 10, 240, 90), 0.2, 0, 2)],
    ]
    metrics = tracking_metrics(frames, 0.25)
    assert (metrics.ids, metrics.switches, metrics.matched_pairs, metrics.tracked) == (3, 1, 2, 5)
