"""The quality guard of a reduced precision: does it find what full precision finds?

bf16 and int8 make the network faster but shift its numbers; what matters to a robot is
whether the same objects come out with the same masks. An instance of the reference
(f32) counts as kept when the candidate has one of the same class whose box overlaps it
at IoU >= BOX_IOU and whose mask overlaps it at IoU >= MASK_IOU; the guard passes when at
least KEPT_SHARE of all instances are kept (counted over the larger of the two sets, so
extra instances in the candidate count against it too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastsam_ros.core.mask_set import Instance, MaskSet, box_iou

BOX_IOU = 0.9
MASK_IOU = 0.95
KEPT_SHARE = 0.95


@dataclass(frozen=True)
class QualityReport:
    """How a candidate's instances compare with the reference's over some frames."""

    reference_instances: int
    candidate_instances: int
    kept: int
    mask_ious: tuple[float, ...]
    """Mask IoU of every same-class pair whose boxes match, kept or not."""

    @property
    def kept_share(self) -> float:
        total = max(self.reference_instances, self.candidate_instances)
        return self.kept / total if total else 1.0

    @property
    def passed(self) -> bool:
        return self.kept_share >= KEPT_SHARE

    def summary(self) -> str:
        median = float(np.median(self.mask_ious)) if self.mask_ious else math.nan
        return (
            f"{self.kept}/{max(self.reference_instances, self.candidate_instances)} instances kept "
            f"({100 * self.kept_share:.1f}%), median mask IoU {median:.3f}"
        )


def mask_iou(a: Instance, b: Instance) -> float:
    """IoU of two box-cropped masks, on the smallest window holding both crops."""
    left, top = min(a.mask_offset[0], b.mask_offset[0]), min(a.mask_offset[1], b.mask_offset[1])
    right = max(a.mask_offset[0] + a.mask.shape[1], b.mask_offset[0] + b.mask.shape[1])
    bottom = max(a.mask_offset[1] + a.mask.shape[0], b.mask_offset[1] + b.mask.shape[0])
    planes = np.zeros((2, bottom - top, right - left), dtype=bool)
    for index, instance in enumerate((a, b)):
        x, y = instance.mask_offset[0] - left, instance.mask_offset[1] - top
        planes[index, y : y + instance.mask.shape[0], x : x + instance.mask.shape[1]] = instance.mask
    union = np.count_nonzero(planes[0] | planes[1])
    return float(np.count_nonzero(planes[0] & planes[1]) / union) if union else 1.0


def compare_frames(reference: Sequence[MaskSet], candidate: Sequence[MaskSet]) -> QualityReport:
    """Match instances frame by frame: each reference instance to its best unused same-class box."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference frames but {len(candidate)} candidate frames")
    kept, ious, ref_total, cand_total = 0, [], 0, 0
    for ref_set, cand_set in zip(reference, candidate, strict=True):
        ref_total += len(ref_set)
        cand_total += len(cand_set)
        unused = list(cand_set.instances)
        for ref in ref_set.instances:
            scored = [(box_iou(ref.box, c.box), index) for index, c in enumerate(unused) if c.class_id == ref.class_id]
            best_iou, best = max(scored, default=(0.0, None))
            if best_iou < BOX_IOU:
                continue
            match = unused.pop(best)
            overlap = mask_iou(ref, match)
            ious.append(overlap)
            kept += int(overlap >= MASK_IOU)
    return QualityReport(ref_total, cand_total, kept, tuple(ious))
