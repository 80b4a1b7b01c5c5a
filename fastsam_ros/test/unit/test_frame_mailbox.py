"""The latest-frame slots between camera callbacks and the inference worker."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsam_ros.core.frame_mailbox import PACE_SMOOTHING, LatestFrameMailbox

SLOTS = st.sampled_from(["", "front", "rear", "left"])


@given(st.lists(st.tuples(SLOTS, st.integers()), max_size=30))
def test_each_slot_keeps_its_newest_item_and_counts_the_rest_as_dropped(puts):
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    newest: dict[str, int] = {}
    for slot, item in puts:
        replaced = mailbox.put(item, slot)
        assert replaced == (slot in newest)
        newest[slot] = item
    assert mailbox.dropped == len(puts) - len(newest)
    assert mailbox.take_all(timeout=0) == newest


def test_take_all_empties_the_slots():
    mailbox: LatestFrameMailbox[str] = LatestFrameMailbox()
    mailbox.put("a1", "a")
    mailbox.put("b1", "b")
    assert mailbox.take_all(timeout=0) == {"a": "a1", "b": "b1"}
    assert mailbox.take_all(timeout=0) == {}
    assert not mailbox.put("a2", "a"), "a slot that was taken is free again: nothing dropped"
    assert mailbox.dropped == 0
    assert mailbox.take_all(timeout=0) == {"a": "a2"}


def test_default_slot_is_shared_by_puts_without_a_slot():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    mailbox.put(1)
    assert mailbox.put(2)
    assert mailbox.take_all(timeout=0) == {"": 2}
    assert mailbox.dropped == 1


def _waiting_worker(mailbox: LatestFrameMailbox[int]) -> tuple[threading.Thread, list[dict[str, int]]]:
    """A thread blocked in take_all (or about to be), and the list its result lands in."""
    started = threading.Event()
    taken: list[dict[str, int]] = []

    def worker() -> None:
        started.set()
        taken.append(mailbox.take_all(timeout=30))

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    return thread, taken


def test_take_all_waits_for_a_put_from_another_thread():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    thread, taken = _waiting_worker(mailbox)
    mailbox.put(7, "front")
    thread.join(timeout=10)
    assert taken == [{"front": 7}]


def test_take_all_times_out_empty():
    assert LatestFrameMailbox().take_all(timeout=0.01) == {}


def test_close_wakes_a_waiting_worker_and_discards_waiting_items():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    thread, taken = _waiting_worker(mailbox)
    assert mailbox.closed is False
    mailbox.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and taken == [{}]
    assert mailbox.closed is True
    mailbox.put(1, "front")
    assert mailbox.take_all(timeout=30) == {}, "a closed mailbox hands out nothing, and does not wait"


def test_arrival_gap_is_the_fastest_cameras_smoothed_pace_and_forgets_a_quiet_camera():
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox()
    mailbox.put(1, "front", now=10.0)
    assert mailbox.arrival_gap(now=10.0) is None, "one frame has no pace"
    for index, now in enumerate((10.1, 10.2, 10.3)):
        mailbox.put(index, "front", now=now)
    assert mailbox.arrival_gap(now=10.3) == pytest.approx(0.1)
    mailbox.put(9, "front", now=10.7)
    assert mailbox.arrival_gap(now=10.7) == pytest.approx(0.1 + PACE_SMOOTHING * 0.3), "smoothed, not the last gap"
    for now in (10.6, 10.65, 10.7):
        mailbox.put(0, "rear", now=now)
    assert mailbox.arrival_gap(now=10.7) == pytest.approx(0.05), "the fastest camera"
    mailbox.take_all(timeout=0)
    assert mailbox.arrival_gap(now=10.7) == pytest.approx(0.05), "taking frames does not change the pace"
    assert mailbox.arrival_gap(now=10.8) == pytest.approx(0.1), "the rear camera's silence counts"
    assert mailbox.arrival_gap(now=12.0) == pytest.approx(1.3), "and the front camera's"
