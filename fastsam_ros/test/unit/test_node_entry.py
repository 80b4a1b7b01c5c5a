"""The node processes' entry points (fastsam_ros.ros.process) run in this process: what they
return and print for each way a start can end, the stop request, the parent tie and the log
folder without HOME.

Real signals delivered to a node process, and a node that ends with the process that started
it, are tested in test/graph/test_node_process.py and test_play_hostile.py; these tests are fast
enough to run under every mutant of ros/process.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile

import pytest

from fastsam_ros.ros import process
from test_support.node_driver import SignalWhenReady, signal_handlers_kept
from test_support.own_context import NodeInOwnContext

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NODE = f"entry_test_{os.getpid()}"
"""The node's name: this process's own, so parallel test processes never meet."""


def _run(main, *ros_args: str) -> int:
    """main(argv) with this process's stop-signal handlers kept (the entry ignores both as it ends)."""
    with signal_handlers_kept(STOP_SIGNALS):
        return main(["fastsam_node", "--ros-args", "-r", f"__node:={NODE}", *ros_args])


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_a_lifecycle_node_waits_unconfigured_until_a_stop_signal(signum, capsys):
    """autostart false whatever the parameters say: weights that do not exist are not loaded yet."""
    watcher = NodeInOwnContext(f"entry_watcher_{os.getpid()}")

    def in_graph() -> bool:
        watcher.executor.spin_once(timeout_sec=0.05)
        return NODE in watcher.node.get_node_names()

    try:
        stopper = SignalWhenReady(signum, in_graph, timeout_s=60.0)
        code = _run(process.lifecycle_main, "-p", "model:=/no/such/weights.pt", "-p", "autostart:=true")
        stopper.join()
    finally:
        watcher.close()
    assert stopper.ready_in_time, "the node was in the graph until the signal"
    assert isinstance(stopper.handler.__self__, process.Shutdown), "which only the entry handles, not rclpy"
    assert code == 0 and "error" not in capsys.readouterr().err


def test_a_node_that_cannot_start_says_why_in_one_line_and_returns_2(capsys):
    assert _run(process.node_main, "-p", "model:=/no/such/weights.pt") == 2
    err = capsys.readouterr().err
    assert err.endswith(
        "fastsam_node: error: model weights not found: '/no/such/weights.pt' is not a readable file\n"
    ), err
    assert err.count("fastsam_node: error:") == 1
    assert _run(process.node_main, "-p", "conf:=2.0") == 2
    assert capsys.readouterr().err.endswith("fastsam_node: error: conf: must be in [0.0, 1.0], got 2.0\n")


@pytest.mark.parametrize(
    ("main", "program"), [(process.node_main, "fastsam_node"), (process.lifecycle_main, "fastsam_lifecycle_node")]
)
def test_invalid_ros_arguments_return_2_with_rcls_reason(capsys, main, program):
    assert _run(main, "-r") == 2
    assert capsys.readouterr().err == (
        f"{program}: error: invalid ROS arguments: failed to initialize rcl: "
        "Couldn't parse trailing -r flag. No remap rule found.\n"
    ), "rcl's reason without its source location"


def test_without_arguments_the_entry_reads_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fastsam_node", "--ros-args", "-p", "conf:=2.0"])
    with signal_handlers_kept(STOP_SIGNALS):
        assert process.node_main() == 2
    assert capsys.readouterr().err.endswith("fastsam_node: error: conf: must be in [0.0, 1.0], got 2.0\n")


def test_the_entry_ignores_stop_signals_once_it_has_ended():
    with signal_handlers_kept(STOP_SIGNALS):
        process.node_main(["fastsam_node", "--ros-args", "-p", "conf:=2.0"])
        assert [signal.getsignal(signum) for signum in STOP_SIGNALS] == [signal.SIG_IGN, signal.SIG_IGN]


def test_a_stop_request_only_sets_the_flag():
    shutdown = process.Shutdown()
    with signal_handlers_kept(STOP_SIGNALS):
        shutdown.install()
        for signum in STOP_SIGNALS:
            assert signal.getsignal(signum) == shutdown._on_signal
        assert not shutdown.requested.is_set()
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert shutdown.requested.is_set()


PR_GET_PDEATHSIG = 2


def _parent_death_signal() -> int:
    asked = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(asked), 0, 0, 0)
    return asked.value


@pytest.fixture
def no_parent_tie():
    """This process's parent-death signal as it was before the test, with none during it."""
    before = _parent_death_signal()
    ctypes.CDLL(None).prctl(process.PR_SET_PDEATHSIG, 0, 0, 0, 0)
    yield
    ctypes.CDLL(None).prctl(process.PR_SET_PDEATHSIG, before, 0, 0, 0)


def test_a_node_whose_parent_has_gone_does_not_start(monkeypatch, capsys, no_parent_tie):
    monkeypatch.setenv(process.PARENT_PID_VARIABLE, str(os.getppid() + 1_000_000))
    assert _run(process.node_main, "-p", "conf:=2.0") == 0, "ends before reading its parameters"
    assert capsys.readouterr().err == ""
    assert process.PARENT_PID_VARIABLE not in os.environ, "not handed on to what the node starts"


@pytest.mark.parametrize(("value", "gone"), [("", False), ("12ab", False), ("parent", False), ("other", True)])
def test_the_parent_variable_ties_the_node_to_that_process(monkeypatch, no_parent_tie, value, gone):
    numbers = {"parent": str(os.getppid()), "other": str(os.getppid() + 1_000_000)}
    monkeypatch.setenv(process.PARENT_PID_VARIABLE, numbers.get(value, value))
    assert process._parent_gone("fastsam_node") is gone
    assert _parent_death_signal() == (signal.SIGTERM if value in numbers else 0)


def test_a_parent_tie_the_kernel_refuses_is_a_warning_naming_its_reason(monkeypatch, capsys, no_parent_tie):
    """The kernel refuses a signal number it does not know, as it would refuse the tie on a kernel without it."""
    monkeypatch.setattr(process.signal, "SIGTERM", 1000)
    monkeypatch.setenv(process.PARENT_PID_VARIABLE, str(os.getppid()))
    assert process._parent_gone("fastsam_node") is False
    assert capsys.readouterr().err == "fastsam_node: warning: cannot tie this process to its parent: Invalid argument\n"
    assert _parent_death_signal() == 0


def test_without_home_ros_logs_go_to_a_folder_of_this_user(monkeypatch, tmp_path):
    for name in ("HOME", "ROS_LOG_DIR", "ROS_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = process._log_dir_without_home()
    expected = tmp_path / f"fastsam_ros-{os.getuid()}" / "log"
    assert folder == str(expected) == os.environ["ROS_LOG_DIR"] and expected.is_dir()
    monkeypatch.delenv("ROS_LOG_DIR")
    assert process._log_dir_without_home() == folder, "the folder of an earlier run is taken again"
    monkeypatch.delenv("ROS_LOG_DIR")
    for name in ("HOME", "ROS_HOME", "ROS_LOG_DIR"):
        monkeypatch.setenv(name, "/somewhere")
        assert process._log_dir_without_home() is None, name
        monkeypatch.delenv(name)
