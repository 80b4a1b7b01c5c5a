"""Tracked obstacles in 3D: filtered position and velocity per track id, and time to contact.

The 2D tracker keeps an object's id across frames; here each id with a 3D centroid gets a
constant-velocity Kalman filter in the camera's optical frame (x right, y down, z forward),
so a planner sees where the obstacle is heading, not only where it is. A track that goes
unseen for longer than ``max_gap_s`` is forgotten; an id that comes back later starts over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MotionSettings:
    accel_noise: float = 0.5
    """Spectral density of the white-noise acceleration, m^2/s^3: how quickly obstacles may change
    velocity (people and vehicles around a robot change speed by about 1 m/s^2)."""
    position_noise: float = 0.02
    """Standard deviation of a centroid measurement as a share of its range (at least at 1 m):
    RGB-D depth noise is a few per cent of the range."""
    initial_speed_std: float = 3.0
    """Prior standard deviation of a new track's velocity per axis, m/s (a person runs at ~3 m/s)."""
    max_gap_s: float = 1.0
    """A track unseen for longer than this is dropped."""
    min_closing_speed: float = 0.05
    """Closing speeds below this (m/s) give no time to contact: the obstacle is not approaching."""


class ConstantVelocityFilter:
    """Kalman filter on [x, y, z, vx, vy, vz] with position measurements."""

    def __init__(self, position: np.ndarray, position_std: float, speed_std: float) -> None:
        self.state = np.concatenate([np.asarray(position, dtype=np.float64), np.zeros(3)])
        self.covariance = np.diag([position_std**2] * 3 + [speed_std**2] * 3)

    def predict(self, dt: float, accel_noise: float) -> None:
        transition = np.eye(6)
        transition[:3, 3:] = np.eye(3) * dt
        block = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]]) * accel_noise
        process = np.kron(block, np.eye(3))
        self.state = transition @ self.state
        self.covariance = transition @ self.covariance @ transition.T + process

    def update(self, position: np.ndarray, position_std: float) -> None:
        innovation = np.asarray(position, dtype=np.float64) - self.state[:3]
        innovation_cov = self.covariance[:3, :3] + np.eye(3) * position_std**2
        gain = self.covariance[:, :3] @ np.linalg.inv(innovation_cov)
        self.state = self.state + gain @ innovation
        self.covariance = (np.eye(6) - gain[:, :3] @ np.eye(3, 6)) @ self.covariance
        self.covariance = (self.covariance + self.covariance.T) / 2

    @property
    def position(self) -> np.ndarray:
        return self.state[:3]

    @property
    def velocity(self) -> np.ndarray:
        return self.state[3:]


@dataclass(frozen=True)
class ObstacleTrack:
    """One tracked obstacle at one frame's time."""

    track_id: int
    position: tuple[float, float, float]
    velocity: tuple[float, float, float]
    position_variance: tuple[float, float, float]
    velocity_variance: tuple[float, float, float]
    age_s: float
    """Seconds since this track was first seen in 3D."""
    time_to_contact: float | None
    """Range divided by closing speed, seconds; None unless the obstacle approaches the camera."""


@dataclass
class _TrackState:
    filter: ConstantVelocityFilter
    first_ns: int
    last_ns: int


class ObstacleMotionTracker:
    """Per camera: a filter per track id, fed with each frame's 3D centroids."""

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self._tracks: dict[int, _TrackState] = {}

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, stamp_ns: int, centroids: dict[int, tuple[float, float, float]]) -> dict[int, ObstacleTrack]:
        """The tracks seen in this frame, after filtering in their centroids.

        A frame stamped no later than a track's last measurement (a repeat, or out of
        order) leaves that track's filter as it was.
        """
        settings = self.settings
        out = {}
        for track_id, centroid in centroids.items():
            position = np.asarray(centroid, dtype=np.float64)
            std = settings.position_noise * max(float(np.linalg.norm(position)), 1.0)
            state = self._tracks.get(track_id)
            if state is None:
                state = _TrackState(
                    ConstantVelocityFilter(position, std, settings.initial_speed_std), stamp_ns, stamp_ns
                )
                self._tracks[track_id] = state
            elif stamp_ns > state.last_ns:
                state.filter.predict((stamp_ns - state.last_ns) / 1e9, settings.accel_noise)
                state.filter.update(position, std)
                state.last_ns = stamp_ns
            out[track_id] = self._snapshot(track_id, state, stamp_ns)
        self._prune(stamp_ns)
        return out

    def _snapshot(self, track_id: int, state: _TrackState, stamp_ns: int) -> ObstacleTrack:
        position, velocity = state.filter.position, state.filter.velocity
        variances = np.diag(state.filter.covariance)
        return ObstacleTrack(
            track_id=track_id,
            position=tuple(float(v) for v in position),
            velocity=tuple(float(v) for v in velocity),
            position_variance=tuple(float(v) for v in variances[:3]),
            velocity_variance=tuple(float(v) for v in variances[3:]),
            age_s=max(stamp_ns - state.first_ns, 0) / 1e9,
            time_to_contact=time_to_contact(position, velocity, self.settings.min_closing_speed),
        )

    def _prune(self, stamp_ns: int) -> None:
        limit = self.settings.max_gap_s * 1e9
        for track_id in [t for t, state in self._tracks.items() if stamp_ns - state.last_ns > limit]:
            del self._tracks[track_id]

    def reset(self) -> None:
        self._tracks.clear()


def time_to_contact(position: np.ndarray, velocity: np.ndarray, min_closing_speed: float) -> float | None:
    """Seconds until the range reaches zero at the current closing speed, if approaching."""
    distance = float(np.linalg.norm(position))
    if distance == 0.0:
        return 0.0
    closing = -float(np.dot(position, velocity)) / distance
    if not math.isfinite(closing) or closing < min_closing_speed:
        return None
    return distance / closing
