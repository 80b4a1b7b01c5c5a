"""Run-length encoding of box-cropped masks, the wire format of Instance.msg.

A mask crop of a big object (a bus filling the frame) costs as many bytes as pixels in
mono8, so the message would grow with the objects' areas. Runs grow with their outlines
instead: a smooth blob needs about two runs per row. Row-major order (unlike COCO's
column-major RLE) matches how images are laid out, so a consumer decodes a row at a time.
"""

from __future__ import annotations

import numpy as np


class MaskEncodingError(ValueError):
    """Runs that do not describe a crop of the stated size."""


def encode_runs(mask: np.ndarray) -> np.ndarray:
    """uint32 run lengths of a boolean (rows, cols) mask, row-major.

    Runs alternate background and object and start with background, so the first run
    is 0 when the first pixel is object. An empty crop has no runs.
    """
    flat = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    if flat.size == 0:
        return np.zeros(0, dtype=np.uint32)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.uint32)


def decode_runs(runs: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The boolean (rows, cols) mask that encode_runs turned into runs."""
    runs = np.asarray(runs, dtype=np.int64)
    total = int(runs.sum())
    if total != rows * cols:
        raise MaskEncodingError(f"runs cover {total} pixels, the {cols}x{rows} crop has {rows * cols}")
    values = np.zeros(runs.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, runs).reshape(rows, cols)
