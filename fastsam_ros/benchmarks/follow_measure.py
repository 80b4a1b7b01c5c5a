"""Following a person on real video: does the selection stay on them, and at what cost per frame?

Each clip goes through the node's pipeline in process (engine and ByteTrack, every frame,
nothing dropped). Each person of the reference is selected by a point on the first frame
where the reference has them, and followed to the end of the clip by a Follower of their own.

The reference (data/follow_reference.json) holds each person's box per frame. It was built
from a tracker run with generous settings (BoT-SORT, track_buffer 150, match_thresh 0.9,
track_low_thresh 0.05, new_track_thresh 0.3, on the same model's OpenVINO detections), then
checked by eye on crops of every track and corrected by hand: in vtest.avi that tracker
swapped two people who cross (frames 344 to 358: cut and relinked, and frames 345 to 349,
where it had lost one of them in plain view, filled from the detections), split the man who
turns back at frame 404 into two tracks (linked), and began the red-and-blue walker on the
woman beside him (started at frame 509 on him instead); frames where a passer-by covers him
are not judged; the Megamind.avi woman ends at the cut to another shot after frame 199.

A followed box is right when its IoU with the reference box is at least 0.5. "On another
object" counts the frames where the follower holds an instance that is not the person,
including frames where the reference has no box (the person is gone, or behind something).
A re-acquisition is wrong when the instance it takes is not the person.

Three followers per person: track id only (no re-acquisition: what a selection by track id
gives), motion only, and motion with the colour histogram (the default), so the table shows
what each cue adds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastsam_ros.core.follow import FollowedObject, Follower, FollowSettings, FollowStatus, instance_to_follow
from fastsam_ros.core.mask_set import MaskSet, box_iou
from fastsam_ros.core.prompts import PromptError

REFERENCE = Path(__file__).parent / "data" / "follow_reference.json"
MATCH_IOU = 0.5
FRAME_PERIOD_NS = {"vtest.avi": 100_000_000, "Megamind.avi": 41_708_333}
"""The clips' frame rates (10 and 23.976 frames per second), for the stamps a camera would give."""
VARIANTS = {
    "track id only": FollowSettings(window_s=0.0),
    "motion only": FollowSettings(use_appearance=False),
    "motion + colour": FollowSettings(),
}
HEADERS = [
    "video",
    "person",
    "follower",
    "frames visible",
    "followed right",
    "on another object",
    "new track id taken (wrong)",
    "own id back (wrong)",
    "frames to re-acquire (median / max)",
    "update ms (mean / p99)",
]


@dataclass(frozen=True)
class Person:
    video: str
    description: str
    first_frame: int
    point: tuple[int, int]
    boxes: dict[int, tuple[float, float, float, float]]
    not_judged: frozenset[int]


@dataclass
class FollowScore:
    """What one follower did for one person over a clip."""

    visible: int = 0
    right: int = 0
    on_other: int = 0
    reattached: list[int] = field(default_factory=list)
    """Frames where the follower itself chose an instance under another track id (its own decision)."""
    returned: list[int] = field(default_factory=list)
    """Frames where the selection's own track id came back after frames without it (the tracker's decision)."""
    wrong: set[int] = field(default_factory=set)
    """Those of the frames above where what was taken is not the person."""
    reacquire_frames: list[int] = field(default_factory=list)
    """Per occlusion the follower came back from: frames the person was visible but not followed."""
    update_ms: list[float] = field(default_factory=list)
    _unfollowed_visible: int = 0

    def add(
        self, number: int, followed: FollowedObject, reference: tuple[float, ...] | None, judged: bool, ms: float
    ) -> None:
        self.update_ms.append(ms)
        box = followed.instance.box if followed.instance is not None else None
        right = box is not None and reference is not None and box_iou(box, reference) >= MATCH_IOU
        if followed.previous_track_id is not None:
            self.reattached.append(number)
        elif followed.status is FollowStatus.REACQUIRED:
            self.returned.append(number)
        if followed.status is FollowStatus.REACQUIRED:
            self.reacquire_frames.append(self._unfollowed_visible)
        if not judged:
            return
        if number in (*self.reattached[-1:], *self.returned[-1:]) and not right:
            self.wrong.add(number)
        self.visible += reference is not None
        self.right += right
        self.on_other += box is not None and not right
        if box is None:
            self._unfollowed_visible += reference is not None
        else:
            self._unfollowed_visible = 0

    def row(self) -> list[str]:
        delays = self.reacquire_frames
        delay = f"{statistics.median(delays):g} / {max(delays)}" if delays else "-"
        return [
            str(self.visible),
            f"{100 * self.right / max(self.visible, 1):.1f}%",
            str(self.on_other),
            f"{len(self.reattached)} ({len(self.wrong.intersection(self.reattached))})",
            f"{len(self.returned)} ({len(self.wrong.intersection(self.returned))})",
            delay,
            f"{statistics.fmean(self.update_ms):.2f} / {np.percentile(self.update_ms, 99):.2f}",
        ]


def load_reference(path: Path = REFERENCE) -> list[Person]:
    people = json.loads(path.read_text())["people"]
    return [
        Person(
            video=p["video"],
            description=p["person"],
            first_frame=p["first_frame"],
            point=tuple(p["point"]),
            boxes={int(k): tuple(v) for k, v in p["boxes"].items()},
            not_judged=frozenset(p["not_judged"]),
        )
        for p in people
    ]


def follow_people(
    frames: Iterable[tuple[MaskSet, np.ndarray]], people: list[Person], period_ns: int
) -> dict[tuple[str, str], FollowScore]:
    """Every person followed by every variant through the tracked frames, scored against the reference."""
    followers = {(p.description, name): Follower(settings) for p in people for name, settings in VARIANTS.items()}
    scores = {key: FollowScore() for key in followers}
    for number, (masks, image) in enumerate(frames):
        stamp_ns = number * period_ns
        for person in people:
            if number < person.first_frame:
                continue
            for name in VARIANTS:
                key = (person.description, name)
                follower = followers[key]
                if number == person.first_frame:
                    with contextlib.suppress(PromptError):  # nothing under the point: the row says 0%
                        index = instance_to_follow(masks, [person.point], [1])
                        follower.follow(masks, index, image, person.description)
                if len(follower) == 0:
                    continue
                start = time.perf_counter()
                (followed,) = follower.update(masks, image, stamp_ns)
                ms = (time.perf_counter() - start) * 1e3
                scores[key].add(number, followed, person.boxes.get(number), number not in person.not_judged, ms)
    return scores


def tracked_frames(engine, perception, path: Path, period_ns: int, segment_ms: list[float]):
    """The node's pipeline on every frame of a video in order (engine, then tracker), timing the segmentation.

    Frames are read as they are needed: a whole clip held in memory would take a gigabyte.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        number = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            start = time.perf_counter()
            masks = engine.segment(image, number * period_ns, "camera")
            segment_ms.append((time.perf_counter() - start) * 1e3)
            yield perception.process_masks(masks, image, want_obstacles=False).masks, image
            number += 1
    finally:
        capture.release()


def follow_rows(loaded, videos: list[str] | None = None) -> tuple[list[list[str]], list[str]]:
    """Table rows (HEADERS) for every reference person of the videos, and a note line per video."""
    from fastsam_ros.core.engine import SegmentationEngine
    from fastsam_ros.core.perception import Perception
    from fastsam_ros.tools.sample_videos import sample_video

    people = load_reference()
    videos = videos or sorted({p.video for p in people})
    rows, notes = [], []
    for video in videos:
        chosen = [p for p in people if p.video == video]
        period = FRAME_PERIOD_NS[video]
        engine, perception = SegmentationEngine(loaded), Perception("bytetrack")
        segment_ms: list[float] = []
        tracked = tracked_frames(engine, perception, sample_video(video), period, segment_ms)
        scores = follow_people(tracked, chosen, period)
        for (description, variant), score in scores.items():
            rows.append([video, description, variant, *score.row()])
            if score.wrong:
                frames = ", ".join(str(n) for n in sorted(score.wrong))
                notes.append(f"{video}, {description}, {variant}: took someone else at frames {frames}")
        notes.append(
            f"{video}: {len(segment_ms)} frames, segmentation {statistics.fmean(segment_ms):.1f} ms per frame "
            f"(runtime {loaded.runtime})"
        )
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    from fastsam_ros.core.backends.model_loading import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", action="append", help="a reference video (default: all of them)")
    parser.add_argument("--runtime", default="auto")
    args = parser.parse_args(argv)
    loaded = load_model("yolo11n-seg.pt", "cpu", runtime=args.runtime)
    rows, notes = follow_rows(loaded, args.video)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    for line in [HEADERS, *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
