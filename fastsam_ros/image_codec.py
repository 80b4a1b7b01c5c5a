"""Turning camera buffers into BGR arrays, with errors that say what was wrong.

Pure NumPy/OpenCV on plain values (encoding, size, step, bytes) so it is tested
without ROS; the node only unpacks the message fields.
"""

from __future__ import annotations

import numpy as np

MAX_PIXELS = 7680 * 4320
"""Frames above 8K are refused: decoding them alone would stall the pipeline."""

_CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1, "bgra8": 4, "rgba8": 4, "8UC3": 3, "8UC1": 1, "8UC4": 4}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)


class ImageDecodeError(ValueError):
    """A frame that cannot be segmented; the message names the reason."""


def check_raw(encoding: str, height: int, width: int, step: int, size: int) -> None:
    """Refuse a raw image from its header fields alone, before any pixel is touched."""
    channels = _CHANNELS.get(encoding)
    if channels is None:
        supported = ", ".join(SUPPORTED_ENCODINGS)
        raise ImageDecodeError(f"unsupported encoding '{encoding}' (supported: {supported})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"zero-size image ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(f"image {width}x{height} exceeds the {MAX_PIXELS}-pixel limit")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is shorter than a row ({width} px x {channels} bytes = {row_bytes})")
    if size != step * height:
        raise ImageDecodeError(f"data has {size} bytes, expected step x height = {step * height}")


def decode_raw(encoding: str, height: int, width: int, step: int, data: bytes | memoryview) -> np.ndarray:
    """An (H, W, 3) uint8 BGR array from a raw image buffer.

    Rows may be padded (step > width * channels); the padding is skipped without a copy.
    """
    check_raw(encoding, height, width, step, len(data))
    channels = _CHANNELS[encoding]
    row_bytes = width * channels
    buffer = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = buffer.reshape(height, width, channels)
    return to_bgr(pixels, encoding)


def to_bgr(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Reorder or expand channels to contiguous BGR."""
    import cv2

    if encoding in ("bgr8", "8UC3"):
        return np.ascontiguousarray(pixels)
    if encoding == "rgb8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2BGR)
    if encoding in ("bgra8", "8UC4"):
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)
    raise ImageDecodeError(f"unsupported encoding '{encoding}'")


def decode_compressed(data: bytes | memoryview) -> np.ndarray:
    """An (H, W, 3) BGR array from JPEG/PNG bytes."""
    import cv2

    if len(data) == 0:
        raise ImageDecodeError("compressed image has no data")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageDecodeError(f"compressed image data ({len(data)} bytes) could not be decoded")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ImageDecodeError(f"image {image.shape[1]}x{image.shape[0]} exceeds the {MAX_PIXELS}-pixel limit")
    return image
