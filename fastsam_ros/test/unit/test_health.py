"""Health thresholds on a simulated clock."""

from __future__ import annotations

import warnings

from hypothesis import given
from hypothesis import strategies as st

from fastsam_ros.core.health import ERROR, OK, WARN, HealthLimits, HealthMonitor


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


@given(
    stale_after_s=st.floats(0.5, 20.0),
    window_s=st.floats(0.5, 20.0),
    gap_s=st.floats(0.0, 40.0),
)
def test_staleness_follows_stale_after_s_not_the_window(stale_after_s, window_s, gap_s):
    monitor = HealthMonitor(HealthLimits(stale_after_s=stale_after_s), window_s=window_s)
    monitor.processed(50.0, now=1000.0)
    now = 1000.0 + gap_s
    report = monitor.report(now=now)
    stale = "no frame processed" in report.message
    assert stale == (now - 1000.0 > stale_after_s)
    assert report.level == (WARN if stale else OK)


def test_a_short_stale_limit_warns_inside_a_long_window():
    monitor = HealthMonitor(HealthLimits(stale_after_s=1.0), window_s=10.0)
    monitor.processed(50.0, now=0.0)
    assert monitor.report(now=1.0).level == OK, "exactly the limit is not yet stale"
    report = monitor.report(now=3.0)
    assert report.level == WARN and report.message == "no frame processed for 3 s"


@given(latency=st.floats(1.0, 2000.0), limit=st.floats(1.0, 2000.0))
def test_latency_warns_only_above_the_limit(latency, limit):
    monitor = HealthMonitor(HealthLimits(max_latency_ms=limit))
    monitor.processed(latency, now=0.0)
    assert (monitor.report(now=0.0).level == WARN) == (latency > limit)


@given(received=st.integers(1, 40), dropped=st.integers(0, 40), limit=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_drops_warn_only_above_the_ratio(received, dropped, limit):
    monitor = HealthMonitor(HealthLimits(max_drop_ratio=limit), window_s=5.0)
    for _ in range(received):
        monitor.received(now=1.0)
    monitor.dropped(dropped, now=1.0)
    report = monitor.report(now=1.0)
    assert (report.level == WARN) == (dropped / received > limit)
    assert report.values["dropped in window"] == str(dropped)
    assert report.values["received in window"] == str(received)


def test_the_window_keeps_exactly_the_last_window_s_seconds():
    monitor = HealthMonitor(window_s=2.0)
    for second in range(6):
        monitor.received(now=float(second))
        monitor.processed(10.0 * (second + 1), now=float(second))
        monitor.dropped(1, now=float(second))
        monitor.forward_pass(second + 1, now=float(second))
    monitor.rejected()
    values = monitor.report(now=5.0).values
    assert values["received in window"] == "3" and values["dropped in window"] == "3", "seconds 3, 4 and 5"
    assert values["fps"] == "1.50"
    assert values["latency p50 ms"] == "50.0" and values["latency p95 ms"] == "59.0"
    assert values["frames per forward pass"] == "5.00"
    assert values["frames processed"] == "6" and values["frames dropped"] == "6"
    assert values["frames rejected"] == "1" and values["forward passes"] == "6"


def test_no_frames_reports_nan_figures_and_waits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" in the node's log
        report = HealthMonitor().report(now=0.0)
    assert report.level == OK and report.message == "waiting for the first frame"
    assert report.values["latency p50 ms"] == "nan" and report.values["fps"] == "0.00"
    assert report.values["frames per forward pass"] == "nan"


def test_the_default_window_is_five_seconds():
    monitor = HealthMonitor()
    monitor.processed(50.0, now=0.0)
    assert monitor.report(now=5.0).values["fps"] == "0.20"
    assert monitor.report(now=5.01).values["fps"] == "0.00"


def test_a_dead_worker_is_reported_with_the_other_problems():
    monitor = HealthMonitor(HealthLimits(stale_after_s=1.0))
    monitor.processed(50.0, now=0.0)
    monitor.worker_restarted("boom")
    report = monitor.report(now=2.0)
    assert report.level == ERROR
    assert report.message == "inference worker died and was restarted: boom; no frame processed for 2 s"


def test_several_problems_are_listed_together():
    monitor = HealthMonitor(HealthLimits(max_latency_ms=10.0, max_drop_ratio=0.1, stale_after_s=1.0))
    monitor.received(now=0.0)
    monitor.dropped(1, now=0.0)
    monitor.processed(100.0, now=0.0)
    report = monitor.report(now=2.0)
    assert report.message.split("; ") == [
        "latency p95 100 ms above 10 ms",
        "100% of frames dropped (limit 10%)",
        "no frame processed for 2 s",
    ]


def test_events_without_a_time_are_stamped_now():
    monitor = HealthMonitor(window_s=60.0)
    monitor.received()
    monitor.processed(10.0)
    monitor.dropped()
    monitor.forward_pass(2)
    monitor.rejected()
    monitor.rejected()
    values = monitor.report().values
    assert values["received in window"] == "1" and values["dropped in window"] == "1"
    assert values["frames per forward pass"] == "2.00" and values["frames rejected"] == "2"


def test_failed_frames_and_worker_restarts_add_up_and_the_latest_reason_is_shown():
    monitor = HealthMonitor()
    monitor.failed()
    monitor.failed(3)
    monitor.worker_restarted("first")
    monitor.worker_restarted("second")
    report = monitor.report(now=0.0)
    assert report.values["frames failed"] == "4", "one frame by default, then three"
    assert report.values["worker restarts"] == "2"
    assert report.level == ERROR and report.message == "inference worker died and was restarted: second"
