"""Camera buffers to BGR: every supported encoding, and clear refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsam_ros.image_codec import SUPPORTED_ENCODINGS, ImageDecodeError, check_raw, decode_compressed, decode_raw


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


@pytest.mark.parametrize(("width", "height", "refused"), [(7680, 4320, False), (7681, 4320, True), (4320, 7681, True)])
def test_compressed_frames_over_the_pixel_limit_are_refused(width, height, refused):
    """A small PNG can hold a huge frame; the limit applies to the decoded size (8K here is 7680x4320)."""
    _, png = cv2.imencode(".png", np.zeros((height, width), np.uint8))
    if refused:
        with pytest.raises(ImageDecodeError, match="exceeds the 33177600-pixel limit"):
            decode_compressed(png.tobytes())
    else:
        assert decode_compressed(png.tobytes()).shape == (height, width, 3)


@pytest.mark.parametrize(("width", "height", "refused"), [(7680, 4320, False), (7681, 4320, True), (1, 33177601, True)])
def test_raw_frames_over_the_pixel_limit_are_refused_from_the_header(width, height, refused):
    if refused:
        with pytest.raises(ImageDecodeError, match="exceeds"):
            check_raw("mono8", height, width, width, width * height)
    else:
        check_raw("mono8", height, width, width, width * height)


@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    padding=st.integers(0, 7),
    size_error=st.integers(-3, 3),
)
def test_header_checks_accept_exactly_the_consistent_buffers(encoding, height, width, padding, size_error):
    channels = {"mono8": 1, "8UC1": 1, "bgra8": 4, "rgba8": 4, "8UC4": 4}.get(encoding, 3)
    step = width * channels + padding
    size = step * height + size_error
    data = bytes((7 * i + 3) % 256 for i in range(max(size, 0)))
    if size_error:
        with pytest.raises(ImageDecodeError, match=f"expected step x height = {step * height}"):
            decode_raw(encoding, height, width, step, data[:size])
        return
    decoded = decode_raw(encoding, height, width, step, data[:size])
    assert decoded.shape == (height, width, 3) and decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    last_row = data[(height - 1) * step : (height - 1) * step + width * channels]
    assert decoded[-1, -1].tolist() == _PIXEL_AS_BGR[encoding](last_row[-channels:])


_PIXEL_AS_BGR = {
    "bgr8": lambda p: [p[0], p[1], p[2]],
    "8UC3": lambda p: [p[0], p[1], p[2]],
    "rgb8": lambda p: [p[2], p[1], p[0]],
    "mono8": lambda p: [p[0]] * 3,
    "8UC1": lambda p: [p[0]] * 3,
    "bgra8": lambda p: [p[0], p[1], p[2]],
    "8UC4": lambda p: [p[0], p[1], p[2]],
    "rgba8": lambda p: [p[2], p[1], p[0]],
}
"""Which bytes of a pixel become its blue, green and red, per encoding."""


def test_a_short_step_and_a_negative_size_are_refused():
    with pytest.raises(ImageDecodeError, match="step 11 is shorter than a row"):
        check_raw("bgr8", 2, 4, 11, 22)
    with pytest.raises(ImageDecodeError, match="zero-size image"):
        check_raw("bgr8", 4, 0, 0, 0)
    with pytest.raises(ImageDecodeError, match="zero-size image"):
        check_raw("bgr8", -1, 4, 12, 0)
