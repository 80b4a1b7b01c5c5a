"""The quality guard: kept instances need the same class, a matching box and a matching mask."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from fastsam_ros.core.backends.runtime_quality import KEPT_SHARE, QualityReport, compare_frames, mask_iou
from fastsam_ros.core.mask_set import Instance


def test_identical_frames_keep_every_instance(bus_masks):
    report = compare_frames([bus_masks], [bus_masks])
    assert report.kept == len(bus_masks) > 3 and report.passed
    assert report.mask_ious == pytest.approx([1.0] * len(bus_masks))


def test_a_missing_or_extra_instance_counts_against_the_candidate(bus_masks):
    fewer = dataclasses.replace(bus_masks, instances=bus_masks.instances[1:])
    assert compare_frames([bus_masks], [fewer]).kept == len(bus_masks) - 1
    extra = compare_frames([fewer], [bus_masks])
    assert extra.kept == len(fewer) and extra.kept_share == pytest.approx(len(fewer) / len(bus_masks))


def test_another_class_is_not_the_same_instance(bus_masks):
    first = bus_masks.instances[0]
    relabelled = dataclasses.replace(first, class_id=first.class_id + 1)
    candidate = dataclasses.replace(bus_masks, instances=(relabelled, *bus_masks.instances[1:]))
    assert compare_frames([bus_masks], [candidate]).kept == len(bus_masks) - 1


def test_a_shifted_mask_in_the_same_box_is_not_kept(bus_masks):
    first = max(bus_masks.instances, key=lambda instance: instance.area)
    shifted = dataclasses.replace(first, mask=np.roll(first.mask, first.mask.shape[1] // 5, axis=1))
    assert mask_iou(first, shifted) < 0.95
    candidate = dataclasses.replace(bus_masks, instances=tuple(shifted if i is first else i for i in bus_masks))
    report = compare_frames([bus_masks], [candidate])
    assert report.kept == len(bus_masks) - 1
    assert report.passed == (report.kept_share >= KEPT_SHARE)


def test_mask_iou_accounts_for_the_crop_offsets(bus_masks):
    first = bus_masks.instances[0]
    moved = dataclasses.replace(first, mask_offset=(first.mask_offset[0] + first.mask.shape[1], first.mask_offset[1]))
    assert mask_iou(first, moved) == 0.0
    square = np.ones((4, 4), dtype=bool)
    right, lower = (Instance((0, 0, 1, 1), 0.9, 0, "p", offset, square) for offset in ((8, 6), (6, 7)))
    assert mask_iou(right, lower) == mask_iou(lower, right) == 6 / 26, "2 columns by 3 rows in common"


def test_frame_counts_must_match(bus_masks):
    with pytest.raises(ValueError, match="frames"):
        compare_frames([bus_masks], [])


def test_the_summary_gives_the_kept_share_of_the_larger_side_and_the_median_mask_iou():
    assert QualityReport(18, 20, 17, (0.9, 0.99, 0.95)).summary() == (
        "17/20 instances kept (85.0%), median mask IoU 0.950"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no median of nothing asked of numpy
        assert QualityReport(0, 0, 0, ()).summary() == "0/0 instances kept (100.0%), median mask IoU nan"
