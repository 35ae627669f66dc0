"""The commit watermark of one request partition.

A request's offset may be committed only once the request is durable: in an acked
ledger INTENT, with an acked terminal record, or skipped because a live entry already
owns it. Requests become durable out of order (keyed batches seal independently), so
the committable offset is the smallest offset still pending.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["Watermark"]


class Watermark:
    """Tracks consumed-but-not-durable offsets; amortised O(1) per operation.

    Invariants:
    - `_queue` holds consumed offsets in ascending order; it may still hold offsets
      resolved since (lazy deletion), but it is empty or its front is pending: `resolved`
      trims the front, and `consumed` appends a pending offset.
    - `_pending` is exactly the set of consumed, unresolved offsets; every member is in
      `_queue`.
    - `_high` is the highest consumed offset, or `start - 1` before any.
    Because offsets are consumed ascending, the smallest pending offset only grows and
    a new pending offset is always above `_high`, so `committable()` never goes back.
    """

    __slots__ = ("_high", "_pending", "_queue", "_start")

    def __init__(self, start: int) -> None:
        """`start` is the partition's committed (or initial) position."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self._start = start
        self._high = start - 1
        self._queue: deque[int] = deque()
        self._pending: set[int] = set()

    @property
    def pending(self) -> int:
        """How many consumed offsets are not yet durable."""
        return len(self._pending)

    @property
    def start(self) -> int:
        """The position this watermark started at (the committed offset after a seek)."""
        return self._start

    @property
    def high(self) -> int:
        """The highest consumed offset, or `start - 1` if nothing was consumed."""
        return self._high

    def consumed(self, offset: int) -> None:
        """Record that the request at `offset` was read; it is pending until resolved.

        Offsets must arrive strictly ascending and at or above `start` (gaps are fine:
        compaction and transaction markers leave them). Anything else means the caller
        re-read the partition without a fresh Watermark, so it raises ValueError rather
        than guess.
        """
        if offset <= self._high:
            raise ValueError(
                f"offset {offset} consumed out of order (highest so far {self._high}, "
                f"start {self._start}); make a new Watermark after a seek"
            )
        self._high = offset
        self._queue.append(offset)
        self._pending.add(offset)

    def resolved(self, offsets: Iterable[int]) -> None:
        """Mark offsets durable. Idempotent; offsets below `start` or in gaps are ignored.

        An offset above the highest consumed one raises ValueError and changes nothing:
        ignoring it would leave that request pending forever once it is read, stalling
        the partition's commits without a trace.
        """
        batch = offsets if isinstance(offsets, (list, tuple, set, frozenset)) else list(offsets)
        for o in batch:
            if o > self._high:
                raise ValueError(
                    f"offset {o} resolved before it was consumed (highest consumed {self._high})"
                )
        self._pending.difference_update(batch)
        self._trim()

    def committable(self) -> int:
        """The offset to commit: the smallest pending offset, else highest consumed + 1."""
        return self._queue[0] if self._queue else self._high + 1

    def _trim(self) -> None:
        # Drop resolved offsets from the front, so the front is the smallest pending one
        # and memory stays bounded by what sits behind it. Each offset is popped once.
        queue, pending = self._queue, self._pending
        while queue and queue[0] not in pending:
            queue.popleft()

    def __repr__(self) -> str:
        return (
            f"Watermark(start={self._start}, high={self._high}, pending={self.pending}, "
            f"committable={self.committable()})"
        )
