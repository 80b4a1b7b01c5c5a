"""Stage 1 of FastSAM: all-instance segmentation of one BGR frame into a MaskSet.

The engine drives the ultralytics network directly instead of going through
``Model.predict``: no Results objects, no full-frame mask planes. Boxes come from
ultralytics' own letterbox and NMS, so they equal raw ultralytics exactly; masks are
decoded from the prototypes only inside each box, at source resolution, in a single
bilinear step (ultralytics upsamples every mask to the network input and then again
to the source size).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from fastsam_ros.mask_set import Instance, MaskSet
from fastsam_ros.model_loading import LoadedModel


@dataclass(frozen=True)
class EngineSettings:
    """Inference settings that may change between frames without reloading weights."""

    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300
    retina_masks: bool = True
    candidate_conf: float = 0.1
    """Detections scored in [candidate_conf, conf) are kept as boxes without masks: ByteTrack
    and BoT-SORT match them to existing tracks in a second stage (ultralytics' ``track()``
    predicts at 0.1 for the same reason), so a track survives a frame where its object's
    score dips. Only instances scored at least ``conf`` are published."""

    @property
    def nms_conf(self) -> float:
        return min(self.conf, self.candidate_conf)


@dataclass
class StageTimes:
    """Wall milliseconds of the last frame's stages, for diagnostics and benchmarks."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


class SegmentationEngine:
    """Runs a loaded segmentation network on frames and returns MaskSets."""

    def __init__(self, loaded: LoadedModel, settings: EngineSettings | None = None) -> None:
        self.loaded = loaded
        self.settings = settings or EngineSettings()
        self.last_times = StageTimes()
        self._letterboxes: dict[tuple[int, bool], object] = {}

    @property
    def class_names(self) -> dict[int, str]:
        return self.loaded.class_names

    def segment(self, image: np.ndarray, stamp_ns: int = 0, frame_id: str = "") -> MaskSet:
        """Segment every object in an (H, W, 3) uint8 BGR image."""
        return self.segment_batch([image], [stamp_ns], [frame_id])[0]

    def segment_batch(
        self, images: list[np.ndarray], stamps_ns: list[int] | None = None, frame_ids: list[str] | None = None
    ) -> list[MaskSet]:
        """Segment several frames (one per camera, say) in one forward pass.

        On a GPU the nano model is bound by per-call overhead, so one call on a batch of
        four costs far less than four calls. Frames of different sizes are letterboxed to
        the square network input so that they stack.
        """
        if not images:
            return []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError("image has zero size")
        stamps_ns = stamps_ns or [0] * len(images)
        frame_ids = frame_ids or [""] * len(images)
        times = StageTimes()
        start = time.perf_counter()
        tensor = self._preprocess(images)
        after_pre = time.perf_counter()
        with torch.inference_mode():
            detections, protos = self._infer(tensor)
            if self.loaded.device.type == "cuda":
                torch.cuda.synchronize(self.loaded.device)
            after_infer = time.perf_counter()
            input_shape = tuple(tensor.shape[2:])
            results = [
                MaskSet(
                    height=image.shape[0],
                    width=image.shape[1],
                    instances=tuple(self._postprocess(dets[~low], proto, input_shape, image.shape[:2])),
                    stamp_ns=stamp_ns,
                    frame_id=frame_id,
                    class_names=self.class_names,
                    candidates=candidate_rows(dets[low], input_shape, image.shape[:2]),
                )
                for image, dets, proto, stamp_ns, frame_id, low in zip(
                    images,
                    detections,
                    protos,
                    stamps_ns,
                    frame_ids,
                    (dets[:, 4] < self.settings.conf for dets in detections),
                    strict=True,
                )
            ]
        end = time.perf_counter()
        times.preprocess_ms = (after_pre - start) * 1e3
        times.inference_ms = (after_infer - after_pre) * 1e3
        times.postprocess_ms = (end - after_infer) * 1e3
        self.last_times = times
        return results

    def _preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        from ultralytics.data.augment import LetterBox

        imgsz = self.settings.imgsz
        # The smallest stride-aligned padding only when every frame pads to the same shape.
        auto = self.loaded.dynamic_shapes and len({image.shape for image in images}) == 1
        letterbox = self._letterboxes.get((imgsz, auto))
        if letterbox is None:
            letterbox = LetterBox((imgsz, imgsz), auto=auto, stride=self.loaded.stride)
            self._letterboxes[(imgsz, auto)] = letterbox
        boxed = np.stack([letterbox(image=image) for image in images])
        tensor = torch.from_numpy(boxed).to(self.loaded.device)
        tensor = tensor.permute(0, 3, 1, 2).flip(1).contiguous()
        tensor = tensor.half() if self.loaded.half else tensor.float()
        return tensor.div_(255)

    def _infer(self, tensor: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        from ultralytics.utils.nms import non_max_suppression

        preds = self.loaded.backend(tensor)
        protos = preds[0][1] if isinstance(preds[0], tuple) else preds[1]
        if isinstance(protos, tuple):
            protos = protos[-1]
        detections = non_max_suppression(
            preds[0] if isinstance(preds, (list, tuple)) else preds,
            self.settings.nms_conf,
            self.settings.iou,
            max_det=self.settings.max_det,
            nc=len(self.class_names),
            end2end=getattr(self.loaded.backend, "end2end", False),
        )
        return detections, protos

    def _postprocess(
        self,
        detections: torch.Tensor,
        protos: torch.Tensor,
        input_shape: tuple[int, int],
        source_shape: tuple[int, int],
    ) -> list[Instance]:
        from ultralytics.utils.ops import scale_boxes

        if detections.shape[0] == 0:
            return []
        boxes = scale_boxes(input_shape, detections[:, :4].clone(), source_shape)
        logits = decode_prototype_logits(protos, detections[:, 6:])
        sample_scale = 1.0 if self.settings.retina_masks else min(1.0, max(input_shape) / max(source_shape))
        crops = crop_masks_at_source(logits, boxes, input_shape, source_shape, sample_scale)
        boxes_list = boxes.tolist()
        scores = detections[:, 4].tolist()
        classes = detections[:, 5].int().tolist()
        instances = []
        for box, score, class_id, (offset, mask) in zip(boxes_list, scores, classes, crops, strict=True):
            if not mask.any():
                continue
            instances.append(
                Instance(
                    box=tuple(box),
                    score=score,
                    class_id=class_id,
                    class_name=self.class_names.get(class_id, ""),
                    mask_offset=offset,
                    mask=mask,
                )
            )
        return instances


def candidate_rows(detections: torch.Tensor, input_shape: tuple[int, int], source_shape: tuple[int, int]):
    """(K, 6) float32 rows x1, y1, x2, y2, score, class_id at source resolution."""
    from ultralytics.utils.ops import scale_boxes

    if detections.shape[0] == 0:
        return np.zeros((0, 6), dtype=np.float32)
    boxes = scale_boxes(input_shape, detections[:, :4].clone(), source_shape)
    return torch.cat([boxes, detections[:, 4:6]], dim=1).float().cpu().numpy()


def decode_prototype_logits(protos: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """(N, mh, mw) mask logits at prototype resolution: the YOLACT linear combination."""
    channels, mh, mw = protos.shape
    return (coefficients.float() @ protos.float().view(channels, -1)).view(-1, mh, mw)


def crop_masks_at_source(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    input_shape: tuple[int, int],
    source_shape: tuple[int, int],
    sample_scale: float = 1.0,
) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Binary masks at source resolution, computed only inside each box.

    A source pixel centre is mapped through the letterbox into prototype coordinates
    and the logits are sampled bilinearly there (edges clamped), in one affine warp
    per instance. Pixel columns c with x1 <= c < x2 belong to the box, the same rule
    ultralytics' ``crop_mask`` applies. With sample_scale < 1 the logits are sampled
    on a coarser grid and scaled up by nearest neighbour.
    """
    _, mh, mw = logits.shape
    in_h, in_w = input_shape
    height, width = source_shape
    gain = min(in_h / height, in_w / width)
    left = round((in_w - width * gain) / 2 - 0.1)
    top = round((in_h - height * gain) / 2 - 0.1)
    # Prototype pixels per source pixel, and the prototype coordinate of source pixel 0.
    step_x = (in_w - 2 * left) / width * mw / in_w
    step_y = (in_h - 2 * top) / height * mh / in_h
    origin_x = (0.5 * (in_w - 2 * left) / width + left) * mw / in_w - 0.5
    origin_y = (0.5 * (in_h - 2 * top) / height + top) * mh / in_h - 0.5
    planes = logits.float().cpu().numpy()
    crops = []
    for plane, (x1, y1, x2, y2) in zip(planes, boxes.tolist(), strict=True):
        c1, c2 = _pixel_span(x1, x2, width)
        r1, r2 = _pixel_span(y1, y2, height)
        if c1 >= c2 or r1 >= r2:
            crops.append(((c1, r1), np.zeros((0, 0), dtype=bool)))
            continue
        cols, rows = c2 - c1, r2 - r1
        out_cols, out_rows = max(1, math.ceil(cols * sample_scale)), max(1, math.ceil(rows * sample_scale))
        sx, sy = step_x * cols / out_cols, step_y * rows / out_rows
        # Output pixel j samples prototype coordinate origin + step * (c1 + (j + 0.5) * cols / out_cols - 0.5).
        tx = origin_x + step_x * (c1 + 0.5 * cols / out_cols - 0.5)
        ty = origin_y + step_y * (r1 + 0.5 * rows / out_rows - 0.5)
        sampled = cv2.warpAffine(
            plane,
            np.array([[sx, 0.0, tx], [0.0, sy, ty]]),
            (out_cols, out_rows),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        mask = sampled > 0
        if (out_rows, out_cols) != (rows, cols):
            mask = cv2.resize(mask.view(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST).view(bool)
        crops.append(((c1, r1), mask))
    return crops


def _pixel_span(low: float, high: float, limit: int) -> tuple[int, int]:
    """Integer pixels p with low <= p < high, clipped to [0, limit)."""
    return max(math.ceil(low), 0), min(math.ceil(high), limit)
