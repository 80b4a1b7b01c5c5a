"""Checks of a whole parameter set: each value alone, then what a value names.

Separate from the parameter table (fastsam_ros.core.parameters) because reading a tracker
settings file needs ultralytics' tracker defaults, and the table must stay a standard-library leaf.
"""

from __future__ import annotations

from typing import Any

from fastsam_ros.core.parameters import DEFAULTS, coerce, validate
from fastsam_ros.core.tracking import TrackerConfigError, tracker_settings


def problems(values: dict[str, Any], current: dict[str, Any] | None = None) -> list[str]:
    """Reasons why values cannot be used (empty when they can), each naming its parameter.

    ``current`` holds the other parameters' values, for checks that involve two parameters
    (a tracker settings file is read for the tracker it configures).
    """
    reasons = validate(values)
    if reasons:
        return reasons
    coerced, _ = coerce(values)
    merged = {**(current or DEFAULTS), **coerced}
    if {"tracker", "tracker_config"} & set(coerced) and merged["tracker"] != "none":
        try:
            tracker_settings(merged["tracker"], merged["tracker_config"])
        except TrackerConfigError as error:
            return [f"tracker_config: {error}"]
    return []
