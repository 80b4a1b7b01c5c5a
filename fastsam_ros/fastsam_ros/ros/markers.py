"""rviz markers for obstacles: a 3D box and a velocity arrow per obstacle, or a ray when depth is missing;
followed objects get a yellow sphere and their label on top."""

from __future__ import annotations

import math
from collections.abc import Sequence

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.obstacle_tracking import ObstacleTrack
from fastsam_ros.core.obstacles import Intrinsics, Obstacle

RED = ColorRGBA(r=1.0, g=0.2, b=0.1, a=0.6)
ORANGE = ColorRGBA(r=1.0, g=0.6, b=0.0, a=0.9)
WHITE = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
GREEN = ColorRGBA(r=0.2, g=1.0, b=0.3, a=0.9)
YELLOW = ColorRGBA(r=1.0, g=0.9, b=0.0, a=0.9)
FOLLOWED_SIZE = 0.35
"""Metres: the diameter of the sphere on a followed object."""
RAY_LENGTH = 1.0
MIN_SIZE = 0.05
"""Metres: the smallest box side drawn, so flat objects stay visible."""
VELOCITY_HORIZON_S = 1.0
"""A velocity arrow ends where the obstacle would be this many seconds later."""


def obstacle_label(masks: MaskSet, obstacle: Obstacle, track: ObstacleTrack | None = None) -> str:
    instance = masks[obstacle.index]
    name = instance.class_name or "object"
    label = name + (f" id{instance.track_id}" if instance.track_id >= 0 else "")
    label += f" {obstacle.distance:.2f} m" if obstacle.distance is not None else " (no depth)"
    if track is not None:
        label += f" {math.hypot(*track.velocity):.2f} m/s"
        if track.time_to_contact is not None:
            label += f" contact in {track.time_to_contact:.1f} s"
    return label


def obstacle_markers(
    header: Header,
    masks: MaskSet,
    obstacles: list[Obstacle],
    intrinsics: Intrinsics | None,
    tracks: dict[int, ObstacleTrack] | None = None,
    followed: Sequence[tuple[str, ObstacleTrack]] = (),
) -> MarkerArray:
    """Markers for one frame; the first deletes every marker of earlier frames.

    ``followed``: the label and 3D track of each followed object located in this frame.
    """
    tracks = tracks or {}
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    if intrinsics is None:
        return MarkerArray(markers=markers)
    for number, (text, track) in enumerate(followed):
        markers += _followed_markers(header, number, text, track)
    for number, obstacle in enumerate(obstacles):
        instance = masks[obstacle.index]
        x1, y1, x2, y2 = instance.box
        track = tracks.get(instance.track_id) if instance.track_id >= 0 else None
        label = Marker(header=header, ns="obstacle_labels", id=number, type=Marker.TEXT_VIEW_FACING)
        label.text, label.color, label.scale.z = obstacle_label(masks, obstacle, track), WHITE, 0.12
        label.pose.orientation.w = 1.0
        if obstacle.centroid is not None:
            body = Marker(header=header, ns="obstacles", id=number, type=Marker.CUBE, color=RED)
            body.pose.orientation.w = 1.0
            if obstacle.extent is not None:
                low, high = obstacle.extent
                centre = [(a + b) / 2 for a, b in zip(low, high, strict=True)]
                body.scale.x, body.scale.y, body.scale.z = (
                    max(b - a, MIN_SIZE) for a, b in zip(low, high, strict=True)
                )
            else:
                centre, distance = obstacle.centroid, obstacle.centroid[2]
                body.scale.x = max((x2 - x1) * distance / intrinsics.fx, MIN_SIZE)
                body.scale.y = max((y2 - y1) * distance / intrinsics.fy, MIN_SIZE)
                body.scale.z = 0.3
            body.pose.position = Point(x=centre[0], y=centre[1], z=centre[2])
            label.pose.position = Point(x=centre[0], y=centre[1] - body.scale.y / 2 - 0.1, z=centre[2])
            markers += [body, label]
            if track is not None:
                markers.append(_velocity_arrow(header, number, track))
            continue
        u, v = (x1 + x2) / 2, (y1 + y2) / 2
        ray = ((u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, 1.0)
        norm = math.sqrt(sum(c * c for c in ray))
        end = Point(x=ray[0] / norm * RAY_LENGTH, y=ray[1] / norm * RAY_LENGTH, z=ray[2] / norm * RAY_LENGTH)
        arrow = Marker(header=header, ns="obstacle_rays", id=number, type=Marker.ARROW, color=ORANGE)
        arrow.points = [Point(), end]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.02, 0.05, 0.08
        arrow.pose.orientation.w = 1.0
        label.pose.position = end
        markers += [arrow, label]
    return MarkerArray(markers=markers)


def _followed_markers(header: Header, number: int, text: str, track: ObstacleTrack) -> list[Marker]:
    """A sphere at the followed object's filtered position, its label just above it."""
    x, y, z = track.position
    sphere = Marker(header=header, ns="followed", id=number, type=Marker.SPHERE, color=YELLOW)
    sphere.pose.position = Point(x=x, y=y, z=z)
    sphere.pose.orientation.w = 1.0
    sphere.scale.x = sphere.scale.y = sphere.scale.z = FOLLOWED_SIZE
    label = Marker(header=header, ns="followed_labels", id=number, type=Marker.TEXT_VIEW_FACING, color=YELLOW)
    label.text, label.scale.z = text, 0.15
    label.pose.position = Point(x=x, y=y - FOLLOWED_SIZE, z=z)
    label.pose.orientation.w = 1.0
    return [sphere, label]


def _velocity_arrow(header: Header, number: int, track: ObstacleTrack) -> Marker:
    """From the filtered position to where the obstacle will be VELOCITY_HORIZON_S later."""
    start = Point(x=track.position[0], y=track.position[1], z=track.position[2])
    end = Point(
        x=start.x + track.velocity[0] * VELOCITY_HORIZON_S,
        y=start.y + track.velocity[1] * VELOCITY_HORIZON_S,
        z=start.z + track.velocity[2] * VELOCITY_HORIZON_S,
    )
    arrow = Marker(header=header, ns="obstacle_velocities", id=number, type=Marker.ARROW, color=GREEN)
    arrow.points = [start, end]
    arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.04, 0.08, 0.1
    arrow.pose.orientation.w = 1.0
    return arrow
