"""The node processes' entry points: signals from the first instruction on, then ROS.

Signal handlers are installed before the heavy imports (torch takes seconds), so a
SIGINT or SIGTERM at any moment ends the process cleanly with exit code 0: during
start-up once the current step is done, while running at the next spin slice, and during
shutdown further signals change nothing. A text model still loading in the background (a first
export takes seconds) is not waited for: the process then ends without finalizing the
interpreter, which would abort under the loader's native code. Without HOME, ROS logging gets
a directory of its own instead of failing. Invalid parameters exit with code 2 and one line.
A node started by another process with FASTSAM_ROS_PARENT_PID set ends with that process,
even when it is killed (SIGKILL, the OOM killer) and has no chance to stop the node.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from fastsam_ros.core.signal_flag import SignalFlag

SPIN_SLICE_S = 0.25
"""Python runs signal handlers only between spin slices; also bounds the exit delay."""
PARENT_PID_VARIABLE = "FASTSAM_ROS_PARENT_PID"
"""Set by a tool that starts the node, to its own pid: the node then ends when that process ends."""
PR_SET_PDEATHSIG = 1


class Shutdown:
    """A SIGINT or SIGTERM only records the request; the process acts on it at safe points.

    Raising from the handler instead would land the exception inside whatever runs, native
    code included: torch's import then aborts the process. So a signal during start-up
    takes effect once the current step (imports, ROS start, model loading) is done.
    """

    def __init__(self) -> None:
        self.requested = SignalFlag()

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested.set()


def _log_dir_without_home() -> str | None:
    """ROS logging fails without HOME; give it a private directory and say so
    (fastsam_ros.core.compat.RCL_LOGGING_NEEDS_HOME)."""
    if os.environ.get("HOME") or os.environ.get("ROS_LOG_DIR") or os.environ.get("ROS_HOME"):
        return None
    directory = Path(tempfile.gettempdir()) / f"fastsam_ros-{os.getuid()}" / "log"
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["ROS_LOG_DIR"] = str(directory)
    return str(directory)


def _parent_gone(program: str) -> bool:
    """Ask the kernel for SIGTERM when the process named by PARENT_PID_VARIABLE ends (Linux);
    True when it has ended already.

    The parent may die before the request is made, so the parent is checked after it: an
    orphan has been handed to another process. The kernel sends the signal when the parent's
    thread that started this process ends, so the parent must start it from its main thread.
    """
    parent = os.environ.pop(PARENT_PID_VARIABLE, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        print(f"{program}: warning: cannot tie this process to its parent: {reason}", file=sys.stderr)
    return os.getppid() != int(parent)


def _run(program: str, args: list[str] | None, waits_for_manager: bool) -> int:
    shutdown = Shutdown()
    shutdown.install()
    if _parent_gone(program):
        return 0
    node: Any = None
    try:
        from fastsam_ros.core.memory import bound_heap_growth

        bound_heap_growth()
        log_dir = _log_dir_without_home()
        import rclpy
        from rclpy.executors import ExternalShutdownException
        from rclpy.parameter import Parameter
        from rclpy.signals import SignalHandlerOptions

        from fastsam_ros.core.backends.model_errors import ModelLoadError
        from fastsam_ros.core.parameters import ConfigError
        from fastsam_ros.ros.arguments import widen_number_lists
        from fastsam_ros.ros.executor import node_executor

        if shutdown.requested.is_set():
            return 0
        # rclpy's own handlers would shut the context down under the worker's feet.
        try:
            arguments = widen_number_lists(sys.argv if args is None else args)
            rclpy.init(args=arguments, signal_handler_options=SignalHandlerOptions.NO)
        except rclpy.impl.implementation_singleton.rclpy_implementation.RCLError as error:
            print(f"{program}: error: invalid ROS arguments: {str(error).split(', at ')[0]}", file=sys.stderr)
            return 2
        if shutdown.requested.is_set():
            return 0
        from fastsam_ros.ros.node import FastSamNode

        try:
            overrides = [Parameter("autostart", value=False)] if waits_for_manager else []
            node = FastSamNode(parameter_overrides=overrides)
        except (ConfigError, ModelLoadError) as error:
            print(f"{program}: error: {error}", file=sys.stderr)
            return 2
        if log_dir is not None:
            node.get_logger().warning(f"HOME is not set: ROS logs go to {log_dir}")
        if shutdown.requested.is_set():
            return 0
        executor = node_executor(num_threads=4)
        executor.add_node(node)
        try:
            while rclpy.ok() and not shutdown.requested.is_set():
                executor.spin_once(timeout_sec=SPIN_SLICE_S)
        except ExternalShutdownException:
            pass
        finally:
            executor.shutdown()
        return 0
    except KeyboardInterrupt:  # SIGINT before the handlers were installed, or from the terminal
        return 0
    finally:
        shutdown.requested.set()
        _close(node)
        # Python puts its own handlers back to the default action while it finalizes, so a
        # late signal would still kill the exiting process; ignored ones stay ignored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _close(node: Any) -> None:
    """Stop the node's threads before the ROS context goes down (a start that failed half way
    has released what it built, and leaves no node to close)."""
    if "rclpy" not in sys.modules:
        return
    from fastsam_ros.ros.graph_exit import leave_graph

    if node is not None:
        node.close()
    leave_graph(node)


def _exit(code: int) -> int:
    """The exit code, or, while a text model still loads, the end of the process with it: the
    node has left the graph, and only the interpreter's finalization is skipped."""
    prompts = sys.modules.get("fastsam_ros.core.text_prompts")
    if prompts is not None and any(thread.name == prompts.LOADER_THREAD for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def node_main(args: list[str] | None = None) -> int:
    """The node, configured and active from the start (autostart true unless set otherwise)."""
    return _exit(_run("fastsam_node", args, waits_for_manager=False))


def lifecycle_main(args: list[str] | None = None) -> int:
    """The same node left unconfigured for a lifecycle manager: autostart false, whatever the parameters say."""
    return _exit(_run("fastsam_lifecycle_node", args, waits_for_manager=True))
