"""The camera-like frames made from ultralytics' photos (fastsam_ros.tools.sample_frames), which the
demo, the int8 calibration and many tests run on: sizes, pans and tiles as promised."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.tools.sample_frames import (
    asset_image,
    camera_frames,
    demo_sequence,
    mosaic,
    pan_offsets,
    panned,
    resized,
)


def test_the_photos_are_ultralytics_own():
    from ultralytics.utils import ASSETS

    bus = asset_image("bus.jpg")
    assert bus.shape == (1080, 810, 3) and np.array_equal(bus, cv2.imread(str(ASSETS / "bus.jpg")))
    assert asset_image("zidane.jpg").shape == (720, 1280, 3)
    with pytest.raises(FileNotFoundError, match=rf"^ultralytics asset 'missing.jpg' not found in {ASSETS}$"):
        asset_image("missing.jpg")


def test_a_resized_photo_fills_the_frame_and_keeps_its_centre():
    photo = np.zeros((100, 200, 3), np.uint8)
    photo[:, 50:150] = 255  # the middle half of the columns
    square = resized(photo, 50, 50)
    assert square.shape == (50, 50, 3) and square.flags["C_CONTIGUOUS"]
    assert square.min() == 255, "scaled to the height, the sides cropped equally"
    wide = resized(photo, 400, 100)
    assert wide.shape == (100, 400, 3)
    assert wide[:, :98].max() == 0 and wide[:, 102:298].min() == 255 and wide[:, 302:].max() == 0, "not cropped"
    tall = resized(photo, 20, 40)
    assert tall.shape == (40, 20, 3) and tall.min() == 255
    upright = np.ascontiguousarray(photo.transpose(1, 0, 2))  # the middle half of the rows
    assert resized(upright, 50, 50).min() == 255, "scaled to the width, top and bottom cropped equally"


def test_pans_slide_from_the_top_left_to_the_bottom_right_corner():
    assert pan_offsets((100, 200, 3), 50, 40, 5) == [(0, 0), (37, 15), (75, 30), (112, 45), (150, 60)]
    assert pan_offsets((100, 200, 3), 200, 100, 3) == [(0, 0)] * 3, "a window of the whole photo"
    assert pan_offsets((100, 200, 3), 50, 40, 1) == [(0, 0)]
    for width, height in ((201, 100), (200, 101)):
        with pytest.raises(ValueError, match=rf"^window {width}x{height} is larger than the 200x100 photo$"):
            pan_offsets((100, 200, 3), width, height, 2)
    photo = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3)
    windows = panned(photo, 50, 40, 5)
    for window, (x, y) in zip(windows, pan_offsets(photo.shape, 50, 40, 5), strict=True):
        assert window.flags["C_CONTIGUOUS"] and np.array_equal(window, photo[y : y + 40, x : x + 50])


def test_the_demo_pans_down_the_bus_then_across_the_football_scene():
    frames = demo_sequence()
    assert [source for source, _ in frames] == ["bus.jpg"] * 6 + ["zidane.jpg"] * 6
    assert {frame.shape for _, frame in frames[:6]} == {(800, 640, 3)}
    assert {frame.shape for _, frame in frames[6:]} == {(600, 960, 3)}
    bus, zidane = asset_image("bus.jpg"), asset_image("zidane.jpg")
    assert np.array_equal(frames[0][1], bus[:800, :640]) and np.array_equal(frames[5][1], bus[280:, 170:])
    assert np.array_equal(frames[6][1], zidane[:600, :960]) and np.array_equal(frames[11][1], zidane[120:, 320:])


def test_camera_frames_are_of_one_size_half_from_each_photo():
    frames = camera_frames(320, 240, 5)
    assert len(frames) == 5 and {frame.shape for frame in frames} == {(240, 320, 3)}
    bus = resized(asset_image("bus.jpg"), 400, 300)
    zidane = resized(asset_image("zidane.jpg"), 400, 300)
    assert np.array_equal(frames[0], bus[:240, :320]) and np.array_equal(frames[2], bus[60:, 80:])
    assert np.array_equal(frames[3], zidane[:240, :320]) and np.array_equal(frames[4], zidane[30:270, 40:360])
    even = camera_frames(320, 240, 4)
    assert np.array_equal(even[1], bus[60:, 80:]) and np.array_equal(even[2], zidane[:240, :320]), "two of each"


def test_a_mosaic_tiles_the_two_photos_alternately():
    tiles = mosaic(4, 3, 400, 300)
    assert tiles.shape == (300, 400, 3)
    bus, zidane = resized(asset_image("bus.jpg"), 100, 100), resized(asset_image("zidane.jpg"), 100, 100)
    for row in range(3):
        for column in range(4):
            tile = tiles[row * 100 : (row + 1) * 100, column * 100 : (column + 1) * 100]
            assert np.array_equal(tile, (bus, zidane)[(row + column) % 2]), (row, column)
