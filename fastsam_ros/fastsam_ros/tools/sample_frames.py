"""Real camera-like frame sequences made from the photos ultralytics ships.

Robots see a scene drift across the frame; panning a window over a real photo gives
that motion with real content, offline, for the demo, tests and benchmarks.
"""

from __future__ import annotations

import cv2
import numpy as np


def asset_image(name: str) -> np.ndarray:
    """A BGR photo shipped with ultralytics: 'bus.jpg' (810x1080) or 'zidane.jpg' (1280x720)."""
    from ultralytics.utils import ASSETS

    image = cv2.imread(str(ASSETS / name), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"ultralytics asset '{name}' not found in {ASSETS}")
    return image


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The photo scaled to fill width x height, centre-cropped to keep its aspect ratio."""
    scale = max(width / image.shape[1], height / image.shape[0])
    scaled = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    top = (scaled.shape[0] - height) // 2
    left = (scaled.shape[1] - width) // 2
    return np.ascontiguousarray(scaled[top : top + height, left : left + width])


def pan_offsets(photo_shape: tuple[int, ...], width: int, height: int, frames: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of windows sliding diagonally across a photo."""
    if width > photo_shape[1] or height > photo_shape[0]:
        raise ValueError(f"window {width}x{height} is larger than the {photo_shape[1]}x{photo_shape[0]} photo")
    span_x, span_y = photo_shape[1] - width, photo_shape[0] - height
    steps = max(frames - 1, 1)
    return [(i * span_x // steps, i * span_y // steps) for i in range(frames)]


def panned(image: np.ndarray, width: int, height: int, frames: int) -> list[np.ndarray]:
    """Windows of width x height sliding diagonally across the photo, one per frame."""
    return [
        np.ascontiguousarray(image[y : y + height, x : x + width])
        for x, y in pan_offsets(image.shape, width, height, frames)
    ]


def demo_sequence() -> list[tuple[str, np.ndarray]]:
    """Twelve frames: a pan down the bus street scene, then one across the football scene."""
    bus = panned(asset_image("bus.jpg"), 640, 800, 6)
    zidane = panned(asset_image("zidane.jpg"), 960, 600, 6)
    return [("bus.jpg", frame) for frame in bus] + [("zidane.jpg", frame) for frame in zidane]


def camera_frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Frames of one resolution: pans over both photos, scaled a little larger than the frame."""
    frames = []
    for name in ("bus.jpg", "zidane.jpg"):
        photo = resized(asset_image(name), round(width * 1.25), round(height * 1.25))
        frames += panned(photo, width, height, (count + 1) // 2)
    return frames[:count]


def mosaic(columns: int, rows: int, width: int, height: int) -> np.ndarray:
    """A crowded frame: the two photos tiled alternately, for prompts over many instances."""
    tile_w, tile_h = width // columns, height // rows
    photos = [resized(asset_image(name), tile_w, tile_h) for name in ("bus.jpg", "zidane.jpg")]
    grid = [np.hstack([photos[(r + c) % 2] for c in range(columns)]) for r in range(rows)]
    return np.ascontiguousarray(resized(np.vstack(grid), width, height))
