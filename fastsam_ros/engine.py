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
        self._letterboxes: dict[int, object] = {}

    @property
    def class_names(self) -> dict[int, str]:
        return self.loaded.class_names

    def segment(self, image: np.ndarray, stamp_ns: int = 0, frame_id: str = "") -> MaskSet:
        """Segment every object in an (H, W, 3) uint8 BGR image."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            raise ValueError("image has zero size")
        times = StageTimes()
        start = time.perf_counter()
        tensor = self._preprocess(image)
        after_pre = time.perf_counter()
        with torch.inference_mode():
            detections, protos = self._infer(tensor)
            if self.loaded.device.type == "cuda":
                torch.cuda.synchronize(self.loaded.device)
            after_infer = time.perf_counter()
            instances = self._postprocess(detections, protos, tuple(tensor.shape[2:]), (height, width))
        end = time.perf_counter()
        times.preprocess_ms = (after_pre - start) * 1e3
        times.inference_ms = (after_infer - after_pre) * 1e3
        times.postprocess_ms = (end - after_infer) * 1e3
        self.last_times = times
        return MaskSet(
            height=height,
            width=width,
            instances=tuple(instances),
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            class_names=self.class_names,
        )

    def _preprocess(self, image: np.ndarray) -> torch.Tensor:
        from ultralytics.data.augment import LetterBox

        imgsz = self.settings.imgsz
        letterbox = self._letterboxes.get(imgsz)
        if letterbox is None:
            letterbox = LetterBox((imgsz, imgsz), auto=self.loaded.dynamic_shapes, stride=self.loaded.stride)
            self._letterboxes[imgsz] = letterbox
        boxed = letterbox(image=image)
        tensor = torch.from_numpy(boxed).to(self.loaded.device)
        tensor = tensor.permute(2, 0, 1).flip(0).unsqueeze(0).contiguous()
        tensor = tensor.half() if self.loaded.half else tensor.float()
        return tensor.div_(255)

    def _infer(self, tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from ultralytics.utils.nms import non_max_suppression

        preds = self.loaded.backend(tensor)
        protos = preds[0][1] if isinstance(preds[0], tuple) else preds[1]
        if isinstance(protos, tuple):
            protos = protos[-1]
        detections = non_max_suppression(
            preds[0] if isinstance(preds, (list, tuple)) else preds,
            self.settings.conf,
            self.settings.iou,
            max_det=self.settings.max_det,
            nc=len(self.class_names),
            end2end=getattr(self.loaded.backend, "end2end", False),
        )[0]
        return detections, protos[0]

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
    and the logits are sampled bilinearly there (align_corners=False, edges clamped,
    as torch's interpolate does). Pixel columns c with x1 <= c < x2 belong to the box,
    the same rule ultralytics' ``crop_mask`` applies. With sample_scale < 1 the logits
    are sampled on a coarser grid and scaled up by nearest neighbour.
    """
    _, mh, mw = logits.shape
    in_h, in_w = input_shape
    height, width = source_shape
    gain = min(in_h / height, in_w / width)
    left = round((in_w - width * gain) / 2 - 0.1)
    top = round((in_h - height * gain) / 2 - 0.1)
    content_w = in_w - 2 * left
    content_h = in_h - 2 * top
    proto_per_input_x = mw / in_w
    proto_per_input_y = mh / in_h
    device = logits.device
    crops = []
    for index, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        c1, c2 = _pixel_span(x1, x2, width)
        r1, r2 = _pixel_span(y1, y2, height)
        if c1 >= c2 or r1 >= r2:
            crops.append(((c1, r1), np.zeros((0, 0), dtype=bool)))
            continue
        cols = _sample_positions(c1, c2, sample_scale, device)
        rows = _sample_positions(r1, r2, sample_scale, device)
        u = ((cols + 0.5) * (content_w / width) + left) * proto_per_input_x - 0.5
        v = ((rows + 0.5) * (content_h / height) + top) * proto_per_input_y - 0.5
        u0, u1, wu = _bilinear_taps(u, mw)
        v0, v1, wv = _bilinear_taps(v, mh)
        plane = logits[index]
        along_rows = plane[v0] * (1 - wv)[:, None] + plane[v1] * wv[:, None]
        sampled = along_rows[:, u0] * (1 - wu) + along_rows[:, u1] * wu
        mask = (sampled > 0).cpu().numpy()
        if mask.shape != (r2 - r1, c2 - c1):
            mask = mask[_nearest_index(r2 - r1, mask.shape[0])][:, _nearest_index(c2 - c1, mask.shape[1])]
        crops.append(((c1, r1), mask))
    return crops


def _pixel_span(low: float, high: float, limit: int) -> tuple[int, int]:
    """Integer pixels p with low <= p < high, clipped to [0, limit)."""
    return max(math.ceil(low), 0), min(math.ceil(high), limit)


def _sample_positions(start: int, stop: int, scale: float, device: torch.device) -> torch.Tensor:
    """Source coordinates (minus the half-pixel) of the grid the logits are sampled on."""
    count = stop - start
    samples = max(1, math.ceil(count * scale))
    if samples == count:
        return torch.arange(start, stop, device=device, dtype=torch.float32)
    centres = (torch.arange(samples, device=device, dtype=torch.float32) + 0.5) * (count / samples)
    return start + centres - 0.5


def _nearest_index(size: int, samples: int) -> np.ndarray:
    return ((np.arange(size) + 0.5) * (samples / size)).astype(np.intp)


def _bilinear_taps(coords: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    coords = coords.clamp(min=0)
    lower = coords.floor()
    weight = coords - lower
    lower = lower.long().clamp(max=size - 1)
    upper = (lower + 1).clamp(max=size - 1)
    return lower, upper, weight
