"""Camera buffers to BGR: every supported encoding, and clear refusals."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fastsam_ros.core.image_codec import (
    JPEG_MAX_SIDE,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    ImageEncodeError,
    check_raw,
    decode_compressed,
    decode_raw,
    encode_jpeg,
    to_bgr,
)


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
    with pytest.raises(ImageDecodeError, match=r"^compressed image has no data$"):
        decode_compressed(b"")


@pytest.mark.parametrize("kind", [".jpg", ".png", ".bmp"])
@pytest.mark.parametrize(("width", "height"), [(0, 40), (64, 0)])
def test_a_compressed_header_declaring_a_side_of_zero_is_refused(kind, width, height):
    import struct
    import zlib

    data = bytearray(cv2.imencode(kind, np.zeros((40, 64, 3), np.uint8))[1].tobytes())
    if kind == ".jpg":
        at = data.find(b"\xff\xc0")
        data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    elif kind == ".png":
        data[16:24] = struct.pack(">II", width, height)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    else:
        data[18:26] = struct.pack("<ii", width, height)
    message = f"compressed image data ({len(data)} bytes) could not be decoded: not a JPEG, PNG, BMP, WEBP image"
    with pytest.raises(ImageDecodeError, match=f"^{re.escape(message)}$"):
        decode_compressed(bytes(data))


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


ROS_ENCODINGS = (
    *("rgb8", "rgba8", "rgb16", "rgba16", "bgr8", "bgra8", "bgr16", "bgra16", "mono8", "mono16"),
    *(f"{depth}C{channels}" for depth in ("8U", "8S", "16U", "16S", "32S", "32F", "64F") for channels in (1, 2, 3, 4)),
    *(f"bayer_{pattern}{bits}" for pattern in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)),
    *("yuv422", "yuv422_yuy2", "uyvy", "yuyv", "nv21", "nv24"),
)
"""Every encoding sensor_msgs/image_encodings names: what a camera driver may send."""


def _decodes(encoding: str) -> bool:
    """Whether a one-pixel frame in this encoding decodes (a 32-byte row fits any pixel size)."""
    try:
        decode_raw(encoding, 1, 1, 32, bytes(32))
    except ImageDecodeError:
        return False
    return True


def test_an_unsupported_encoding_is_refused_with_the_list_of_those_that_decode():
    decodable = {encoding for encoding in ROS_ENCODINGS if _decodes(encoding)}
    assert {"bgr8", "rgb8", "mono8"} <= decodable
    for encoding in sorted(set(ROS_ENCODINGS) - decodable):
        with pytest.raises(ImageDecodeError) as refusal:
            check_raw(encoding, 1, 1, 32, 32)
        named = re.fullmatch(rf"unsupported encoding '{encoding}' \(supported: (.+)\)", str(refusal.value))
        assert named, str(refusal.value)
        assert set(named.group(1).split(", ")) == decodable


def test_to_bgr_names_an_encoding_it_cannot_convert():
    """to_bgr is public: a caller that skips check_raw still learns which encoding was wrong."""
    for encoding in [encoding for encoding in ROS_ENCODINGS if not _decodes(encoding)]:
        with pytest.raises(ImageDecodeError, match=rf"^unsupported encoding '{encoding}'$"):
            to_bgr(np.zeros((2, 2, 4), np.uint8), encoding)


@given(height=st.integers(-2, 3), width=st.integers(-2, 3))
@example(height=0, width=4)
@example(height=4, width=0)
def test_a_raw_frame_is_refused_as_zero_size_exactly_when_a_side_is_not_positive(height, width):
    step = max(width, 0) * 3
    size = step * max(height, 0)
    if height > 0 and width > 0:
        check_raw("bgr8", height, width, step, size)
    else:
        with pytest.raises(ImageDecodeError, match=rf"^zero-size image \({width}x{height}\)$"):
            check_raw("bgr8", height, width, step, size)


def _noise_png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(width * 100 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


@given(width=st.integers(1, 4), height=st.integers(1, 4))
def test_compressed_frames_from_one_pixel_wide_or_high_decode(width, height):
    assert decode_compressed(_noise_png(width, height)).shape == (height, width, 3)


@given(max_pixels=st.integers(40, 100), excess=st.integers(-8, 8))
@example(max_pixels=50, excess=0)
@example(max_pixels=50, excess=1)
def test_compressed_data_is_refused_exactly_when_it_exceeds_what_a_frame_within_the_limit_can_take(max_pixels, excess):
    """8 bytes (16-bit RGBA) per allowed pixel and 1 MiB more; bytes past a PNG's end are ignored and set its length."""
    png = _noise_png(2, 2)
    data = png + bytes(8 * max_pixels + 2**20 + excess - len(png))
    if excess > 0:
        with pytest.raises(ImageDecodeError, match=rf"^compressed image has {len(data)} bytes, more than any frame"):
            decode_compressed(data, max_pixels=max_pixels)
    else:
        assert decode_compressed(data, max_pixels=max_pixels).shape == (2, 2, 3)


@pytest.mark.parametrize(("extension", "channels"), [(".bmp", 4), (".png", 4), (".png", 3)])
def test_an_uncompressed_or_noisy_frame_exactly_at_the_pixel_limit_decodes(extension, channels):
    """A 32-bit BMP takes more than 4 bytes a pixel; it is a frame within the limit all the same."""
    pixels = np.random.default_rng(7).integers(0, 256, (40, 60, channels), dtype=np.uint8)
    data = cv2.imencode(extension, pixels)[1].tobytes()
    assert decode_compressed(data, max_pixels=40 * 60).shape == (40, 60, 3)


def test_a_jpeg_with_an_exif_rotation_keeps_the_pixels_as_stored():
    """The mask of pixel (x, y) must lie where depth and camera_info say: no turning by EXIF."""
    import io

    from PIL import Image as PilImage

    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:10, :20] = 255  # a white block in the top-left corner as the camera stored it
    exif = PilImage.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    PilImage.fromarray(stored).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_compressed(buffer.getvalue())
    assert decoded.shape == (40, 64, 3)
    assert decoded[:10, :20].mean() > 200 and decoded[30:, 44:].mean() < 50


def test_a_compressed_frame_whose_header_reads_but_whose_pixels_do_not_is_refused():
    png = _noise_png(16, 16)
    truncated = png[: png.find(b"IDAT") + 100]
    with pytest.raises(
        ImageDecodeError, match=rf"^compressed image data \({len(truncated)} bytes\) could not be decoded$"
    ):
        decode_compressed(truncated)


def test_an_opencv_error_while_decoding_is_refused_with_opencvs_reason(monkeypatch):
    with pytest.raises(cv2.error) as caught:
        cv2.imdecode(np.zeros(0, np.uint8), cv2.IMREAD_COLOR)
    opencv_error = caught.value

    def failing_imdecode(buffer, flags):
        raise opencv_error

    monkeypatch.setattr(cv2, "imdecode", failing_imdecode)
    reason = re.escape(opencv_error.err)
    with pytest.raises(ImageDecodeError, match=rf"^compressed image could not be decoded: {reason}$"):
        decode_compressed(_noise_png(4, 4))


def test_a_decoded_frame_of_another_size_than_its_header_is_refused_naming_both(monkeypatch):
    monkeypatch.setattr(cv2, "imdecode", lambda buffer, flags: np.zeros((30, 50, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match=r"^decoded image is 50x30, its header said 64x40$"):
        decode_compressed(_noise_png(64, 40))


@given(height=st.integers(1, 6), width=st.integers(1, 6), max_pixels=st.integers(1, 30))
def test_a_raw_frame_is_refused_exactly_when_it_has_more_pixels_than_the_limit_given(height, width, max_pixels):
    data = bytes(range(height * width))
    if height * width > max_pixels:
        limit = rf"^image {width}x{height} exceeds the {max_pixels}-pixel limit \(parameter max_pixels\)$"
        with pytest.raises(ImageDecodeError, match=limit):
            decode_raw("mono8", height, width, width, data, max_pixels=max_pixels)
    else:
        decoded = decode_raw("mono8", height, width, width, data, max_pixels=max_pixels)
        assert decoded.shape == (height, width, 3) and decoded[:, :, 0].reshape(-1).tolist() == list(data)


@pytest.mark.parametrize("shape", [(1, JPEG_MAX_SIDE, 3), (JPEG_MAX_SIDE, 1, 3)])
def test_jpeg_holds_images_up_to_its_longest_side_and_refuses_one_pixel_more(shape, capfd):
    gradient = (np.arange(shape[0] * shape[1], dtype=np.uint32) % 251).astype(np.uint8)
    image = np.repeat(gradient.reshape(shape[0], shape[1], 1), 3, axis=2)
    jpeg = encode_jpeg(image, 60)
    assert jpeg == cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes()
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == shape
    longer = (shape[0] + (shape[0] > 1), shape[1] + (shape[1] > 1), 3)
    capfd.readouterr()
    with pytest.raises(ImageEncodeError) as refused:
        encode_jpeg(np.zeros(longer, np.uint8), 60)
    assert str(refused.value) == f"{longer[1]}x{longer[0]}, over 65500 pixels a side"
    assert capfd.readouterr().err == "", "refused before OpenCV logs an error of its own"


def test_an_array_opencv_cannot_encode_is_refused_with_its_reason():
    with pytest.raises(ImageEncodeError) as refused:
        encode_jpeg(np.zeros((4, 6, 2), np.uint8), 60)
    assert str(refused.value) == (
        "OpenCV cannot encode a uint8 array of shape (4, 6, 2): channels == 1 || channels == 3 || channels == 4"
    )


def test_jpeg_is_encoded_at_the_quality_asked(bus):
    for quality in (20, 95):
        assert encode_jpeg(bus, quality) == cv2.imencode(".jpg", bus, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    assert len(encode_jpeg(bus, 20)) < len(encode_jpeg(bus, 95))
