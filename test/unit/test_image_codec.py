"""Camera buffers to BGR: every supported encoding, and clear refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.image_codec import ImageDecodeError, decode_compressed, decode_raw


def _as_encoding(bgr: np.ndarray, encoding: str) -> np.ndarray:
    return {
        "bgr8": bgr,
        "rgb8": bgr[:, :, ::-1],
        "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "rgba8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA),
    }[encoding]


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_colour_encodings_round_trip(zidane, encoding):
    pixels = np.ascontiguousarray(_as_encoding(zidane, encoding))
    height, width = pixels.shape[:2]
    decoded = decode_raw(encoding, height, width, pixels.strides[0], pixels.tobytes())
    assert np.array_equal(decoded, zidane)


def test_mono8_becomes_grey_bgr(zidane):
    grey = cv2.cvtColor(zidane, cv2.COLOR_BGR2GRAY)
    decoded = decode_raw("mono8", *grey.shape, grey.shape[1], grey.tobytes())
    assert decoded.shape == zidane.shape and np.array_equal(decoded[:, :, 1], grey)


def test_padded_rows_are_skipped(zidane):
    height, width = zidane.shape[:2]
    padded = np.zeros((height, width * 3 + 64), np.uint8)
    padded[:, : width * 3] = zidane.reshape(height, -1)
    assert np.array_equal(decode_raw("bgr8", height, width, width * 3 + 64, padded.tobytes()), zidane)


@pytest.mark.parametrize(
    ("encoding", "height", "width", "step", "size", "reason"),
    [
        ("16UC1", 4, 4, 8, 32, "unsupported encoding '16UC1'"),
        ("yuv422", 4, 4, 8, 32, "unsupported encoding"),
        ("32FC3", 4, 4, 48, 192, "unsupported encoding"),
        ("bgr8", 0, 0, 0, 0, "zero-size"),
        ("bgr8", 4, 4, 12, 47, "expected step x height = 48"),
        ("bgr8", 4, 4, 10, 40, "shorter than a row"),
        ("bgr8", 4321, 7681, 7681 * 3, 0, "exceeds"),
    ],
)
def test_bad_buffers_are_refused_with_a_reason(encoding, height, width, step, size, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_raw(encoding, height, width, step, b"\0" * size)


def test_compressed_jpeg_and_corrupt_data(zidane):
    _, jpeg = cv2.imencode(".jpg", zidane)
    decoded = decode_compressed(jpeg.tobytes())
    assert decoded.shape == zidane.shape
    assert np.abs(decoded.astype(int) - zidane).mean() < 5
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        decode_compressed(jpeg.tobytes()[:20] + b"garbage")
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_compressed(b"")


@pytest.mark.parametrize(
    ("kind", "width", "height"), [(".jpg", 65000, 65000), (".bmp", 70000, 70000), (".jpg", 8000, 4400)]
)
def test_compressed_bombs_are_refused_from_the_header_before_decoding(zidane, kind, width, height):
    import struct

    data = bytearray(cv2.imencode(kind, cv2.resize(zidane, (64, 40)))[1].tobytes())
    if kind == ".jpg":
        at = data.find(b"\xff\xc0")
        data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    else:
        data[18:26] = struct.pack("<ii", width, height)
    with pytest.raises(ImageDecodeError, match=f"{width}x{height} exceeds the 33177600-pixel limit"):
        decode_compressed(bytes(data))
    with pytest.raises(ImageDecodeError, match="exceeds the 800000-pixel limit"):
        decode_compressed(cv2.imencode(kind, zidane)[1].tobytes(), max_pixels=800_000)
