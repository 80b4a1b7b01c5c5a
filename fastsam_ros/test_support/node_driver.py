"""A node process for tests and benchmarks (its client, its memory); free ports; signal handlers kept."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fastsam_ros.tools.node_client import NodeClient, isolated_ros_env, start_node, stop_node


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def catches(pid: int, signum: int) -> bool:
    """Whether a process has a handler for a signal (Linux: the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@contextlib.contextmanager
def signal_handlers_kept(numbers: Iterable[int]) -> Iterator[None]:
    """Put this process's handlers of these signals back afterwards, for code that installs its own."""
    saved = {number: signal.getsignal(number) for number in numbers}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


class SignalWhenReady:
    """Calls the handler a program's main() installs for signum, as the kernel would, once ready()
    holds: for tests that run main() in this process. After timeout_s the handler is called all the
    same, if the program installed one, so that a program that misses its cue cannot hang the test."""

    def __init__(self, signum: int, ready: Callable[[], bool] = lambda: True, timeout_s: float = 20.0) -> None:
        self.signum = signum
        self.ready_in_time = False
        self.handler: Callable | None = None
        self.called_at: float | None = None
        self._before = signal.getsignal(signum)
        self._ready = ready
        self._timeout_s = timeout_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _installed(self) -> bool:
        return signal.getsignal(self.signum) is not self._before

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline and not self.ready_in_time:
            self.ready_in_time = self._installed() and self._ready()
            time.sleep(0.01)
        if self._installed():
            self.handler, self.called_at = signal.getsignal(self.signum), time.monotonic()
            self.handler(self.signum, None)

    def join(self) -> None:
        self._thread.join(self._timeout_s)


class NodeProcess:
    """fastsam_node in its own process on a private graph, a client here, and the node's memory.

    Ready once the node answers frames and its text backend has loaded, so that loading
    does not share the CPU with what is measured next.
    """

    def __init__(self, workdir: Path, ros_args: list[str], camera: str = "/bench/camera/image_raw") -> None:
        import psutil

        from fastsam_msgs.srv import TextPrompt

        os.environ.update(isolated_ros_env())
        self.camera = camera
        self.log_path = workdir / "node.log"
        self.process = start_node(["-r", f"image:={camera}", *ros_args], dict(os.environ), str(self.log_path))
        self._psutil_process = psutil.Process(self.process.pid)
        self.client = NodeClient(camera, name="fastsam_driver", outputs=("instances",))
        self.client.process = self.process
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample_memory, daemon=True)
        self._sampler.start()
        self.client.wait(lambda: self.client.camera.get_subscription_count() > 0, 180.0, "the node to subscribe")
        self.client.warm_up()
        self.client.call(TextPrompt, "/fastsam/prompt_text", TextPrompt.Request(texts=["warm-up"]), timeout=180.0)

    def rss(self) -> int:
        return self._psutil_process.memory_info().rss

    def _sample_memory(self) -> None:
        import psutil

        while self._sampling and self.process.poll() is None:
            try:
                self.peak_rss = max(self.peak_rss, self.rss())
            except psutil.Error:
                return
            time.sleep(0.05)

    def close(self) -> int:
        self._sampling = False
        self.client.close()
        return stop_node(self.process)
