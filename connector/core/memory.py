"""Memory held for waiting jobs, bounded by bytes (pure: decisions only, no I/O).

A sealed batch keeps its requests (`Tracked.payload`) so its first create needs no re-read.
While jobs wait for quota those payloads add up; past `max_payload_bytes` the INTENTs that
will be created last drop theirs (the submitter re-reads them by offset, as it does for
recovered and derived INTENTs). Sizes are request bytes (body, id and envelope, as validated),
the same measure as the batcher's; the Python objects holding them take ~2-3x that.
"""

from __future__ import annotations

from collections.abc import Iterable

from connector.core.partitions import Tracked
from connector.core.records import EntryState

__all__ = ["BYTES_PER_TOKEN", "payloads_to_drop", "request_bytes", "submit_order", "waiting"]

BYTES_PER_TOKEN = 4
"""Validation estimates tokens as a quarter of a body's bytes: the inverse, for entries whose
size is unknown (recovered or derived INTENTs)."""


def submit_order(t: Tracked) -> tuple[int, int]:
    """The submitter's order: higher priority first, then older first."""
    return -t.entry.key.priority, t.entry.created_ms


def request_bytes(t: Tracked) -> int:
    """A job's request bytes: known when this process sealed it, else estimated from tokens."""
    return t.size or t.entry.est_tokens * BYTES_PER_TOKEN


def waiting(tracked: Iterable[Tracked]) -> tuple[int, int]:
    """INTENTs (jobs waiting to be created) and their request bytes."""
    n = size = 0
    for t in tracked:
        if t.entry.state is EntryState.INTENT:
            n += 1
            size += request_bytes(t)
    return n, size


def payloads_to_drop(tracked: Iterable[Tracked], max_payload_bytes: int) -> list[Tracked]:
    """The INTENTs whose payloads go, so the rest hold at most `max_payload_bytes`.

    Payloads are kept in submit order: the jobs created soonest keep theirs (their re-read
    would come first), the ones that wait longest re-read theirs when their turn comes.
    """
    held = sorted(
        (t for t in tracked if t.payload is not None and t.entry.state is EntryState.INTENT),
        key=submit_order,
    )
    kept = 0
    drop: list[Tracked] = []
    for t in held:
        if not drop and kept + t.size <= max_payload_bytes:  # a prefix in submit order
            kept += t.size
        else:
            drop.append(t)
    return drop
