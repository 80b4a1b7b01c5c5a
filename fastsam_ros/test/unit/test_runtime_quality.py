"""The quality guard: kept instances need the same class, a matching box and a matching mask."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from fastsam_ros.core.backends.runtime_quality import KEPT_SHARE, QualityReport, compare_frames, mask_iou
from fastsam_ros.core.mask_set import Instance, MaskSet


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
    # 3 rows by 5 columns at x 8, y 6, and 5 rows by 3 columns at x 6, y 7: 1 column by 2 rows in common.
    right = Instance((8, 6, 13, 9), 0.9, 0, "p", (8, 6), np.ones((3, 5), dtype=bool))
    lower = Instance((6, 7, 9, 12), 0.9, 0, "p", (6, 7), np.ones((5, 3), dtype=bool))
    assert mask_iou(right, lower) == mask_iou(lower, right) == 2 / 28
    empty = dataclasses.replace(right, mask=np.zeros((3, 5), dtype=bool))
    assert mask_iou(empty, empty) == 1.0, "two empty masks agree"


def test_frames_add_up_and_the_limits_of_a_match_and_of_a_kept_mask_are_included():
    """Frame 1: a box at IoU 0.9 exactly (one row shorter) is matched, its mask (IoU 0.9) not kept.
    Frame 2: a mask at IoU 0.95 exactly is kept, and an extra instance counts against the candidate."""
    full = Instance((0, 0, 10, 10), 0.9, 0, "p", (0, 0), np.ones((10, 10), dtype=bool))
    shorter = Instance((0, 0, 10, 9), 0.9, 0, "p", (0, 0), np.ones((9, 10), dtype=bool))
    most = dataclasses.replace(full, mask=np.ones((10, 10), dtype=bool))
    most.mask[9, 5:] = False
    extra = Instance((20, 20, 30, 30), 0.9, 0, "p", (20, 20), np.ones((10, 10), dtype=bool))
    reference = [MaskSet(40, 40, (full,)), MaskSet(40, 40, (full,))]
    report = compare_frames(reference, [MaskSet(40, 40, (shorter,)), MaskSet(40, 40, (most, extra))])
    assert (report.reference_instances, report.candidate_instances, report.kept) == (2, 3, 1)
    assert report.mask_ious == (0.9, 0.95)


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
