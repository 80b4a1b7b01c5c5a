"""Command-line parameter values as people type them, made acceptable to ROS.

rcl refuses `-p 'obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]'` before the node exists (a YAML
sequence must hold one type), although every number is a fine double. Such lists are
rewritten as doubles before ROS parses the arguments; everything else passes unchanged.
Upstream entry: fastsam_ros.core.compat.RCL_MIXED_NUMBER_LISTS.
"""

from __future__ import annotations

import math

import yaml

PARAMETER_FLAGS = ("-p", "--param")
INFINITIES = ("inf", ".inf", "infinity")
"""How an infinite double is written (after its sign), in YAML and for rcl."""


def widen_number_lists(args: list[str]) -> list[str]:
    """args with every `-p name:=[...]` list that mixes integers and doubles written as doubles."""
    widened = list(args)
    for index in range(1, len(widened)):
        if widened[index - 1] not in PARAMETER_FLAGS or ":=" not in widened[index]:
            continue
        name, text = widened[index].split(":=", 1)
        try:
            sequence = yaml.compose(text)
        except yaml.YAMLError:
            continue
        if not isinstance(sequence, yaml.SequenceNode) or not sequence.value:
            continue
        numbers = [_number_as_rcl_reads_it(item) for item in sequence.value]
        if None not in numbers and any(isinstance(number, float) for number in numbers):
            widened[index] = f"{name}:=[{', '.join(repr(float(number)) for number in numbers)}]"
    return widened


def _number_as_rcl_reads_it(item: yaml.Node) -> int | float | None:
    """The number rcl reads in a list item, or None.

    Only a plain (unquoted) scalar is a number: `"1"` is a string to both. rcl takes `1e3`, `inf`
    and `nan` as doubles, which YAML 1.1 (and so PyYAML) reads as strings; a number out of a
    double's range (`1e400`) is a string to rcl.
    """
    if not isinstance(item, yaml.ScalarNode) or item.style is not None:
        return None
    value = yaml.safe_load(item.value)
    if isinstance(value, str) and "_" not in value:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isinf(value) and item.value.lstrip("+-").lower() not in INFINITIES:
        return None
    return value
