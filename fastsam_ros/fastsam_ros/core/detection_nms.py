"""Non-maximum suppression with ultralytics' results and without its crowded-frame cliff.

ultralytics' ``non_max_suppression`` uses torchvision's NMS kernel only when some other
module has imported torchvision already; otherwise (as in the node, which imports nothing
that does) it falls back to a Python loop with a device synchronisation per kept box, which
cost 17 ms on a GPU frame with 57 instances. Here torchvision's kernel always runs, on the
tensors' device, on the rows of anchors above the confidence threshold only. The arithmetic
(box conversion, best class, per-class coordinate offset of 7680 px, the NMS itself) is
ultralytics', in the same order, so the kept rows are identical.

The kernel is loaded from torchvision's compiled library without importing the torchvision
package, whose import also loads ``torch._dynamo``: about 2 s of every start on our CPUs.
Upstream entries: fastsam_ros.core.compat.ULTRALYTICS_NMS_PYTHON_FALLBACK and
TORCHVISION_IMPORTS_DYNAMO.

A network with an NMS-free head (YOLO26) needs none of this: ``select_end_to_end`` only
thresholds the detections it chose.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch

CLASS_OFFSET = 7680
"""Per-class coordinate shift that keeps boxes of different classes from suppressing each other (ultralytics' value)."""
MAX_NMS_CANDIDATES = 30000
"""Candidates beyond this many, lowest scores first, never reach the IoU step (ultralytics' value)."""


def select_detections(
    prediction: torch.Tensor, conf: float, iou: float, max_det: int, num_classes: int
) -> list[torch.Tensor]:
    """Per image, (n, 6 + extra) rows x1, y1, x2, y2, score, class, mask coefficients; best first.

    prediction is the network's (batch, 4 + classes + extra, anchors) output with xywh boxes.
    """
    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise ValueError(f"conf {conf} and iou {iou} must lie in [0, 1]")
    return [_suppress(rows.transpose(0, 1), conf, iou, max_det, num_classes) for rows in prediction]


def select_end_to_end(prediction: torch.Tensor, conf: float, max_det: int) -> list[torch.Tensor]:
    """Per image, the (n, 6 + extra) rows of an NMS-free head scored above conf, in the head's order.

    prediction is the (batch, k, 6 + extra) output of a one-to-one head (YOLO26's): x1, y1, x2,
    y2, score, class, mask coefficients, its top k already chosen and ranked by the network, so
    only the threshold and max_det apply, as in ultralytics.
    """
    if not 0 <= conf <= 1:
        raise ValueError(f"conf {conf} must lie in [0, 1]")
    return [rows[rows[:, 4] > conf][:max_det].float() for rows in prediction]


def _suppress(rows: torch.Tensor, conf: float, iou: float, max_det: int, num_classes: int) -> torch.Tensor:
    rows = rows[rows[:, 4 : 4 + num_classes].amax(1) > conf]
    scores, classes = rows[:, 4 : 4 + num_classes].max(1, keepdim=True)
    centres, half_sizes = rows[:, :2], rows[:, 2:4] / 2
    boxes = torch.cat((centres - half_sizes, centres + half_sizes), 1)
    # float32 classes promote fp16 rows to float32, as in ultralytics: 79 x 7680 overflows fp16.
    kept = torch.cat((boxes, scores, classes.float(), rows[:, 4 + num_classes :]), 1)
    if kept.shape[0] > MAX_NMS_CANDIDATES:
        kept = kept[kept[:, 4].argsort(descending=True)[:MAX_NMS_CANDIDATES]]
    shifted = kept[:, :4] + kept[:, 5:6] * CLASS_OFFSET
    return kept[nms_kernel()(shifted, kept[:, 4], iou)[:max_det]]


@functools.cache
def nms_kernel() -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """torchvision's NMS operator (the one ``torchvision.ops.nms`` calls), on any device."""
    spec = importlib.util.find_spec("torchvision")
    folder = spec.submodule_search_locations if spec is not None else None
    libraries = sorted(Path(folder[0]).glob("_C*.so")) if folder and "torchvision" not in sys.modules else []
    if libraries:
        torch.ops.load_library(str(libraries[0]))
    else:
        import torchvision  # noqa: F401 - registers the operator; the library's file was not found
    return torch.ops.torchvision.nms
