"""The supervised inference worker: no exception ends it, and a dead worker is restarted."""

from __future__ import annotations

import threading
import time

from fastsam_ros.core.frame_mailbox import LatestFrameMailbox
from fastsam_ros.core.inference_worker import InferenceWorker


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_an_exception_from_processing_does_not_end_the_worker():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    processed, errors = [], []

    def process(frames: dict[str, int], queued: bool) -> None:
        if frames[""] == 1:
            raise RuntimeError("bad frame")
        processed.append(frames[""])

    worker = InferenceWorker(mailbox, process, errors.append)
    mailbox.put(1)
    _wait(lambda: len(errors) == 1)
    mailbox.put(2)
    _wait(lambda: processed == [2])
    assert worker.alive and worker.check() is None
    assert isinstance(errors[0], RuntimeError)
    worker.stop()
    assert not worker.alive


def test_a_dead_worker_is_restarted_by_check_and_says_why():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    processed = []

    def process(frames: dict[str, int], queued: bool) -> None:
        if frames[""] == 1:
            raise RuntimeError("bad frame")
        processed.append(frames[""])

    def failing_report(error: Exception) -> None:
        raise ValueError("the report itself failed")

    worker = InferenceWorker(mailbox, process, failing_report)
    mailbox.put(1)
    _wait(lambda: not worker.alive)
    reason = worker.check()
    assert reason is not None and "the report itself failed" in reason
    assert worker.alive and worker.check() is None
    mailbox.put(2)
    _wait(lambda: processed == [2])
    worker.stop()


def test_stop_ends_the_thread_and_a_stopped_worker_is_not_restarted():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    worker = InferenceWorker(mailbox, lambda frames, queued: None, lambda error: None)
    worker.stop(timeout=5.0)
    assert not worker.alive and worker.check() is None
    assert not any(t.name == "fastsam_inference" for t in threading.enumerate())


def test_frames_queue_when_a_camera_is_faster_than_the_processing_and_not_for_request_and_response():
    """Processing takes 40 ms. A client that sends the next frame once answered never queues, however
    eager; a camera every 5 ms does; once it slows to every 150 ms the frames stop queueing."""
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    calls: list[tuple[int, bool]] = []
    done = threading.Event()

    def process(frames: dict[str, int], queued: bool) -> None:
        time.sleep(0.04)
        calls.append((frames[""], queued))
        done.set()

    worker = InferenceWorker(mailbox, process, lambda error: None)
    for frame in range(8):
        done.clear()
        mailbox.put(frame)
        assert done.wait(5.0)
    assert [queued for _, queued in calls] == [False] * 8
    for frame in range(100, 200):
        mailbox.put(frame)
        time.sleep(0.005)
    _wait(lambda: calls[-1][0] == 199)
    streamed = [queued for frame, queued in calls if frame >= 100]
    assert streamed[2:] == [True] * len(streamed[2:]), streamed
    for frame in range(300, 312):
        time.sleep(0.15)
        mailbox.put(frame)
    _wait(lambda: calls[-1][0] == 311)
    assert [queued for frame, queued in calls if frame >= 306] == [False] * 6
    worker.stop()


def test_the_worker_runs_on_a_named_daemon_thread():
    """Named so that a stack dump says which thread is inference; a daemon so that a forward pass that
    never returns cannot keep the process from exiting."""
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    worker = InferenceWorker(mailbox, lambda frames, queued: None, lambda error: None)
    [thread] = [t for t in threading.enumerate() if t.name == "fastsam_inference"]
    assert thread.daemon and thread.is_alive()
    worker.stop()


def test_an_idle_worker_keeps_waiting_for_frames():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    processed = []
    worker = InferenceWorker(mailbox, lambda frames, queued: processed.append(frames[""]), lambda error: None)
    time.sleep(1.2)  # more than one wait for frames that do not come
    assert worker.alive
    mailbox.put(5)
    _wait(lambda: processed == [5])
    worker.stop()


def test_stop_gives_up_waiting_for_a_stuck_forward_pass_after_its_timeout():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    release, started = threading.Event(), threading.Event()

    def stuck(frames: dict[str, int], queued: bool) -> None:
        started.set()
        release.wait(10.0)

    worker = InferenceWorker(mailbox, stuck, lambda error: None)
    mailbox.put(1)
    assert started.wait(5.0)
    begun = time.monotonic()
    worker.stop(timeout=0.2)
    assert time.monotonic() - begun < 2.0 and worker.alive
    release.set()
    _wait(lambda: not worker.alive)
