"""Command-line parameter values as people type them, made acceptable to ROS.

rcl refuses `-p 'obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]'` before the node exists (a YAML
sequence must hold one type), although every number is a fine double. Such lists are
rewritten as doubles before ROS parses the arguments; everything else passes unchanged.
Upstream entry: fastsam_ros.core.compat.RCL_MIXED_NUMBER_LISTS.
"""

from __future__ import annotations

import yaml

PARAMETER_FLAGS = ("-p", "--param")


def widen_number_lists(args: list[str]) -> list[str]:
    """args with every `-p name:=[...]` list that mixes integers and doubles written as doubles."""
    widened = list(args)
    for index in range(1, len(widened)):
        if widened[index - 1] not in PARAMETER_FLAGS or ":=" not in widened[index]:
            continue
        name, text = widened[index].split(":=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if not isinstance(value, list) or not value:
            continue
        numbers = [number for number in map(_number_as_rcl_reads_it, value) if number is not None]
        if len(numbers) == len(value) and any(isinstance(number, float) for number in numbers):
            widened[index] = f"{name}:=[{', '.join(repr(float(number)) for number in numbers)}]"
    return widened


def _number_as_rcl_reads_it(item: object) -> int | float | None:
    """The number rcl reads in a list item, or None. rcl takes `1e3`, `inf` and `nan` as doubles,
    which YAML 1.1 (and so PyYAML) reads as strings."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        return item
    if isinstance(item, str) and "_" not in item:
        try:
            return float(item)
        except ValueError:
            return None
    return None
