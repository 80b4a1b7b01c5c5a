"""Health thresholds on a simulated clock."""

from __future__ import annotations

from fastsam_ros.health import ERROR, OK, WARN, HealthLimits, HealthMonitor


def test_steady_stream_is_ok_with_its_figures():
    monitor = HealthMonitor(HealthLimits(max_latency_ms=200.0), window_s=5.0)
    for i in range(50):
        monitor.received(now=i * 0.1)
        monitor.processed(100.0 + i % 3, now=i * 0.1)
    report = monitor.report(now=5.0, extra={"device": "cpu"})
    assert report.level == OK and report.message == "segmenting"
    assert float(report.values["fps"]) == 10.0
    assert 100.0 <= float(report.values["latency p50 ms"]) <= 102.0
    assert report.values["device"] == "cpu" and report.values["frames processed"] == "50"


def test_slow_processing_warns():
    monitor = HealthMonitor(HealthLimits(max_latency_ms=200.0))
    for i in range(10):
        monitor.received(now=i * 0.1)
        monitor.processed(450.0, now=i * 0.1)
    report = monitor.report(now=1.0)
    assert report.level == WARN and "latency p95 450 ms above 200 ms" in report.message


def test_drops_warn_and_leave_the_window():
    monitor = HealthMonitor(HealthLimits(max_drop_ratio=0.5), window_s=5.0)
    for i in range(30):
        monitor.received(now=i * 0.1)
    monitor.dropped(20, now=2.9)
    monitor.processed(100.0, now=3.0)
    report = monitor.report(now=3.0)
    assert report.level == WARN and "67% of frames dropped" in report.message
    monitor.processed(100.0, now=9.0)
    assert monitor.report(now=9.0).level == OK
    assert monitor.report(now=9.0).values["frames dropped"] == "20"


def test_stale_input_warns_only_after_the_first_frame():
    monitor = HealthMonitor(HealthLimits(stale_after_s=5.0))
    assert monitor.report(now=100.0).message == "waiting for the first frame"
    monitor.processed(50.0, now=100.0)
    report = monitor.report(now=107.0)
    assert report.level == WARN and "no frame processed for 7 s" in report.message


def test_frames_per_forward_pass_shows_batching_in_the_window():
    monitor = HealthMonitor(window_s=5.0)
    assert monitor.report(now=0.0).values["frames per forward pass"] == "nan"
    for second, frames in enumerate((1, 1, 4, 4, 3), start=1):
        monitor.forward_pass(frames, now=float(second))
    assert monitor.report(now=5.0).values["frames per forward pass"] == "2.60"
    values = monitor.report(now=7.5).values
    assert values["frames per forward pass"] == "3.67" and values["forward passes"] == "5"


def test_a_restarted_worker_is_an_error_until_a_frame_is_processed_again():
    monitor = HealthMonitor()
    monitor.processed(50.0, now=0.0)
    monitor.failed(2)
    monitor.worker_restarted("RuntimeError('boom')")
    report = monitor.report(now=1.0)
    assert report.level == ERROR and "inference worker died and was restarted: RuntimeError('boom')" in report.message
    assert report.values["frames failed"] == "2" and report.values["worker restarts"] == "1"
    monitor.processed(50.0, now=1.5)
    assert monitor.report(now=2.0).level == OK
