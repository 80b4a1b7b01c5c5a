"""Turning camera buffers into BGR arrays, with errors that say what was wrong.

Pure NumPy/OpenCV on plain values (encoding, size, step, bytes) so it is tested
without ROS; the node only unpacks the message fields.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

MAX_PIXELS = 7680 * 4320
"""Default limit (8K): larger frames are refused, since decoding them alone would stall the pipeline."""

COMPRESSED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP")
"""What CompressedImage frames may hold; their size is read from the header before decoding."""

JPEG_MAX_SIDE = 65500
"""The longest image side JPEG holds (libjpeg's limit)."""

_CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1, "bgra8": 4, "rgba8": 4, "8UC3": 3, "8UC1": 1, "8UC4": 4}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)


class ImageDecodeError(ValueError):
    """A frame that cannot be segmented; the message names the reason."""


class ImageEncodeError(ValueError):
    """An image JPEG cannot hold or OpenCV cannot encode; the message names the reason."""


def check_raw(encoding: str, height: int, width: int, step: int, size: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a raw image from its header fields alone, before any pixel is touched."""
    channels = _CHANNELS.get(encoding)
    if channels is None:
        supported = ", ".join(SUPPORTED_ENCODINGS)
        raise ImageDecodeError(f"unsupported encoding '{encoding}' (supported: {supported})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"zero-size image ({width}x{height})")
    _check_pixels(width, height, max_pixels)
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(f"step {step} is shorter than a row ({width} px x {channels} bytes = {row_bytes})")
    if size != step * height:
        raise ImageDecodeError(f"data has {size} bytes, expected step x height = {step * height}")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(f"image {width}x{height} exceeds the {max_pixels}-pixel limit (parameter max_pixels)")


def decode_raw(
    encoding: str, height: int, width: int, step: int, data: bytes | memoryview, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """An (H, W, 3) uint8 BGR array from a raw image buffer.

    Rows may be padded (step > width * channels); the padding is skipped without a copy.
    """
    check_raw(encoding, height, width, step, len(data), max_pixels)
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


def max_compressed_bytes(max_pixels: int) -> int:
    """The most bytes a frame within max_pixels can take: 16-bit RGBA stored without compression
    (8 bytes a pixel) and 1 MiB for headers, row padding and metadata."""
    return 8 * max_pixels + 2**20


def compressed_size(data: bytes | memoryview, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a compressed frame read from its header alone, refused over max_pixels.

    A few hundred bytes can declare a 65000x65000 image; decoding it first would take
    gigabytes and seconds (or make OpenCV raise), so the size is checked before any decode.
    """
    if len(data) == 0:
        raise ImageDecodeError("compressed image has no data")
    if len(data) > max_compressed_bytes(max_pixels):
        raise ImageDecodeError(f"compressed image has {len(data)} bytes, more than any frame within max_pixels")
    # PIL's parsers refuse a header that declares a side of 0 themselves.
    width, height = _header_size(data)
    _check_pixels(width, height, max_pixels)
    return width, height


def _header_size(data: bytes | memoryview) -> tuple[int, int]:
    """Width and height from the header, through PIL's format parsers.

    The parsers are called directly rather than through ``PIL.Image.open``, which
    ultralytics replaces with a version that tries to pip-install a HEIF plugin when it
    meets data it cannot identify, and which checks sizes against its own limit
    (fastsam_ros.core.compat.ULTRALYTICS_IMAGE_OPEN_PATCH).
    """
    from PIL import Image as PilImage

    PilImage.init()
    prefix = bytes(data[:16])
    for kind in COMPRESSED_FORMATS:
        factory, accept = PilImage.OPEN[kind]
        if accept is not None and not accept(prefix):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with factory(io.BytesIO(data), None) as header:
                    return header.size
        except Exception:  # PIL raises several kinds for truncated or corrupt headers
            break
    kinds = ", ".join(COMPRESSED_FORMATS)
    raise ImageDecodeError(f"compressed image data ({len(data)} bytes) could not be decoded: not a {kinds} image")


def decode_compressed(data: bytes | memoryview, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An (H, W, 3) BGR array from JPEG/PNG/BMP/WebP bytes whose header is within max_pixels."""
    import cv2

    width, height = compressed_size(data, max_pixels)
    try:
        # Pixels stay as the camera stored them: an EXIF orientation tag would turn the image
        # and its masks away from the header's size and from depth and camera_info.
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as error:
        raise ImageDecodeError(f"compressed image could not be decoded: {error.err}") from None
    if image is None:
        raise ImageDecodeError(f"compressed image data ({len(data)} bytes) could not be decoded")
    if image.shape[:2] != (height, width):
        raise ImageDecodeError(f"decoded image is {image.shape[1]}x{image.shape[0]}, its header said {width}x{height}")
    return image


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A BGR image as JPEG at quality (0..100); raises ImageEncodeError. A side over
    JPEG_MAX_SIDE is refused before OpenCV tries, which would log an error line of its own."""
    import cv2

    height, width = image.shape[:2]
    if max(height, width) > JPEG_MAX_SIDE:
        raise ImageEncodeError(f"{width}x{height}, over {JPEG_MAX_SIDE} pixels a side")
    try:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as error:
        raise ImageEncodeError(f"OpenCV cannot encode {_described(image)}: {error.err}") from error
    if not ok:
        raise ImageEncodeError(f"OpenCV encoded nothing from {_described(image)}")
    return jpeg.tobytes()


def _described(image: np.ndarray) -> str:
    """How an error names an array OpenCV refused: its dtype and shape, never its pixels."""
    return f"a {image.dtype} array of shape {image.shape}"
