"""Short form of `make soak`: frames stream through the node while four client processes
call the point, box, text and point prompts at 50 Hz each. Correctness is asserted here; the memory and
latency targets are checked by `make soak` over 2000 frames, which prints its figures."""

from __future__ import annotations

from benchmarks.soak import run_soak


def test_every_prompt_is_answered_from_the_frame_it_names(tmp_path):
    result = run_soak(tmp_path, frames=40, clients=4, rate=50.0, width=320, height=240, kinds=("point", "box", "text"))
    print(result.summary())
    assert result.exit_code == 0
    assert result.errors == []
    assert result.unanswered == 0 and result.failed_calls == []
    assert result.calls >= 4 * 20, "four clients called throughout"
    assert result.inconsistent == []
