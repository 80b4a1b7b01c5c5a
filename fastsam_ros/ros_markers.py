"""rviz markers for obstacles: a box at each 3D centroid, or a ray when depth is missing."""

from __future__ import annotations

import math

from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_ros.mask_set import MaskSet
from fastsam_ros.obstacles import Intrinsics, Obstacle

RED = ColorRGBA(r=1.0, g=0.2, b=0.1, a=0.6)
ORANGE = ColorRGBA(r=1.0, g=0.6, b=0.0, a=0.9)
WHITE = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
RAY_LENGTH = 1.0


def obstacle_label(masks: MaskSet, obstacle: Obstacle) -> str:
    instance = masks[obstacle.index]
    name = instance.class_name or "object"
    track = f" id{instance.track_id}" if instance.track_id >= 0 else ""
    distance = f" {obstacle.distance:.2f} m" if obstacle.distance is not None else " (no depth)"
    return f"{name}{track}{distance}"


def obstacle_markers(
    header: Header, masks: MaskSet, obstacles: list[Obstacle], intrinsics: Intrinsics | None
) -> MarkerArray:
    """Markers for one frame; the first deletes every marker of earlier frames."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    if intrinsics is None:
        return MarkerArray(markers=markers)
    for number, obstacle in enumerate(obstacles):
        instance = masks[obstacle.index]
        x1, y1, x2, y2 = instance.box
        label = Marker(header=header, ns="obstacle_labels", id=number, type=Marker.TEXT_VIEW_FACING)
        label.text, label.color, label.scale.z = obstacle_label(masks, obstacle), WHITE, 0.12
        label.pose.orientation.w = 1.0
        if obstacle.centroid is not None:
            distance = obstacle.centroid[2]
            body = Marker(header=header, ns="obstacles", id=number, type=Marker.CUBE, color=RED)
            body.pose.position = Point(x=obstacle.centroid[0], y=obstacle.centroid[1], z=obstacle.centroid[2])
            body.pose.orientation.w = 1.0
            body.scale.x = max((x2 - x1) * distance / intrinsics.fx, 0.05)
            body.scale.y = max((y2 - y1) * distance / intrinsics.fy, 0.05)
            body.scale.z = 0.3
            label.pose.position = Point(
                x=body.pose.position.x, y=body.pose.position.y - body.scale.y / 2 - 0.1, z=body.pose.position.z
            )
            markers += [body, label]
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
