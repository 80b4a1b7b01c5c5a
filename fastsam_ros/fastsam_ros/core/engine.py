"""Stage 1 of FastSAM: all-instance segmentation of frames into MaskSets.

The engine drives the ultralytics network directly instead of going through
``Model.predict``: no Results objects, no full-frame mask planes. Boxes come from
ultralytics' letterbox geometry and NMS arithmetic, so they equal raw ultralytics exactly;
masks are decoded from the prototypes only inside each box, at source resolution, in a
single bilinear step (ultralytics upsamples every mask to the network input and then again
to the source size).

Each stage runs where it is fastest for the device (see letterbox.py and mask_decoding.py):
on the CPU, OpenCV letterboxes and warps masks; on a GPU the uint8 frames are uploaded once
and everything up to the packed mask crops stays on the device, with the forward pass
replayed as a CUDA graph.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fastsam_ros.core.backends.cuda_graphs import GraphedForward, graphs_wanted
from fastsam_ros.core.backends.model_loading import LoadedModel
from fastsam_ros.core.detection_nms import select_detections, select_end_to_end
from fastsam_ros.core.letterbox import LetterboxGeometry, letterbox_cpu, letterbox_geometry, letterbox_torch
from fastsam_ros.core.mask_decoding import (
    crop_masks_batched,
    crop_masks_warp,
    decode_prototype_logits,
    pixel_spans,
    prototype_sampling,
)
from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.parameters import default_of

PIPELINES = ("auto", "opencv", "torch")
"""Where pre- and postprocessing run: auto picks per device (OpenCV on the CPU, torch elsewhere);
torch on the CPU runs the device path there, for tests and benchmarks."""
ANCHOR_STRIDES = (8, 16, 32)
"""The detection levels of YOLO segmentation heads (P3-P5; P2 and P6 variants have more anchors, not fewer)."""
DEFAULT_WARM_UP_SHAPES = ((720, 1280),)
"""Frame (height, width) sizes whose CUDA graphs warm_up captures when the caller names none."""


@dataclass(frozen=True)
class EngineSettings:
    """Inference settings that may change between frames without reloading weights."""

    imgsz: int = default_of("imgsz")
    conf: float = default_of("conf")
    iou: float = default_of("iou")
    max_det: int = default_of("max_det")
    retina_masks: bool = default_of("retina_masks")
    cuda_graphs: str = default_of("cuda_graphs")
    """auto/on: replay the forward pass as CUDA graphs (torch runtime on CUDA only); off: eager."""
    candidate_conf: float = 0.1
    """Detections scored in [candidate_conf, conf) are kept aside, with their masks: ByteTrack
    and BoT-SORT match them to existing tracks in a second stage (ultralytics' ``track()``
    predicts at 0.1 for the same reason), so a track survives a frame where its object's
    score dips. Instances scored at least ``conf`` are published, and those candidates a track matched."""

    @property
    def nms_conf(self) -> float:
        return min(self.conf, self.candidate_conf)


@dataclass
class StageTimes:
    """Wall milliseconds of the last batch's stages, for diagnostics and benchmarks.

    On a GPU each stage ends with a device synchronisation, so the times are the stages' own.
    """

    preprocess_ms: float = 0.0
    forward_ms: float = 0.0
    nms_ms: float = 0.0
    mask_decode_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.forward_ms + self.nms_ms + self.mask_decode_ms


class SegmentationEngine:
    """Runs a loaded segmentation network on frames and returns MaskSets.

    Not thread-safe: one thread segments (CUDA graph outputs are reused between calls).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        settings: EngineSettings | None = None,
        log: Callable[[str], None] | None = None,
        pipeline: str = "auto",
    ) -> None:
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline '{pipeline}' is not one of {', '.join(PIPELINES)}")
        self.loaded = loaded
        self.settings = settings or EngineSettings()
        self.last_times = StageTimes()
        self._log = log or logging.getLogger(__name__).warning
        self._on_device = pipeline == "torch" or (pipeline == "auto" and loaded.device.type != "cpu")
        self._graphed: GraphedForward | None = None
        self._graph_mode_logged = ""
        self._staging: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    @property
    def class_names(self) -> dict[int, str]:
        return self.loaded.class_names

    def segment(self, image: np.ndarray, stamp_ns: int = 0, frame_id: str = "") -> MaskSet:
        """Segment every object in an (H, W, 3) uint8 BGR image."""
        return self.segment_batch([image], [stamp_ns], [frame_id])[0]

    def follow_load(self, queued: bool) -> None:
        """Tell a network whose thread count follows the load (OpenVINO's) whether frames queue."""
        self.loaded.backend.follow_load(queued)

    @property
    def inference_threads(self) -> int | None:
        """The network's thread count now, where it has one (OpenVINO's; 0: its own choice)."""
        return self.loaded.backend.inference_threads

    def release(self) -> None:
        """Free the network, its captured graphs and staging buffers, and hand the GPU memory
        they held back to the device; the engine is not used afterwards."""
        self.loaded.backend.release()
        self._graphed = None
        self._staging.clear()
        gc.collect()
        if self.loaded.device.type == "cuda":
            torch.cuda.empty_cache()

    def warm_up(self, frame_shapes: Sequence[tuple[int, int]] | None = None, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run each (batch size, frame height and width) once on blank frames, so first frames are not slow.

        With CUDA graphs this captures their graphs; frame_shapes None then means a 720p
        camera. Without graphs only lazy initialisation happens, which no shape changes, so
        None means one small frame.
        """
        if frame_shapes is None:
            graphs = isinstance(self._forward_for(self.settings), GraphedForward)
            frame_shapes = DEFAULT_WARM_UP_SHAPES if graphs else ((64, 64),)
        for batch_size in batch_sizes:
            for height, width in frame_shapes:
                self.segment_batch([np.zeros((height, width, 3), np.uint8)] * batch_size)

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
        settings = self.settings
        stamps_ns = stamps_ns or [0] * len(images)
        frame_ids = frame_ids or [""] * len(images)
        forward = self._forward_for(settings)
        marks = [time.perf_counter()]
        with torch.inference_mode():
            geometries, batch = self._preprocess(images, settings, forward)
            marks.append(self._synchronized())
            prediction, protos = forward(batch)
            marks.append(self._synchronized())
            detections = self._detections(prediction, settings)
            marks.append(self._synchronized())
            results = [
                MaskSet(
                    height=geometry.source_shape[0],
                    width=geometry.source_shape[1],
                    instances=tuple(self._instances(dets[~low], proto, geometry, settings)),
                    stamp_ns=stamp_ns,
                    frame_id=frame_id,
                    class_names=self.class_names,
                    candidates=tuple(self._instances(dets[low], proto, geometry, settings)),
                    conf=settings.conf,
                )
                for geometry, dets, proto, stamp_ns, frame_id, low in zip(
                    geometries,
                    detections,
                    protos,
                    stamps_ns,
                    frame_ids,
                    (dets[:, 4] < settings.conf for dets in detections),
                    strict=True,
                )
            ]
            marks.append(time.perf_counter())
        stages = [(end - start) * 1e3 for start, end in itertools.pairwise(marks)]
        self.last_times = StageTimes(*stages)
        return results

    def _synchronized(self) -> float:
        if self.loaded.device.type == "cuda":
            torch.cuda.synchronize(self.loaded.device)
        return time.perf_counter()

    def _forward_for(self, settings: EngineSettings) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        use_graphs, reason = graphs_wanted(settings.cuda_graphs, self.loaded.device, self.loaded.runtime)
        if reason and reason != self._graph_mode_logged:
            self._log(reason)
        self._graph_mode_logged = reason
        if not use_graphs:
            return self._network
        if self._graphed is None:
            self._graphed = GraphedForward(self._network, self.loaded.backend.forget_shape_caches, self._log)
        return self._graphed

    def _network(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, 4 + classes + 32, anchors) predictions, or an NMS-free head's (batch, k, 6 + 32) detections,
        and (batch, 32, mh, mw) prototypes."""
        return split_network_outputs(self.loaded.backend(batch))

    def _detections(self, prediction: torch.Tensor, settings: EngineSettings) -> list[torch.Tensor]:
        if self.loaded.backend.end2end:
            return select_end_to_end(prediction, settings.nms_conf, settings.max_det)
        return select_detections(prediction, settings.nms_conf, settings.iou, settings.max_det, len(self.class_names))

    def _preprocess(
        self, images: list[np.ndarray], settings: EngineSettings, forward: Callable
    ) -> tuple[list[LetterboxGeometry], torch.Tensor]:
        geometries = self._geometries(images, settings.imgsz)
        dtype = torch.float16 if self.loaded.half else torch.float32
        if not self._on_device:
            # OpenCV's uint8 resize is the fastest letterbox on the CPU.
            boxed = np.stack(
                [letterbox_cpu(image, geometry) for image, geometry in zip(images, geometries, strict=True)]
            )
            # BGR to RGB, HWC to CHW and scaling in one NumPy pass on this thread: torch would hand
            # this small op to its thread pool, whose hand-off costs more than the work on a busy CPU.
            batch = np.empty((len(images), 3, *boxed.shape[1:3]), np.float32)
            np.divide(boxed[..., ::-1].transpose(0, 3, 1, 2), np.float32(255), out=batch)
            return geometries, torch.from_numpy(batch).to(self.loaded.device, dtype)
        shape = (len(images), 3, *geometries[0].input_shape)
        if isinstance(forward, GraphedForward):
            batch = forward.input_buffer(shape, dtype, self.loaded.device)
        else:
            batch = torch.empty(shape, dtype=dtype, device=self.loaded.device)
        for slot, (image, geometry) in enumerate(zip(images, geometries, strict=True)):
            letterbox_torch(self._upload(slot, image), geometry, batch[slot])
        return geometries, batch

    def _geometries(self, images: list[np.ndarray], imgsz: int) -> list[LetterboxGeometry]:
        """The smallest stride-aligned padding when every frame pads to the same shape, unless that input gives
        an exported NMS-free head fewer anchors than the detections it picks: then the square input."""
        auto = self.loaded.dynamic_shapes and len({image.shape for image in images}) == 1
        geometries = [letterbox_geometry(image.shape[:2], imgsz, auto, self.loaded.stride) for image in images]
        if auto and anchor_count(geometries[0].input_shape) < self.loaded.min_anchors:
            return [letterbox_geometry(image.shape[:2], imgsz, False, self.loaded.stride) for image in images]
        return geometries

    def _upload(self, slot: int, image: np.ndarray) -> torch.Tensor:
        """The uint8 frame on the device, copied through a reused pinned buffer without blocking."""
        if self.loaded.device.type == "cpu":
            return torch.from_numpy(image)
        key = (slot, image.shape)
        staging = self._staging.get(key)
        if staging is None:
            staging = torch.empty(image.shape, dtype=torch.uint8, pin_memory=self.loaded.device.type == "cuda")
            self._staging[key] = staging
        staging.numpy()[...] = image
        return staging.to(self.loaded.device, non_blocking=True)

    def _instances(
        self, detections: torch.Tensor, protos: torch.Tensor, geometry: LetterboxGeometry, settings: EngineSettings
    ) -> list[Instance]:
        from ultralytics.utils.ops import scale_boxes

        if detections.shape[0] == 0:
            return []
        boxes = scale_boxes(geometry.input_shape, detections[:, :4].float().clone(), geometry.source_shape)
        summary = torch.cat((boxes, detections[:, 4:6].float()), 1).cpu().numpy()
        spans = pixel_spans(summary[:, :4], geometry.source_shape)
        logits = decode_prototype_logits(protos, detections[:, 6:])
        sampling = prototype_sampling(geometry, tuple(protos.shape[1:]))
        in_h, in_w = geometry.input_shape
        height, width = geometry.source_shape
        sample_scale = 1.0 if settings.retina_masks else min(1.0, max(in_h, in_w) / max(height, width))
        # Per-instance OpenCV warps are the fastest decode on the CPU; on a device, all at once.
        decode = crop_masks_batched if self._on_device else crop_masks_warp
        crops = decode(logits, spans, sampling, sample_scale)
        instances = []
        for (x1, y1, x2, y2, score, class_value), (offset, mask) in zip(summary.tolist(), crops, strict=True):
            if not mask.any():
                continue
            class_id = int(class_value)
            instances.append(
                Instance(
                    box=(x1, y1, x2, y2),
                    score=score,
                    class_id=class_id,
                    class_name=self.class_names.get(class_id, ""),
                    mask_offset=offset,
                    mask=mask,
                )
            )
        return instances


def anchor_count(input_shape: tuple[int, int], strides: Sequence[int] = ANCHOR_STRIDES) -> int:
    """Anchors a detection head has on an input of this (height, width): one per cell of each level."""
    height, width = input_shape
    return sum((height // stride) * (width // stride) for stride in strides)


def split_network_outputs(preds: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions and prototypes out of the nested outputs AutoBackend or ONNX Runtime return."""
    protos = preds[0][1] if isinstance(preds[0], tuple) else preds[1]
    if isinstance(protos, tuple):
        protos = protos[-1]
    prediction = preds[0]
    if isinstance(prediction, (list, tuple)):
        prediction = prediction[0]
    return prediction, protos
