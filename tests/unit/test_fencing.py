"""Zombies and transactions on the in-memory doubles (connector.testing), at second scale.

The same promises are tested against the real broker and emulator in
tests/integration/test_fencing.py; these pin the loop's decisions exactly.
"""

from __future__ import annotations

from typing import Any

from connector.testing import TestHarness, harness


def slow_creates(h: TestHarness, seconds: float) -> list[float]:
    """Every `create` takes `seconds` of the sidecar's clock; returns when each started."""
    started: list[float] = []
    create = h.gemini.create

    def slow(*args: Any, **kwargs: Any) -> str:
        started.append(h.clock())
        h.advance(seconds)
        name: str = create(*args, **kwargs)
        return name

    h.gemini.create = slow
    return started


def test_a_pass_starts_no_create_after_its_budget_and_the_rest_follow_next_pass() -> None:
    h = harness(batch_max_requests=1, pass_budget_s=10.0, http_timeout_s=4.0)
    h.consumer.assign(0)
    h.step()
    for i in range(5):
        h.publish(f"r-{i}")
    started = slow_creates(h, 4.0)
    h.step()
    # Creates start at 0, 4 and 8 s into the pass; at 12 s the budget (10 s) is spent.
    assert len(started) == 3
    assert h.sidecar.stats.jobs_created == 3
    h.step()
    assert h.sidecar.stats.jobs_created == 5
    status = h.sidecar.status()
    assert status["pass_s"]["max"] >= 12.0
    assert status["pass_s"]["p50"] >= 8.0
