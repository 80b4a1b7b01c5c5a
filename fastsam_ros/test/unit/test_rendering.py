"""The debug overlay: each visible mask pixel tinted once, in its object's colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.obstacles import Obstacle
from fastsam_ros.core.rendering import colour_for, draw_overlay, tint_masks


def _expected_tint(image: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Per pixel, the straightforward blend of the pixel with its label's colour."""
    expected = image.copy()
    for label in np.unique(labels[labels > 0]):
        where = labels == label
        colour = np.full((int(where.sum()), 1, 3), colour_for(int(label) - 1), np.uint8)
        pixels = image[where][:, None, :]
        expected[where] = cv2.addWeighted(pixels, 1 - alpha, colour, alpha, 0.0)[:, 0, :]
    return expected


def test_masks_are_tinted_with_the_object_in_front(bus_masks, bus):
    labels = bus_masks.label_image()
    assert np.array_equal(tint_masks(bus, bus_masks, 0.45), _expected_tint(bus, labels))
    overlay = draw_overlay(bus, bus_masks)
    assert np.array_equal(overlay[labels == 0][:1000], bus[labels == 0][:1000]), "background is left alone"


@pytest.mark.parametrize("count", [3, 255, 256, 300])
def test_many_instances_are_all_tinted(count):
    """More than 255 instances (label 256 and up) leave the 8-bit lookup path; both give the same pixels."""
    image = np.full((40, 8 * count, 3), 200, np.uint8)
    instances = tuple(
        Instance((8.0 * i, 0.0, 8.0 * i + 4, 4.0), 0.9, 0, "", (8 * i, 30), np.ones((4, 4), bool)) for i in range(count)
    )
    masks = MaskSet(height=40, width=8 * count, instances=instances)
    tinted = tint_masks(image, masks, 0.45)
    assert np.array_equal(tinted, _expected_tint(image, masks.label_image()))
    assert not np.array_equal(tinted[30:34, :4], image[30:34, :4])


def test_an_instance_takes_the_colour_of_its_track_id_zero_included_else_of_its_index():
    image = np.full((20, 40, 3), 200, np.uint8)
    instances = tuple(
        Instance((10.0 * i, 0.0, 10.0 * i + 4, 4.0), 0.9, 0, "", (10 * i, 10), np.ones((4, 4), bool), track_id)
        for i, track_id in enumerate((7, 0, -1))
    )
    tinted = tint_masks(image, MaskSet(height=20, width=40, instances=instances), 0.45)
    for i, key in enumerate((7, 0, 2)):
        colour = np.full((1, 1, 3), colour_for(key), np.uint8)
        expected = cv2.addWeighted(image[:1, :1], 0.55, colour, 0.45, 0.0)
        assert tuple(tinted[10, 10 * i]) == tuple(expected[0, 0]), i


GREY = 90
RED, YELLOW = (0, 0, 255), (0, 230, 255)


def _scene(track_ids=(-1, -1), names=("person", "")) -> MaskSet:
    """Two square objects on a 200x600 frame: boxes (40, 60)-(100, 120) and (300, 60)-(380, 140)."""
    first = Instance((40.0, 60.0, 100.0, 120.0), 0.91, 0, names[0], (40, 60), np.ones((60, 60), bool), track_ids[0])
    second = Instance((300.0, 60.0, 380.0, 140.0), 0.5, 1, names[1], (300, 60), np.ones((80, 80), bool), track_ids[1])
    return MaskSet(height=200, width=600, instances=(first, second))


def _label_width(canvas: np.ndarray, x: int, y: int, colour) -> int:
    """Width of the filled label background that starts at column x, on row y."""
    row = canvas[y]
    if tuple(row[x]) != colour:
        return 0
    width = 0
    while x + width < canvas.shape[1] and tuple(row[x + width]) != (GREY, GREY, GREY):
        width += 1
    return width


def _text_width(text: str) -> int:
    (width, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    return width + 3


def test_the_overlay_tints_at_its_default_strength(bus_masks, bus):
    """Outside the outlines and labels drawn over them, masked pixels are those of tint_masks at alpha 0.45."""
    inside = bus_masks.label_image() > 0
    same = np.all(draw_overlay(bus, bus_masks)[inside] == tint_masks(bus, bus_masks, 0.45)[inside], axis=1)
    assert same.mean() > 0.8


def test_boxes_and_labels_name_index_or_track_class_and_score():
    image = np.full((200, 600, 3), GREY, np.uint8)
    untracked = draw_overlay(image, _scene())
    assert tuple(untracked[90, 100]) == colour_for(0) and tuple(untracked[100, 380]) == colour_for(1)
    assert tuple(untracked[90, 101]) == colour_for(0) and tuple(untracked[90, 102]) == (GREY, GREY, GREY), "2 px"
    assert _label_width(untracked, 40, 56, colour_for(0)) == _text_width("#0 person 0.91")
    assert _label_width(untracked, 300, 56, colour_for(1)) == _text_width("#1 object 0.50")
    tracked = draw_overlay(image, _scene(track_ids=(7, 12)))
    assert tuple(tracked[90, 100]) == colour_for(7) and tuple(tracked[100, 380]) == colour_for(12)
    assert _label_width(tracked, 40, 56, colour_for(7)) == _text_width("id7 person 0.91")
    first_track = draw_overlay(image, _scene(track_ids=(0, -1)))
    assert _label_width(first_track, 40, 56, colour_for(0)) == _text_width("id0 person 0.91"), "0 is a track id"


def test_untracked_labels_count_instances_from_zero():
    image = np.full((100, 700, 3), GREY, np.uint8)
    instances = tuple(
        Instance((60.0 * i, 50.0, 60.0 * i + 10, 60.0), 0.5, 0, "", (60 * i, 50), np.ones((10, 10), bool))
        for i in range(10)
    )
    drawn = draw_overlay(image, MaskSet(height=100, width=700, instances=instances))
    assert _label_width(drawn, 540, 46, colour_for(9)) == _text_width("#9 object 0.50")


def test_obstacles_get_a_thick_red_box_and_their_distance():
    image = np.full((200, 600, 3), GREY, np.uint8)
    scene = _scene()
    drawn = draw_overlay(image, scene, obstacles=[Obstacle(index=1, overlap=1.0, distance=2.345), Obstacle(0, 0.5)])
    assert tuple(drawn[100, 382]) == RED and tuple(drawn[100, 383]) == (GREY, GREY, GREY), "four pixels thick"
    assert tuple(drawn[90, 100]) == RED
    assert _label_width(drawn, 300, 56, RED) == _text_width("#1 object 0.50 OBSTACLE 2.35 m")
    assert _label_width(drawn, 40, 56, RED) == _text_width("#0 person 0.91 OBSTACLE")


def test_the_region_of_interest_is_outlined_in_red_only_when_given():
    image = np.full((200, 300, 3), GREY, np.uint8)
    empty = MaskSet(height=200, width=300, instances=())
    roi = np.array([[10, 150], [290, 150], [290, 190], [10, 190]], np.int32)
    drawn = draw_overlay(image, empty, roi=roi)
    for y, x in ((150, 150), (190, 150), (170, 10), (170, 290)):
        blue, green, red = (int(c) for c in drawn[y, x])
        assert red > 200 and blue < 60 and green < 60, f"({x}, {y}) is on the outline"
    assert tuple(drawn[170, 150]) == (GREY, GREY, GREY) and tuple(drawn[152, 150]) == (GREY, GREY, GREY)
    assert np.array_equal(draw_overlay(image, empty), image)


def test_followed_objects_get_a_yellow_outline_along_the_mask_and_their_label_above():
    image = np.full((200, 600, 3), GREY, np.uint8)
    scene = _scene()
    drawn = draw_overlay(image, scene, followed={1: "follow alice"})
    assert tuple(drawn[100, 301]) == YELLOW and tuple(drawn[139, 340]) == YELLOW, "along the mask's edge"
    assert tuple(drawn[100, 340]) != YELLOW, "not inside"
    assert tuple(drawn[100, 41]) != YELLOW, "only the followed object"
    assert _label_width(drawn, 300, 25, YELLOW) == _text_width("follow alice")
    assert tuple(drawn[40, 300]) == YELLOW and tuple(drawn[41, 300]) != YELLOW, "its box ends 20 rows above the box"


def test_a_label_is_its_text_in_white_on_a_box_of_its_colour_with_a_one_pixel_margin():
    """The label of the first object, cut from the overlay, against the text drawn alone on that layout."""
    image = np.full((200, 600, 3), GREY, np.uint8)
    drawn = draw_overlay(image, _scene())
    text, font = "#0 person 0.91", cv2.FONT_HERSHEY_SIMPLEX
    (width, height), baseline = cv2.getTextSize(text, font, 0.5, 1)
    expected = np.full((height + baseline + 3, width + 3, 3), colour_for(0), np.uint8)
    cv2.putText(expected, text, (1, height + 1), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    top = 60 - height - baseline - 2
    assert np.array_equal(drawn[top : top + expected.shape[0], 40 : 40 + expected.shape[1]], expected)
    assert tuple(drawn[top - 1, 45]) == (GREY, GREY, GREY), "nothing above the label"


def test_every_part_of_a_followed_mask_is_outlined_four_pixels_wide():
    image = np.full((200, 600, 3), GREY, np.uint8)
    mask = np.zeros((80, 80), bool)
    mask[:, :30] = mask[:, 50:] = True  # one object seen in two parts, a post in front of it
    split = Instance((300.0, 60.0, 380.0, 140.0), 0.5, 1, "", (300, 60), mask)
    drawn = draw_overlay(image, MaskSet(height=200, width=600, instances=(split,)), followed={0: "follow"})
    assert tuple(drawn[100, 301]) == YELLOW and tuple(drawn[100, 351]) == YELLOW, "both parts"
    assert tuple(drawn[100, 302]) == YELLOW and tuple(drawn[100, 303]) != YELLOW, "four pixels wide"


def test_a_label_of_an_object_at_the_top_edge_starts_at_the_first_row():
    image = np.full((100, 300, 3), GREY, np.uint8)
    top = Instance((40.0, 2.0, 100.0, 60.0), 0.9, 0, "person", (40, 2), np.ones((58, 60), bool))
    drawn = draw_overlay(image, MaskSet(height=100, width=300, instances=(top,)))
    assert tuple(drawn[0, 41]) == colour_for(0)


def test_the_region_and_followed_outlines_are_anti_aliased():
    """Slanted edges blend into the frame: pixels between the outline's colour and the background."""
    image = np.full((200, 600, 3), GREY, np.uint8)
    disc = np.zeros((80, 80), np.uint8)
    cv2.circle(disc, (40, 40), 35, 1, -1)
    round_object = Instance((300.0, 60.0, 380.0, 140.0), 0.5, 1, "", (300, 60), disc.astype(bool))
    slanted = np.array([[20, 20], [200, 180], [20, 180]], np.int32)
    drawn = draw_overlay(
        image, MaskSet(height=200, width=600, instances=(round_object,)), roi=slanted, followed={0: "follow"}
    )

    def blended(region: np.ndarray, colour) -> int:
        pixels = region.reshape(-1, 3)
        pure = np.all(pixels == colour, axis=1) | np.all(pixels == (GREY, GREY, GREY), axis=1)
        return int((~pure).sum())

    assert blended(drawn[30:170, 30:150], RED) > 50, "the region's slanted side"
    rows, columns = np.mgrid[0:80, 0:80]
    just_outside = (np.hypot(rows - 40, columns - 40) > 35.5) & (np.hypot(rows - 40, columns - 40) < 37.5)
    assert blended(drawn[60:140, 300:380][just_outside], YELLOW) > 50, "around the round object"
