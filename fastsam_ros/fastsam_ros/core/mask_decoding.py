"""Binary masks at source resolution from the network's prototypes, computed only inside each box.

The sampling rule: a source pixel centre is mapped through the letterbox into prototype
coordinates and the mask logits are sampled bilinearly there (edges clamped); pixel columns
c with x1 <= c < x2 belong to the box (rows likewise), the rule ultralytics' ``crop_mask``
applies. With sample_scale < 1 the logits are sampled on a coarser grid and scaled up by
nearest neighbour.

Two implementations of that one rule:
- ``crop_masks_warp``: one OpenCV affine warp per instance. On the CPU this is the fastest
  (0.4-0.9 ms per frame here against 20-80 ms for the torch path's gathers over padded
  crops; README, "Device paths"), so the engine uses it there.
- ``crop_masks_batched``: all instances at once with torch on the tensors' device, in one
  separable bilinear pass over crops padded to a common size, and one packed copy of every
  crop's pixels to the host. On a GPU this replaces N warps and N transfers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from fastsam_ros.core.letterbox import LetterboxGeometry

Crop = tuple[tuple[int, int], np.ndarray]
"""(column, row) of a crop's top-left source pixel, and its boolean (rows, cols) mask."""

PADDED_ELEMENTS_PER_CHUNK = 1 << 24
"""Bound on instances x padded rows x padded columns decoded at once (64 MiB of float32)."""


@dataclass(frozen=True)
class PrototypeSampling:
    """Prototype coordinate of source pixel 0 and prototype pixels per source pixel, per axis."""

    origin_x: float
    origin_y: float
    step_x: float
    step_y: float


def prototype_sampling(geometry: LetterboxGeometry, proto_shape: tuple[int, int]) -> PrototypeSampling:
    """Source pixel centres in the prototype grid, through the letterbox's own resized size and
    padding: with odd padding the frame spans one pixel less than the input minus twice the left."""
    mh, mw = proto_shape
    in_h, in_w = geometry.input_shape
    height, width = geometry.source_shape
    resized_h, resized_w = geometry.resized_shape
    step_x = resized_w / width * mw / in_w
    step_y = resized_h / height * mh / in_h
    return PrototypeSampling(
        origin_x=geometry.left * mw / in_w + 0.5 * step_x - 0.5,
        origin_y=geometry.top * mh / in_h + 0.5 * step_y - 0.5,
        step_x=step_x,
        step_y=step_y,
    )


def decode_prototype_logits(protos: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """(N, mh, mw) mask logits at prototype resolution: the YOLACT linear combination."""
    channels, mh, mw = protos.shape
    return (coefficients.float() @ protos.float().view(channels, -1)).view(-1, mh, mw)


def pixel_spans(boxes: np.ndarray, source_shape: tuple[int, int]) -> np.ndarray:
    """(N, 4) int64 c1, r1, c2, r2: pixels p with low <= p < high per axis, clipped to the frame."""
    height, width = source_shape
    spans = np.ceil(np.asarray(boxes, dtype=np.float64)).astype(np.int64)
    spans[:, :2] = np.maximum(spans[:, :2], 0)
    spans[:, 2] = np.minimum(spans[:, 2], width)
    spans[:, 3] = np.minimum(spans[:, 3], height)
    return spans


def _sample_sizes(spans: np.ndarray, sample_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(cols, rows) of each instance's box and of the grid its logits are sampled on."""
    sizes = np.maximum(spans[:, 2:] - spans[:, :2], 0)
    if sample_scale == 1.0:
        return sizes, sizes
    sampled = np.array([[max(1, math.ceil(n * sample_scale)) for n in pair] for pair in sizes.tolist()], np.int64)
    return sizes, sampled.reshape(sizes.shape)


def _expand(mask: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """A coarse mask scaled up to the box by nearest neighbour."""
    if mask.shape == (rows, cols):
        return mask
    return cv2.resize(mask.view(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST).view(bool)


def crop_masks_warp(
    logits: torch.Tensor, spans: np.ndarray, sampling: PrototypeSampling, sample_scale: float
) -> list[Crop]:
    """The masks of (N, mh, mw) logits inside their boxes, one OpenCV warp per instance."""
    sizes, sampled = _sample_sizes(spans, sample_scale)
    planes = logits.float().cpu().numpy()
    crops = []
    for plane, (c1, r1), (cols, rows), (out_cols, out_rows) in zip(
        planes, spans[:, :2].tolist(), sizes.tolist(), sampled.tolist(), strict=True
    ):
        if cols == 0 or rows == 0:
            crops.append(((c1, r1), np.zeros((0, 0), dtype=bool)))
            continue
        sx, sy = sampling.step_x * cols / out_cols, sampling.step_y * rows / out_rows
        # Output pixel j samples prototype coordinate origin + step * (c1 + (j + 0.5) * cols / out_cols - 0.5).
        tx = sampling.origin_x + sampling.step_x * (c1 + 0.5 * cols / out_cols - 0.5)
        ty = sampling.origin_y + sampling.step_y * (r1 + 0.5 * rows / out_rows - 0.5)
        sampled_logits = cv2.warpAffine(
            plane,
            np.array([[sx, 0.0, tx], [0.0, sy, ty]]),
            (out_cols, out_rows),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        crops.append(((c1, r1), _expand(sampled_logits > 0, cols, rows)))
    return crops


def crop_masks_batched(
    logits: torch.Tensor, spans: np.ndarray, sampling: PrototypeSampling, sample_scale: float
) -> list[Crop]:
    """The masks of (N, mh, mw) logits inside their boxes, all instances at once on logits' device.

    Instances are sorted by crop size and decoded in chunks padded to the chunk's largest
    crop, so one big object does not pad many small ones; each chunk's valid pixels come to
    the host in one packed copy.
    """
    sizes, sampled = _sample_sizes(spans, sample_scale)
    crops: list[Crop] = [((int(c1), int(r1)), np.zeros((0, 0), dtype=bool)) for c1, r1 in spans[:, :2].tolist()]
    areas = sampled[:, 0] * sampled[:, 1] * (sizes.min(1) > 0)
    order = [int(i) for i in np.argsort(areas, kind="stable") if areas[i] > 0]
    device = logits.device
    start = 0
    while start < len(order):
        stop = start + 1
        padded_cols, padded_rows = (int(n) for n in sampled[order[start]])
        while stop < len(order):
            # The chunk is padded to its widest and its tallest crop, which may be two crops.
            cols, rows = max(padded_cols, int(sampled[order[stop], 0])), max(padded_rows, int(sampled[order[stop], 1]))
            if (stop + 1 - start) * cols * rows > PADDED_ELEMENTS_PER_CHUNK:
                break
            padded_cols, padded_rows = cols, rows
            stop += 1
        chunk = order[start:stop]
        chunk_logits = logits[torch.tensor(chunk, device=device)]
        masks = _sample_chunk(chunk_logits, spans[chunk], sizes[chunk], sampled[chunk], sampling)
        for index, mask in zip(chunk, masks, strict=True):
            cols, rows = sizes[index]
            crops[index] = (crops[index][0], _expand(mask, int(cols), int(rows)))
        start = stop
    return crops


def _sample_chunk(
    logits: torch.Tensor, spans: np.ndarray, sizes: np.ndarray, sampled: np.ndarray, sampling: PrototypeSampling
) -> list[np.ndarray]:
    """Bilinear samples > 0 of each instance's grid, as host boolean (out_rows, out_cols) arrays."""
    device = logits.device
    count, mh, mw = logits.shape
    out_cols, out_rows = sampled[:, 0], sampled[:, 1]
    max_cols, max_rows = int(out_cols.max()), int(out_rows.max())
    # Output pixel j samples origin + step * (c1 + (j + 0.5) * cols / out_cols - 0.5), as in the warp.
    col_step = sampling.step_x * sizes[:, 0] / out_cols
    row_step = sampling.step_y * sizes[:, 1] / out_rows
    col_start = sampling.origin_x + sampling.step_x * (spans[:, 0] + 0.5 * sizes[:, 0] / out_cols - 0.5)
    row_start = sampling.origin_y + sampling.step_y * (spans[:, 1] + 0.5 * sizes[:, 1] / out_rows - 0.5)
    x = _grid(col_start, col_step, max_cols, device)
    y = _grid(row_start, row_step, max_rows, device)
    x0, x1, wx = _taps(x, mw)
    y0, y1, wy = _taps(y, mh)
    # Horizontal pass over every prototype row, then the vertical pass over the needed rows.
    rows_x0 = logits.gather(2, x0.unsqueeze(1).expand(count, mh, max_cols))
    rows_x1 = logits.gather(2, x1.unsqueeze(1).expand(count, mh, max_cols))
    horizontal = torch.lerp(rows_x0, rows_x1, wx.unsqueeze(1))
    top = horizontal.gather(1, y0.unsqueeze(2).expand(count, max_rows, max_cols))
    bottom = horizontal.gather(1, y1.unsqueeze(2).expand(count, max_rows, max_cols))
    inside = torch.lerp(top, bottom, wy.unsqueeze(2)) > 0
    if device.type == "cpu":
        padded = inside.numpy()
        return [padded[i, :rows, :cols] for i, (cols, rows) in enumerate(sampled.tolist())]
    return packed_to_host(inside, sampled)


def packed_to_host(padded: torch.Tensor, sizes: np.ndarray) -> list[np.ndarray]:
    """The top-left (rows, cols) of each of the (N, rows, cols) padded masks on the host, sizes being
    (N, 2) cols, rows; from one copy of their valid pixels only: on a GPU a copy per mask, or of the
    padding, costs more."""
    device = padded.device
    max_rows, max_cols = padded.shape[1:]
    cols, rows = (torch.as_tensor(sizes[:, axis], device=device) for axis in (0, 1))
    valid = (torch.arange(max_rows, device=device)[None, :, None] < rows[:, None, None]) & (
        torch.arange(max_cols, device=device)[None, None, :] < cols[:, None, None]
    )
    packed = padded[valid].cpu().numpy()
    bounds = np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]
    return [part.reshape(r, c) for part, (c, r) in zip(np.split(packed, bounds), sizes.tolist(), strict=True)]


def _grid(start: np.ndarray, step: np.ndarray, length: int, device: torch.device) -> torch.Tensor:
    """(N, length) float32 sample coordinates start + step * j."""
    start_t = torch.as_tensor(start, dtype=torch.float64, device=device)
    step_t = torch.as_tensor(step, dtype=torch.float64, device=device)
    return (start_t[:, None] + step_t[:, None] * torch.arange(length, device=device, dtype=torch.float64)).float()


def _taps(coordinate: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two clamped neighbour indices of each coordinate and the weight of the second."""
    floor = coordinate.floor()
    low = floor.long()
    return low.clamp(0, size - 1), (low + 1).clamp(0, size - 1), coordinate - floor
