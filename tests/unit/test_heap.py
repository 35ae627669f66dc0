"""Heap trimming: once per idle spell after activity, rate-limited; harmless everywhere."""

from __future__ import annotations

from connector.adapters.heap import HeapTrimmer, trim


def test_trim_runs_on_this_platform_without_raising() -> None:
    assert trim() in (True, False)


def test_trims_on_the_first_idle_pass_after_activity_at_most_every_interval() -> None:
    calls: list[int] = []
    h = HeapTrimmer(min_interval_s=5.0, trim_fn=lambda: calls.append(1) or True)
    h.after_pass(idle=False, activity=10, now=0.0)  # busy: never
    assert calls == []
    h.after_pass(idle=True, activity=10, now=0.1)  # idle after activity: trim
    assert len(calls) == 1
    h.after_pass(idle=True, activity=10, now=4.0)  # idle, nothing new: no
    assert len(calls) == 1
    h.after_pass(idle=True, activity=20, now=3.0)  # new activity, too soon after the last
    assert len(calls) == 1
    h.after_pass(idle=True, activity=20, now=5.2)  # now
    assert len(calls) == 2
    assert h.trims == 2
