"""Durations of recent loop passes, and their quantiles for the status (pure, no clock).

A pass that outlives `max.poll.interval.ms` gets the replica dropped from its group while
it still believes it owns its partitions; the status shows how close passes come to that.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["PassTimes", "quantile"]


def quantile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 < q ≤ 1) of ascending values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class PassTimes:
    """A ring buffer of the last `size` pass durations (seconds)."""

    __slots__ = ("_recent", "count", "longest")

    def __init__(self, size: int = 1024) -> None:
        self._recent: deque[float] = deque(maxlen=size)
        self.count = 0
        self.longest = 0.0
        """The longest pass since start (not only among the recent ones)."""

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)
        self.count += 1
        self.longest = max(self.longest, seconds)

    def summary(self) -> dict[str, float]:
        """p50 and p99 over the recent passes, max since start, rounded to milliseconds."""
        values = sorted(self._recent)
        return {
            "p50": round(quantile(values, 0.50), 3),
            "p99": round(quantile(values, 0.99), 3),
            "max": round(self.longest, 3),
        }
