"""Pass-time quantiles for the status: nearest rank over a bounded window, max since start."""

from __future__ import annotations

from connector.core.passtime import PassTimes, quantile


def test_quantile_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.99) == 99.0
    assert quantile(values, 1.0) == 100.0
    assert quantile([], 0.5) == 0.0
    assert quantile([3.0], 0.99) == 3.0


def test_window_forgets_old_passes_but_max_does_not() -> None:
    times = PassTimes(size=10)
    times.add(30.0)
    for _ in range(10):
        times.add(0.01)
    summary = times.summary()
    assert summary == {"p50": 0.01, "p99": 0.01, "max": 30.0}
    assert times.count == 11
