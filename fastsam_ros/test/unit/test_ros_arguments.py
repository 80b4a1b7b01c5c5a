"""Command-line lists that mix integers and doubles, widened before rcl reads them (ros/arguments.py).

Each widened list is also given to rcl's own parser, so a test fails both when the rewrite is
wrong and when rcl would still refuse what it produces.
"""

from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context

from fastsam_ros.ros.arguments import widen_number_lists


def _rcl_reads(args: list[str]) -> bool:
    """Whether rcl accepts these arguments (it refuses a mixed list before any node exists)."""
    context = Context()
    try:
        rclpy.init(args=["node", "--ros-args", *args], context=context)
    except Exception:  # rcl's refusal is a plain RuntimeError-like error with its own message
        return False
    rclpy.shutdown(context=context)
    return True


@pytest.mark.parametrize("flag", ["-p", "--param"])
def test_a_list_of_integers_and_doubles_is_written_as_doubles_that_rcl_reads(flag):
    args = [flag, "obstacle_roi:=[0, 0.5, 1, 0.5, 1, 1]"]
    assert not _rcl_reads(args), "rcl refuses the list as typed (else the rewrite is not needed)"
    widened = widen_number_lists(args)
    assert widened == [flag, "obstacle_roi:=[0.0, 0.5, 1.0, 0.5, 1.0, 1.0]"]
    assert _rcl_reads(widened)


def test_only_the_value_after_a_parameter_flag_is_rewritten_and_the_input_is_left_alone():
    args = ["--ros-args", "-r", "a:=[0, 0.5]", "-p", "b:=[1, 2.5]", "c:=[3, 4.5]", "-p", "d:=[-1, 1e-3]"]
    before = list(args)
    assert widen_number_lists(args) == [
        "--ros-args", "-r", "a:=[0, 0.5]", "-p", "b:=[1.0, 2.5]", "c:=[3, 4.5]", "-p", "d:=[-1.0, 0.001]",
    ]  # fmt: skip
    assert args == before


def test_a_flag_in_first_place_is_read_as_a_flag_for_the_next_argument():
    assert widen_number_lists(["-p", "roi:=[0, 0.5]"]) == ["-p", "roi:=[0.0, 0.5]"]
    assert widen_number_lists(["roi:=[0, 0.5]", "-p"]) == ["roi:=[0, 0.5]", "-p"], "no value after the flag"


@pytest.mark.parametrize(
    "value",
    [
        "[1, 2, 3]",  # integers only: rcl reads them as integers
        "[0.5, 1.5]",  # doubles only
        "[]",  # empty
        "[1, 0.5, true]",  # a boolean is not a number
        "[1, 0.5, x]",  # a string
        "[1, 0.5, [2]]",  # a nested list
        "[1, 0.5, 1e1_0]",  # not a number for rcl, although Python's float takes it
        '["1", "2.5"]',  # quoted: strings for rcl and YAML
        "['1', 2.5]",
        "[1, 1e400]",  # out of a double's range: a string for rcl
        "[1, 1.0e+400]",
        "0.5",  # not a list
        "[1, 0.5",  # not YAML
        "{a: 1}",  # a mapping
    ],
)
def test_anything_else_passes_unchanged(value):
    args = ["-p", f"name:={value}"]
    assert widen_number_lists(args) == args


@pytest.mark.parametrize(
    ("typed", "widened"),
    [
        ("[-1, 1e3]", "[-1.0, 1000.0]"),  # YAML 1.1 reads 1e3 as a string; rcl as a double
        ("[1, inf, -inf]", "[1.0, inf, -inf]"),
        ("[0, nan]", "[0.0, nan]"),
        ("[2, .5, 5.]", "[2.0, 0.5, 5.0]"),
        ("[1, .inf, -Infinity, +inf]", "[1.0, inf, -inf, inf]"),
    ],
)
def test_numbers_that_rcl_reads_as_doubles_count_as_doubles(typed, widened):
    args = ["-p", f"name:={typed}"]
    assert not _rcl_reads(args)
    assert widen_number_lists(args) == ["-p", f"name:={widened}"]
    assert _rcl_reads(widen_number_lists(args))


def test_a_value_holding_the_separator_keeps_everything_after_the_first():
    assert widen_number_lists(["-p", "name:=[0, 0.5]:=x"]) == ["-p", "name:=[0, 0.5]:=x"], "not YAML: unchanged"
    assert widen_number_lists(["-p", "a:=[1, 0.5]:=[2, 0.5]"]) == ["-p", "a:=[1, 0.5]:=[2, 0.5]"], "not YAML"
    assert widen_number_lists(["-p", "ns.name:=[2, 0.25]"]) == ["-p", "ns.name:=[2.0, 0.25]"]


def test_an_argument_without_the_separator_after_a_flag_is_left_alone():
    args = ["-p", "params.yaml", "-p", "x:=[1, 1.5]"]
    assert widen_number_lists(args) == ["-p", "params.yaml", "-p", "x:=[1.0, 1.5]"]


@pytest.mark.parametrize("before", ["a:=[1, 0.5", "a:=0.5", "a:=[]"])
def test_a_value_left_alone_does_not_stop_the_lists_after_it_from_being_widened(before):
    assert widen_number_lists(["-p", before, "-p", "b:=[1, 0.5]"]) == ["-p", before, "-p", "b:=[1.0, 0.5]"]
