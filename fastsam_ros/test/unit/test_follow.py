"""Persistent selections: what a Follower promises, on drawn frames and on real video."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from benchmarks.follow_measure import load_reference
from fastsam_ros.core.follow import (
    HISTOGRAM_PIXELS,
    SATURATION_BINS,
    Follower,
    FollowError,
    FollowSettings,
    FollowStatus,
    _appearance_cost,
    _distance_to_segment,
    _motion_cost,
    _Selection,
    appearance_distance,
    colour_histogram,
    instance_to_follow,
)
from fastsam_ros.core.mask_set import Instance, MaskSet, box_iou
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.perception import Perception
from fastsam_ros.core.prompts import PromptError
from fastsam_ros.tools.sample_videos import sample_video, video_frames

HEIGHT, WIDTH = 240, 640
SECOND = 1_000_000_000
FRAME = SECOND // 10
RED, BLUE = (30, 30, 200), (200, 60, 30)
PERSON, CAR = 0, 2


class Scene:
    """Frames of coloured rectangles: each object's pixels are its colour, its mask is its box."""

    def __init__(self) -> None:
        self.objects: list[tuple[tuple[int, int, int, int], tuple[int, int, int], int, int]] = []

    def add(self, box: tuple[int, int, int, int], colour=RED, track_id: int = -1, class_id: int = PERSON) -> Scene:
        self.objects.append((box, colour, track_id, class_id))
        return self

    def frame(self, stamp_ns: int) -> tuple[MaskSet, np.ndarray]:
        image = np.full((HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
        instances = []
        for (x1, y1, x2, y2), colour, track_id, class_id in self.objects:
            image[y1:y2, x1:x2] = colour
            mask = np.ones((y2 - y1, x2 - x1), dtype=bool)
            name = "person" if class_id == PERSON else "car"
            instances.append(Instance((x1, y1, x2, y2), 0.9, class_id, name, (x1, y1), mask, track_id))
        return MaskSet(HEIGHT, WIDTH, tuple(instances), stamp_ns, "camera"), image


def person_at(x: int, track_id: int, colour=RED, y: int = 60) -> tuple:
    """A person 40 px wide and 100 px tall with its left edge at x."""
    return (x, y, x + 40, y + 100), colour, track_id


def step(follower: Follower, stamp_ns: int, *objects: tuple, classes: tuple[int, ...] = ()):
    scene = Scene()
    for number, (box, colour, track_id) in enumerate(objects):
        scene.add(box, colour, track_id, classes[number] if number < len(classes) else PERSON)
    masks, image = scene.frame(stamp_ns)
    return follower.update(masks, image, stamp_ns)


def start(follower: Follower, *objects: tuple, index: int = 0, stamp_ns: int = 0, name: str = "") -> int:
    """Follow object ``index`` of a first frame, then show that frame to the follower."""
    scene = Scene()
    for box, colour, track_id in objects:
        scene.add(box, colour, track_id)
    masks, image = scene.frame(stamp_ns)
    selection = follower.follow(masks, index, image, name)
    follower.update(masks, image, stamp_ns)
    return selection


def walk(follower: Follower, frames: range, speed: int = 10, x0: int = 100, beside: tuple = ()) -> None:
    """Person 5 walks right at ``speed`` px per frame (100 px/s at 10 frames/s), others standing beside."""
    for number in frames:
        step(follower, number * FRAME, person_at(x0 + speed * number, 5), *beside)


def test_a_new_track_id_on_the_same_person_keeps_the_selection():
    follower = Follower()
    selection = start(follower, person_at(100, 5), name="guest")
    walk(follower, range(1, 5))
    (followed,) = step(follower, 5 * FRAME, person_at(150, 9))
    assert followed.selection_id == selection and followed.name == "guest"
    assert (followed.track_id, followed.previous_track_id) == (9, 5)
    assert followed.status is FollowStatus.TRACKING, "no frame was missed: the switch is invisible"
    assert followed.instance is not None and followed.instance.box[0] == 150
    (followed,) = step(follower, 6 * FRAME, person_at(160, 9))
    assert followed.previous_track_id is None and followed.track_id == 9


def test_an_occluded_person_is_found_again_where_it_should_have_walked_to():
    follower = Follower()
    selection = start(follower, person_at(100, 5))
    walk(follower, range(1, 10))
    for number in range(10, 20):  # behind something for a second
        (followed,) = step(follower, number * FRAME)
        assert followed.status is FollowStatus.OCCLUDED
        assert followed.since_ns == 10 * FRAME, "occluded since the first frame without it"
        assert followed.last_seen_ns == 9 * FRAME and followed.instance is None
        assert followed.last_box == (190.0, 60.0, 230.0, 160.0)
    # Walked on at 100 px/s: 300 px at frame 20. A look-alike stands where it was last seen but too far
    # from that path for a second and a half's walk.
    (followed,) = step(follower, 20 * FRAME, person_at(300, 12))
    assert followed.status is FollowStatus.REACQUIRED and followed.since_ns == 20 * FRAME
    assert (followed.selection_id, followed.track_id, followed.previous_track_id) == (selection, 12, 5)
    (followed,) = step(follower, 21 * FRAME, person_at(310, 12))
    assert followed.status is FollowStatus.TRACKING and followed.since_ns == 21 * FRAME


def test_a_person_unseen_for_longer_than_the_window_is_lost_until_its_own_id_returns():
    follower = Follower(FollowSettings(window_s=1.0))
    start(follower, person_at(100, 5))
    walk(follower, range(1, 5), speed=0)
    statuses = [step(follower, number * FRAME)[0].status for number in range(5, 17)]
    assert statuses[:10] == [FollowStatus.OCCLUDED] * 10, "1 s after the last sighting (frame 4) it is still looked for"
    assert statuses[10:] == [FollowStatus.LOST] * 2
    (followed,) = step(follower, 16 * FRAME)
    assert followed.since_ns == 15 * FRAME
    (followed,) = step(follower, 17 * FRAME, person_at(100, 8))
    assert followed.status is FollowStatus.LOST, "a lost selection is not guessed back"
    (followed,) = step(follower, 18 * FRAME, person_at(100, 5))
    assert followed.status is FollowStatus.REACQUIRED and followed.track_id == 5, "its own track came back"


@pytest.mark.parametrize(
    ("candidate", "classes", "why"),
    [
        (person_at(150, 12, BLUE), (), "looks different"),
        (person_at(150, 12), (CAR,), "another class"),
        (person_at(450, 12), (), "too far from where it went"),
        (((150, 110, 170, 135), RED, 12), (), "a quarter of its size"),
        (person_at(150, -1), (), "a detection no track confirmed"),
    ],
)
def test_no_reacquisition_of_what_does_not_fit(candidate, classes, why):
    follower = Follower()
    start(follower, person_at(100, 5))
    walk(follower, range(1, 5), speed=0)
    for number in range(5, 12):
        (followed,) = step(follower, number * FRAME, candidate, classes=classes)
        assert followed.status is FollowStatus.OCCLUDED, why
        assert followed.track_id == 5 and followed.instance is None


def test_without_the_colour_cue_a_different_looking_person_is_taken():
    """The colour cue is what refuses the person in blue above: switching it off (a setting
    changed between frames) lets motion alone decide."""
    follower = Follower()
    start(follower, person_at(100, 5))
    walk(follower, range(1, 5), speed=0)
    (followed,) = step(follower, 5 * FRAME, person_at(110, 12, BLUE))
    assert followed.status is FollowStatus.OCCLUDED
    follower.configure(use_appearance=False)
    (followed,) = step(follower, 6 * FRAME, person_at(110, 12, BLUE))
    assert followed.track_id == 12 and followed.instance is not None, "found again"


def test_a_shorter_window_set_between_frames_applies_from_the_next_frame():
    follower = Follower()
    start(follower, person_at(100, 5))
    (followed,) = step(follower, 6 * FRAME)
    assert followed.status is FollowStatus.OCCLUDED
    follower.configure(window_s=0.5)
    (followed,) = step(follower, 7 * FRAME)
    assert followed.status is FollowStatus.LOST


@pytest.mark.parametrize("beside", [7, 0])
def test_someone_seen_beside_the_person_is_never_taken_for_them(beside):
    follower = Follower()
    start(follower, person_at(100, 5), person_at(200, beside))
    walk(follower, range(1, 5), speed=0, beside=(person_at(200, beside),))
    # The followed person vanishes; the one who stood beside them steps to their place.
    (followed,) = step(follower, 5 * FRAME, person_at(110, beside))
    assert followed.status is FollowStatus.OCCLUDED


def test_a_box_over_half_the_persons_may_be_a_second_detection_of_them():
    """A second box at IoU 0.5 exactly (the left half of the person) is not someone beside them:
    when the tracker drops the person's own id, that box is taken for them."""
    follower = Follower()
    start(follower, person_at(100, 5), ((100, 60, 120, 160), RED, 8))
    (followed,) = step(follower, FRAME, ((100, 60, 120, 160), RED, 8))
    assert followed.seen and followed.track_id == 8


def test_unconfirmed_detections_beside_an_unconfirmed_selection_do_not_hide_it():
    """Detections without a track id are nobody in particular: never companions."""
    follower = Follower()
    start(follower, person_at(100, -1), person_at(300, -1))
    (followed,) = step(follower, FRAME, person_at(110, -1), person_at(300, -1))
    assert followed.seen and followed.instance.box[0] == 110


def test_two_equally_good_candidates_wait_for_one_to_stand_out():
    follower = Follower()
    start(follower, person_at(200, 5))
    walk(follower, range(1, 5), speed=0, x0=200)
    (followed,) = step(follower, 5 * FRAME, person_at(190, 11), person_at(210, 12))
    assert followed.status is FollowStatus.OCCLUDED, "either could be the person: neither is taken"
    (followed,) = step(follower, 6 * FRAME, person_at(200, 11), person_at(330, 12))
    assert followed.status is FollowStatus.REACQUIRED and followed.track_id == 11


def test_a_person_who_walked_out_of_the_picture_is_not_replaced_by_the_next_one_in():
    follower = Follower()
    start(follower, person_at(560, 5))
    for number in range(1, 8):  # walks right at 100 px/s, out of the 640 px frame
        step(follower, number * FRAME, person_at(560 + 10 * number, 5))
    for number in range(8, 12):
        (followed,) = step(follower, number * FRAME)
    (followed,) = step(follower, 12 * FRAME, person_at(600, 12))
    assert followed.status is FollowStatus.OCCLUDED


@pytest.mark.parametrize(
    ("before", "last", "looked_for"),
    [
        (person_at(20, 5), person_at(0, 5), True),
        (person_at(580, 5), person_at(600, 5), False),
        (person_at(100, 5, y=50), person_at(100, 5, y=0), True),
        (person_at(100, 5, y=90), person_at(100, 5, y=140), False),
    ],
)
def test_a_person_headed_for_the_first_column_or_row_is_looked_for_and_one_headed_past_the_last_is_not(
    before, last, looked_for
):
    """With the velocity taken whole from the last step (motion memory 1), half a second unseen
    puts the predicted centre exactly on x 0 or y 0 (in the picture), or on x 640 or y 240 (out of it)."""
    follower = Follower(FollowSettings(motion_memory=1.0))
    start(follower, before)
    step(follower, SECOND // 2, last)
    box, colour, _ = last
    (followed,) = step(follower, SECOND, (box, colour, 9))
    assert followed.seen is looked_for


def test_track_zero_is_a_confirmed_candidate_and_a_selection_on_track_zero_skips_unconfirmed_ones():
    follower = Follower()
    start(follower, person_at(100, 5))
    (followed,) = step(follower, FRAME, person_at(100, 0))
    assert followed.seen and followed.track_id == 0
    follower = Follower()
    start(follower, person_at(100, 0))
    (followed,) = step(follower, FRAME, person_at(100, -1))
    assert not followed.seen, "a detection no track confirmed may be a fragment of someone"


@pytest.mark.parametrize(
    "others",
    [
        [((200, 60, 240, 80), BLUE, 30, CAR), ((242, 60, 282, 160), RED, 12, PERSON)],
        [((242, 60, 282, 160), BLUE, 12, PERSON)],
    ],
    ids=["a blue patch on the one at the place", "the one farther off in blue"],
)
def test_place_and_looks_add_up(others):
    """Costs are raw distances here (an appearance threshold of 1). The one at the place with a blue
    patch on a fifth of it (looks 0.33, place 0) beats the one in red 42 px off (place 0.79), and
    the one in red at the place beats the one in blue 42 px off."""
    follower = Follower(FollowSettings(max_appearance_distance=1.0))
    start(follower, person_at(200, 5))
    walk(follower, range(1, 5), speed=0, x0=200)
    scene = Scene().add(*person_at(200, 11), PERSON)
    for box, colour, track_id, class_id in others:
        scene.add(box, colour, track_id, class_id)
    masks, image = scene.frame(5 * FRAME)
    (followed,) = follower.update(masks, image, 5 * FRAME)
    assert followed.seen and followed.track_id == 11


def test_a_candidate_better_by_exactly_the_margin_is_taken():
    """Motion alone, in a gate of 50 px: a runner-up 25 px off costs 0.5, the margin asked for."""
    settings = FollowSettings(use_appearance=False, gate_growth=0.0, min_margin=0.5)
    for runner_up_y, taken in ((85, True), (84, False)):
        follower = Follower(settings)
        start(follower, person_at(200, 5))
        (followed,) = step(follower, FRAME, person_at(200, 11), person_at(200, 12, y=runner_up_y))
        assert followed.seen is taken and followed.track_id == (11 if taken else 5), runner_up_y


def test_one_instance_goes_to_the_selection_it_fits_best_and_the_other_waits():
    follower = Follower()
    start(follower, person_at(200, 5), person_at(280, 6), index=0)
    start(follower, person_at(200, 5), person_at(280, 6), index=1)
    (first, second) = step(follower, FRAME, person_at(230, 20))
    assert first.seen and first.track_id == 20, "30 px from the first, 50 px from the second"
    assert not second.seen and second.track_id == 6


@pytest.mark.parametrize(("apart_ns", "excluded"), [(3 * SECOND, True), (3 * SECOND + 1, False)])
def test_someone_seen_beside_the_person_is_excluded_for_the_window_from_the_last_frame_together(apart_ns, excluded):
    """To the nanosecond, and on a clock far from zero."""
    base = 100 * SECOND
    follower = Follower()
    start(follower, person_at(100, 5), person_at(300, 7), stamp_ns=base)
    for number in range(1, 21):  # alone for two seconds
        step(follower, base + number * FRAME, person_at(100, 5))
    step(follower, base + apart_ns)
    (followed,) = step(follower, base + apart_ns + 1, person_at(100, 7))
    assert followed.seen is not excluded


def test_a_selection_made_before_the_tracker_confirmed_the_object_adopts_its_id():
    follower = Follower()
    start(follower, person_at(100, -1))
    (followed,) = step(follower, FRAME, person_at(110, -1))
    assert followed.status is FollowStatus.TRACKING and followed.track_id == -1
    (followed,) = step(follower, 2 * FRAME, person_at(120, 4))
    assert followed.status is FollowStatus.TRACKING and (followed.track_id, followed.previous_track_id) == (4, -1)


def test_a_track_id_given_to_two_instances_follows_the_one_that_overlaps_the_last_box():
    follower = Follower()
    start(follower, person_at(100, 5))
    (followed,) = step(follower, FRAME, person_at(400, 5), person_at(105, 5))
    assert followed.instance is not None and followed.instance.box[0] == 105
    (followed,) = step(follower, 2 * FRAME, person_at(110, 5), person_at(400, 5))
    assert followed.instance is not None and followed.instance.box[0] == 110, "in either order"


def test_a_person_unseen_for_exactly_the_window_may_still_be_found_again():
    follower = Follower()
    start(follower, person_at(100, 5))
    window_ns = int(follower.settings.window_s * SECOND)
    (followed,) = step(follower, window_ns, person_at(100, 12))
    assert followed.track_id == 12 and followed.instance is not None, "found again"


@pytest.mark.parametrize(
    ("first_gone", "in_front"),
    [
        ("lost", ((20, 20, 60, 120), RED, 30, CAR)),
        ("out of the picture", ((20, 20, 60, 120), RED, 30, CAR)),
        ("lost", ((230, 60, 270, 160), RED, 7, PERSON)),
        ("lost", ((260, 60, 300, 160), RED, -1, PERSON)),
        ("lost", ((20, 60, 60, 160), RED, 30, PERSON)),
        ("lost", ((260, 60, 300, 160), BLUE, 30, PERSON)),
    ],
)
def test_every_unseen_selection_and_every_instance_is_considered(first_gone, in_front):
    """One selection that cannot be found again, and an instance that cannot be the other one
    (a car; someone who stood beside them; a detection no track confirmed; someone too far
    away, or in other colours) ahead of the one that is, skip only themselves."""
    follower = Follower(FollowSettings(window_s=1.0))
    start(follower, person_at(580 if first_gone != "lost" else 20, 5), person_at(300, 6), person_at(230, 7), index=0)
    start(follower, person_at(580 if first_gone != "lost" else 20, 5), person_at(300, 6), person_at(230, 7), index=1)
    if first_gone == "lost":
        (first, second) = step(follower, 11 * FRAME, person_at(300, 6), person_at(230, 7))
        assert first.status is FollowStatus.LOST
    else:
        for number in range(1, 4):  # the first walks right, out of the 640 px frame, at 200 px/s
            step(follower, number * FRAME, person_at(580 + 20 * number, 5), person_at(300, 6))
        step(follower, 11 * FRAME, person_at(300, 6), person_at(230, 7))
    box, colour, track_id, class_id = in_front
    scene = Scene()
    scene.add(box, colour, track_id, class_id)
    scene.add(*person_at(300, 16), PERSON)
    masks, image = scene.frame(12 * FRAME)
    (_, second) = follower.update(masks, image, 12 * FRAME)
    assert second.track_id == 16 and second.instance is not None, "found again"


def test_unfollow_one_and_all():
    follower = Follower()
    first = start(follower, person_at(100, 5), person_at(300, 6), index=0)
    second = start(follower, person_at(100, 5), person_at(300, 6), index=1)
    assert first != second and len(follower) == 2
    assert follower.unfollow(first) == [first]
    results = step(follower, FRAME, person_at(100, 5), person_at(300, 6))
    assert [r.selection_id for r in results] == [second]
    with pytest.raises(FollowError, match=f"no selection {first}"):
        follower.unfollow(first)
    third = start(follower, person_at(100, 5), person_at(300, 6), index=0, stamp_ns=2 * FRAME)
    assert third not in (first, second), "ids are never reused"
    assert follower.unfollow() == [second, third]
    assert step(follower, 3 * FRAME, person_at(100, 5)) == []


def test_following_the_same_track_again_answers_the_same_selection():
    follower = Follower()
    first = start(follower, person_at(100, 5))
    assert start(follower, person_at(100, 5), stamp_ns=FRAME) == first
    assert len(follower) == 1


def test_selections_are_bounded():
    follower = Follower(FollowSettings(max_selections=2))
    objects = [person_at(10 + 100 * n, n + 1) for n in range(3)]
    start(follower, *objects, index=0)
    start(follower, *objects, index=1)
    with pytest.raises(FollowError, match="already following 2"):
        start(follower, *objects, index=2)
    with pytest.raises(FollowError, match="instance 3 is not in"):
        start(follower, *objects, index=3)


def test_out_of_order_and_repeated_stamps():
    follower = Follower()
    start(follower, person_at(100, 5))
    walk(follower, range(1, 5))
    newest = step(follower, 5 * FRAME, person_at(150, 5))
    assert step(follower, 3 * FRAME, person_at(400, 9)) == newest, "a late frame changes nothing"
    (again,) = step(follower, 5 * FRAME, person_at(150, 5))
    assert again.status is FollowStatus.TRACKING, "the same stamp twice is the same frame again"
    (followed,) = step(follower, 6 * FRAME, person_at(160, 5))
    assert followed.status is FollowStatus.TRACKING and followed.instance.box[0] == 160
    (again,) = step(follower, 6 * FRAME, person_at(170, 5))
    assert again.instance.box[0] == 170, "a frame of the same stamp is taken, not answered from the last"


def test_a_frame_late_by_the_window_is_out_of_order_and_one_nanosecond_more_a_restarted_clock():
    follower = Follower()
    start(follower, person_at(100, 5), stamp_ns=100 * SECOND)
    newest = step(follower, 100 * SECOND + FRAME, person_at(110, 5))
    late = 100 * SECOND + FRAME - int(follower.settings.window_s * SECOND)
    assert step(follower, late, person_at(400, 9)) == newest, "out of order: the last answer again"
    (restarted,) = step(follower, late - 1, person_at(120, 5))
    assert restarted.instance.box[0] == 120, "a restarted clock: the frame is taken"


def test_a_track_is_followed_by_its_id_however_far_it_moves_track_zero_too():
    for track_id in (0, 5):
        follower = Follower()
        start(follower, person_at(100, track_id))
        (followed,) = step(follower, FRAME, person_at(500, track_id, colour=BLUE))
        assert (followed.status, followed.instance.box[0]) == (FollowStatus.TRACKING, 500), track_id


def test_who_stood_beside_the_person_when_selected_is_not_taken_for_them():
    """The companions of the frame a selection is made on count, before any update."""
    follower = Follower()
    scene = Scene()
    for box, colour, track_id in (person_at(100, 5), person_at(200, 7)):
        scene.add(box, colour, track_id, PERSON)
    masks, image = scene.frame(0)
    follower.follow(masks, 0, image)
    (followed,) = step(follower, FRAME, person_at(110, 7))
    assert followed.status is FollowStatus.OCCLUDED


def test_a_restarted_clock_carries_on_instead_of_freezing():
    """A recording played again from its start: time goes on from where it was, not from 100 s back."""
    follower = Follower()
    start(follower, person_at(100, 5), stamp_ns=100 * SECOND)
    (followed,) = step(follower, 100 * SECOND + FRAME)
    assert followed.status is FollowStatus.OCCLUDED
    (followed,) = step(follower, FRAME)
    assert followed.status is FollowStatus.OCCLUDED
    assert (followed.last_seen_ns, followed.since_ns) == (0, FRAME), "times moved back with the clock"
    (followed,) = step(follower, 30 * FRAME)
    assert followed.status is FollowStatus.OCCLUDED
    (followed,) = step(follower, 31 * FRAME)
    assert followed.status is FollowStatus.LOST, "3.1 s unseen, counted across the restart"
    (followed,) = step(follower, 32 * FRAME, person_at(100, 5))
    assert followed.status is FollowStatus.REACQUIRED and followed.last_seen_ns == 32 * FRAME


def test_a_lost_selection_stays_lost_when_the_window_grows():
    follower = Follower(FollowSettings(window_s=0.5))
    start(follower, person_at(100, 5))
    assert step(follower, 6 * FRAME)[0].status is FollowStatus.LOST
    follower.configure(window_s=10.0)
    (followed,) = step(follower, 7 * FRAME, person_at(100, 8))
    assert followed.status is FollowStatus.LOST, "once said lost, never guessed back"


def test_after_a_tracker_change_selections_are_found_by_motion_and_appearance():
    follower = Follower()
    start(follower, person_at(100, 5), person_at(400, 6, BLUE))
    follower.forget_track_ids()
    # The new tracker numbers the two the other way round: the selection stays with the red person.
    (followed,) = step(follower, FRAME, person_at(100, 6), person_at(400, 5, BLUE))
    assert followed.track_id == 6 and followed.instance.box[0] == 100


def test_a_selection_unseen_since_a_tracker_change_is_attached_to_no_track():
    follower = Follower()
    start(follower, person_at(100, 5))
    follower.forget_track_ids()
    assert follower.track_ids() == frozenset()
    (followed,) = step(follower, FRAME)
    assert (followed.status, followed.track_id) == (FollowStatus.OCCLUDED, -1), "-1: no track, as unconfirmed"


def test_an_id_not_seen_beside_the_person_for_a_window_may_be_them_again():
    """Across a restarted clock too: the companions' times move with it."""
    follower = Follower()
    start(follower, person_at(100, 5), person_at(300, 7), stamp_ns=100 * SECOND)
    step(follower, FRAME, person_at(100, 5))
    for number in range(2, 42):
        step(follower, number * FRAME, person_at(100, 5))
    (followed,) = step(follower, 42 * FRAME, person_at(105, 7))
    assert followed.seen and (followed.track_id, followed.previous_track_id) == (7, 5)


def test_a_box_cut_short_just_before_the_loss_does_not_shrink_the_search():
    follower = Follower()
    start(follower, person_at(100, 5))
    walk(follower, range(1, 5), speed=0)
    step(follower, 5 * FRAME, ((100, 60, 140, 100), RED, 5))  # only the upper body shows
    (followed,) = step(follower, 6 * FRAME, person_at(100, 9))
    assert followed.seen and (followed.track_id, followed.previous_track_id) == (9, 5)


def test_the_size_gate_follows_a_person_walking_away():
    follower = Follower()
    start(follower, person_at(100, 5))
    for number in range(1, 20):  # shrinks to 40 px tall at the same place
        step(follower, number * FRAME, ((100, 60, 116, 100), RED, 5))
    (followed,) = step(follower, 20 * FRAME, person_at(100, 9))
    assert followed.status is FollowStatus.OCCLUDED, "someone two and a half times its size now"
    (followed,) = step(follower, 21 * FRAME, ((100, 60, 116, 100), RED, 10))
    assert followed.seen and followed.track_id == 10, "its own size now"


def test_a_box_without_height_counts_as_one_pixel_tall():
    """The floor that keeps the size ratio finite: a 2 px tall box around the same place may be the
    same object, a 4 px one may not (motion alone: a box without rows has no colours)."""
    for candidate_height, taken in ((2, True), (4, False)):
        follower = Follower(FollowSettings(use_appearance=False))
        start(follower, ((100, 60, 140, 60), RED, 5))
        half = candidate_height // 2
        (followed,) = step(follower, FRAME, ((100, 60 - half, 140, 60 + half), RED, 9))
        assert followed.seen is taken, candidate_height


def test_a_selection_without_pixels_takes_its_looks_from_the_first_frame_it_has_some():
    follower = Follower()
    scene = Scene().add(*person_at(100, 5))
    masks, image = scene.frame(0)
    blank = dataclasses.replace(masks[0], mask=np.zeros_like(masks[0].mask))
    follower.follow(dataclasses.replace(masks, instances=(blank,)), 0, image)
    step(follower, FRAME, person_at(100, 5))
    (followed,) = step(follower, 2 * FRAME, person_at(100, 9))
    assert followed.seen and followed.track_id == 9


def test_the_looks_follow_a_slow_change_of_light():
    follower = Follower()
    start(follower, person_at(100, 5))
    for number in range(1, 41):  # red turns blue over two seconds, then stays blue
        colour = tuple(int(r + (b - r) * min(number / 20, 1)) for r, b in zip(RED, BLUE, strict=True))
        step(follower, number * FRAME, person_at(100, 5, colour))
    (followed,) = step(follower, 41 * FRAME, person_at(100, 9, BLUE))
    assert followed.seen and followed.track_id == 9


def test_a_selection_made_on_a_newer_frame_than_the_update_keeps_its_gate():
    follower = Follower()
    scene = Scene().add(*person_at(100, 5))
    masks, image = scene.frame(10 * SECOND)
    follower.follow(masks, 0, image)
    (followed,) = step(follower, 5 * SECOND, person_at(450, 9))
    assert followed.status is FollowStatus.OCCLUDED


def test_3d_motion_of_the_followed_track_is_passed_on():
    follower = Follower()
    start(follower, person_at(100, 5))
    scene = Scene().add(*person_at(100, 5))
    masks, image = scene.frame(FRAME)
    motion = ObstacleTrack(5, (0.5, 0.0, 3.0), (0.0, 0.0, -1.0), (0.01,) * 3, (0.1,) * 3, 1.0, 3.0)
    (followed,) = follower.update(masks, image, FRAME, {5: motion, 6: None})
    assert followed.motion is motion
    (followed,) = follower.update(masks, image, 2 * FRAME)
    assert followed.motion is None


def test_a_point_on_a_bag_over_a_person_follows_the_bag():
    masks, _ = Scene().add(*person_at(100, 5)).add((110, 100, 125, 120), BLUE, 6).frame(0)
    assert instance_to_follow(masks, [(115, 110)], [1]) == 1
    assert instance_to_follow(masks, [(105, 70)], [1]) == 0
    with pytest.raises(PromptError, match=r"^no instance under the foreground points$"):
        instance_to_follow(masks, [(400, 200)], [1])


def test_colour_histogram_uses_only_the_mask_pixels_inside_the_image():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :5] = RED
    image[:, 5:] = BLUE
    left = Instance((0, 0, 5, 10), 0.9, 0, "person", (0, 0), np.ones((10, 5), dtype=bool))
    right = Instance((5, 0, 10, 10), 0.9, 0, "person", (5, 0), np.ones((10, 5), dtype=bool))
    whole = Instance((0, 0, 10, 10), 0.9, 0, "person", (0, 0), np.ones((10, 10), dtype=bool))
    half = np.zeros((10, 10), dtype=bool)
    half[:, :5] = True
    masked = Instance((0, 0, 10, 10), 0.9, 0, "person", (0, 0), half)
    outside = Instance((20, 20, 30, 30), 0.9, 0, "person", (20, 20), np.ones((10, 10), dtype=bool))
    first_column, first_row = np.zeros((10, 10), dtype=bool), np.zeros((10, 10), dtype=bool)
    first_column[:, 0] = first_row[0, :] = True
    column = Instance((0, 0, 10, 10), 0.9, 0, "person", (0, 0), first_column)
    row = Instance((0, 0, 10, 10), 0.9, 0, "person", (0, 0), first_row)
    lower = Instance((0, 5, 10, 15), 0.9, 0, "person", (0, 5), np.ones((10, 10), dtype=bool))
    histograms = [colour_histogram(image, i) for i in (left, right, whole, masked, column, row, lower)]
    assert all(abs(float(h.sum()) - 1.0) < 1e-6 for h in histograms)
    assert appearance_distance(histograms[0], histograms[3]) < 1e-6, "pixels outside the mask do not count"
    assert appearance_distance(histograms[0], histograms[4]) < 1e-6, "the image's first column counts"
    assert appearance_distance(histograms[2], histograms[5]) < 1e-6, "the image's first row counts"
    assert appearance_distance(histograms[2], histograms[6]) < 1e-6, "only the rows inside the image count"
    assert appearance_distance(histograms[0], histograms[1]) > 0.99, "disjoint colours"
    assert 0.2 < appearance_distance(histograms[0], histograms[2]) < 0.8
    assert colour_histogram(image, outside) is None
    beyond_right = Instance((20, 0, 30, 10), 0.9, 0, "person", (20, 0), np.ones((10, 10), dtype=bool))
    assert colour_histogram(image, beyond_right) is None, "beside the image, level with it"


def dot_histogram(bgr: tuple[int, int, int]) -> np.ndarray:
    """The colour histogram of a single pixel of this colour."""
    dot = Instance((0, 0, 1, 1), 0.9, 0, "person", (0, 0), np.ones((1, 1), dtype=bool))
    return colour_histogram(np.full((1, 1, 3), bgr, dtype=np.uint8), dot)


def test_colour_histogram_bins_hue_and_saturation_over_their_opencv_ranges():
    """Hue 45 of 180 starts hue bin 4, saturation 32 of 256 starts saturation bin 1; value is left out."""
    for bgr, hue_bin, saturation_bin in (((0, 200, 100), 4, 7), ((223, 255, 223), 5, 1)):
        histogram = dot_histogram(bgr)
        assert histogram[hue_bin * SATURATION_BINS + saturation_bin] == 1.0, bgr
        assert histogram.sum() == 1.0


def test_a_grey_image_has_the_histogram_of_its_colour_version():
    grey = np.arange(100, dtype=np.uint8).reshape(10, 10)
    whole = Instance((0, 0, 10, 10), 0.9, 0, "person", (0, 0), np.ones((10, 10), dtype=bool))
    expected = colour_histogram(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), whole)
    assert np.array_equal(colour_histogram(grey, whole), expected)


@pytest.mark.parametrize(("side", "stride"), [(64, 1), (128, 2)])
def test_a_crop_is_sampled_every_stride_pixels_from_its_corner(side, stride):
    """A crop of HISTOGRAM_PIXELS counts every pixel; one four times larger every second row and
    column, from its own corner (placed away from the image's, so that a sum for a difference shows)."""
    assert side * side == HISTOGRAM_PIXELS * stride * stride
    top, left = 64, 32
    image = np.full((256, 256, 3), RED, dtype=np.uint8)
    image[top : top + side : 2, left : left + side : 2] = BLUE
    crop = Instance((left, top, left + side, top + side), 0.9, 0, "p", (left, top), np.ones((side, side), bool))
    blue_share = colour_histogram(image, crop)[dot_histogram(BLUE).argmax()]
    assert blue_share == {1: 0.25, 2: 1.0}[stride]


def test_a_large_crop_is_sampled_without_changing_its_colours():
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[:, :100] = RED
    image[:, 100:] = BLUE
    whole = Instance((0, 0, 400, 300), 0.9, 0, "person", (0, 0), np.ones((300, 400), dtype=bool))
    histogram = colour_histogram(image, whole)
    red = colour_histogram(image[:, :100], Instance((0, 0, 100, 300), 0.9, 0, "p", (0, 0), np.ones((300, 100), bool)))
    assert histogram[red.argmax()] == pytest.approx(0.25, abs=0.01), "a quarter of the pixels are red"


@pytest.fixture(scope="module")
def clip():
    """vtest.avi frames 462 to 501: the person followed changes track id in ByteTrack (checked on these weights)."""
    person = next(p for p in load_reference() if p.description.startswith("jeans, dark jacket, walks up later"))
    return person, video_frames(sample_video("vtest.avi"), 40, start=462)


def test_a_person_is_followed_through_a_track_switch_on_real_video(engine, clip):
    person, frames = clip
    perception = Perception("bytetrack")
    follower, by_id_only = Follower(), Follower(FollowSettings(window_s=0.0))
    selection, held, held_by_id, visible, track_ids = None, 0, 0, 0, set()
    for offset, image in enumerate(frames):
        number = 462 + offset
        masks = perception.process_masks(engine.segment(image, number * FRAME), image, want_obstacles=False).masks
        if offset == 2:  # the tracker confirms a track on its second frame
            x1, y1, x2, y2 = person.boxes[number]
            index = instance_to_follow(masks, [((x1 + x2) / 2, (y1 + y2) / 2)], [1])
            selection = follower.follow(masks, index, image)
            by_id_only.follow(masks, index, image)
        if selection is None:
            continue
        (followed,) = follower.update(masks, image, number * FRAME)
        (by_id,) = by_id_only.update(masks, image, number * FRAME)
        assert followed.selection_id == selection
        reference = person.boxes.get(number)
        if reference is None:
            continue
        visible += 1
        held += _matches(followed, reference)
        held_by_id += _matches(by_id, reference)
        track_ids.add(followed.track_id)
    print(f"\nfollowed {held}/{visible}, by track id only {held_by_id}/{visible}, track ids {sorted(track_ids)}")
    assert len(track_ids) >= 2, "the clip must make the tracker change the person's id, or it tests nothing"
    assert held >= 0.9 * visible
    assert held_by_id < held


def _matches(followed, reference) -> bool:
    if followed.instance is None:
        return False
    return box_iou(followed.instance.box, reference) >= 0.5


def lost_selection(centre: tuple[float, float], velocity: tuple[float, float], height: float, appearance=None):
    """A selection last seen as a 40-px-wide box of this height around centre, moving at velocity px/s."""
    x, y = centre
    box = np.array([x - 20, y - height / 2, x + 20, y + height / 2])
    return _Selection(1, "", PERSON, 5, box, np.array(velocity, float), height, appearance, 0, FollowStatus.OCCLUDED, 0)


def box_around(centre: tuple[float, float], height: float) -> Instance:
    x, y = centre
    box = (x - 20, y - height / 2, x + 20, y + height / 2)
    return Instance(box, 0.9, PERSON, "person", (0, 0), np.ones((1, 1), bool), 7)


def test_distance_to_a_segment_is_measured_to_its_nearest_point():
    start, end = np.array([2.0, 1.0]), np.array([12.0, 1.0])
    assert _distance_to_segment(np.array([7.0, 4.0]), start, end) == 3.0
    assert _distance_to_segment(np.array([-2.0, 4.0]), start, end) == 5.0, "before the start: to the start"
    assert _distance_to_segment(np.array([15.0, 5.0]), start, end) == 5.0, "past the end: to the end"
    assert _distance_to_segment(np.array([5.0, 5.0]), start, start) == 5.0, "a segment of no length is a point"


def test_the_motion_gate_grows_with_time_unseen_and_admits_its_edge():
    """Last seen at (100, 100) moving right at 50 px/s, 100 px tall, unseen for 1 s: looked for along
    (100, 100)-(150, 100) within 100 * (0.5 + 0.3 * 1) = 80 px."""
    settings = FollowSettings()
    gone = lost_selection((100, 100), (50, 0), 100)
    assert _motion_cost(gone, box_around((150, 140), 100), 1.0, settings) == 0.5
    assert _motion_cost(gone, box_around((150, 180), 100), 1.0, settings) == 1.0
    assert _motion_cost(gone, box_around((150, 181), 100), 1.0, settings) is None
    assert _motion_cost(gone, box_around((125, 140), 100), 2.0, settings) == pytest.approx(40 / 110)


def test_the_size_gate_admits_half_and_double_the_height_and_nothing_beyond():
    settings = FollowSettings()
    gone = lost_selection((100, 100), (0, 0), 100)
    for height, admitted in ((50, True), (49, False), (200, True), (201, False)):
        cost = _motion_cost(gone, box_around((100, 100), height), 0.0, settings)
        assert (cost is not None) == admitted, height


def test_the_colour_gate_needs_both_looks_and_admits_its_edge():
    red, blue = np.zeros(16, np.float32), np.zeros(16, np.float32)
    red[0], blue[0], blue[1] = 1.0, 0.6, 0.4
    distance = appearance_distance(red, blue)
    seen = lost_selection((0, 0), (0, 0), 100, appearance=red)
    assert _appearance_cost(seen, None, FollowSettings()) is None
    assert _appearance_cost(lost_selection((0, 0), (0, 0), 100), blue, FollowSettings()) is None
    assert _appearance_cost(seen, blue, FollowSettings(max_appearance_distance=distance)) == 1.0
    assert _appearance_cost(seen, blue, FollowSettings(max_appearance_distance=distance / 1.5)) is None


def test_track_id_zero_is_a_track_id():
    follower = Follower()
    first = start(follower, person_at(100, 0))
    assert follower.track_ids() == frozenset({0})
    assert start(follower, person_at(100, 0), stamp_ns=FRAME) == first, "followed already"


def test_selection_ids_count_from_one_and_a_selection_has_no_name_unless_given_one():
    follower = Follower()
    scene = Scene()
    for box, colour, track_id in (person_at(100, 5), person_at(300, 6), person_at(500, 7)):
        scene.add(box, colour, track_id, PERSON)
    masks, image = scene.frame(0)
    assert [follower.follow(masks, 0, image), follower.follow(masks, 1, image, "guest")] == [1, 2]
    assert [(o.selection_id, o.name) for o in follower.update(masks, image, 0)] == [(1, ""), (2, "guest")]
    assert follower.follow(masks, 2, image) == 3
    followed = step(follower, FRAME, person_at(105, 5), person_at(300, 6), person_at(500, 7))
    assert {(o.status, o.since_ns) for o in followed} == {(FollowStatus.TRACKING, 0)}, "tracking since selected"


def test_unfollow_of_an_unknown_selection_says_which_are_followed():
    with pytest.raises(FollowError, match=r"^no selection 5 \(followed now: none\)$"):
        Follower().unfollow(5)
    follower = Follower()
    start(follower, person_at(100, 5), person_at(300, 6), index=0)
    start(follower, person_at(100, 5), person_at(300, 6), index=1)
    with pytest.raises(FollowError, match=r"^no selection 9 \(followed now: 1, 2\)$"):
        follower.unfollow(9)
