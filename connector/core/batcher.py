"""Groups pending requests into keyed batches and decides when each one seals.

Pure: no I/O and no clock; the caller passes `now` (seconds, any monotonic origin).
A batch seals on count (`max_requests`), on bytes (`max_bytes`), on estimated tokens
(`max_tokens`, the model's enqueued-token cap: a bigger job would be refused with 429 for
good), on age (`max_wait_s` after its first request), or before its ledger entry would
outgrow `max_entry_bytes` (interleaved keys make every offset its own range). Sealed batches
keep arrival order, which is offset order because a key includes the partition and a
partition is read in order.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from connector import defaults as D
from connector.core.ledger_topic import ENTRY_RANGE_BYTES
from connector.core.policy import needs_file
from connector.core.records import BatchKey, PendingRequest, SealedBatch
from connector.errors import ConfigError

__all__ = ["BatchLimits", "Batcher"]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When a batch seals and whether it goes through an uploaded file."""

    max_requests: int = D.BATCH_MAX_REQUESTS
    """Seal when a batch holds this many requests."""
    max_bytes: int = D.BATCH_MAX_BYTES
    """Seal when a batch would exceed this many bytes (the file job ceiling)."""
    inline_max_bytes: int = D.BATCH_INLINE_MAX_BYTES
    """A sealed batch above this becomes a JSONL file job (inline create must stay < 20 MB)."""
    max_wait_s: float = D.BATCH_MAX_WAIT_S
    """Seal a batch this long after its first request arrived."""
    max_entry_bytes: int = 0
    """Seal before the batch's ledger entry could exceed this (an upper bound: its model
    and group, plus `ENTRY_RANGE_BYTES` per offset range); 0: no bound."""
    max_tokens: int = 0
    """Seal before the batch's estimated input tokens would exceed this (the enqueued-token
    cap per model: Gemini refuses a job over it however long it waits); 0: no bound."""

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ConfigError(f"max_requests must be >= 1, got {self.max_requests}")
        if self.max_bytes < 1:
            raise ConfigError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if self.inline_max_bytes < 0:
            raise ConfigError(f"inline_max_bytes must be >= 0, got {self.inline_max_bytes}")
        if not self.max_wait_s >= 0:  # also rejects NaN
            raise ConfigError(f"max_wait_s must be >= 0, got {self.max_wait_s}")
        if self.max_entry_bytes < 0:
            raise ConfigError(f"max_entry_bytes must be >= 0, got {self.max_entry_bytes}")
        if self.max_tokens < 0:
            raise ConfigError(f"max_tokens must be >= 0, got {self.max_tokens}")


@dataclass(slots=True)
class _Open:
    """An open batch. `gen` tells a live heap entry from a stale one."""

    gen: int
    opened_at: float
    requests: list[PendingRequest] = field(default_factory=list)
    size: int = 0
    tokens: int = 0
    ranges: int = 0
    """Runs of consecutive offsets: what the ledger entry's size grows with."""


class Batcher:
    """Open batches by key; returns batches as they seal.

    Invariants:
    - at most one open batch per key, never empty;
    - `_heap` holds (opened_at, gen, key) for every open batch, plus stale entries for
      batches already sealed or dropped; a heap entry is live iff `_open[key].gen == gen`.
      Stale entries are discarded when they reach the top, so `due` and `next_due`
      never scan requests, and each entry is pushed and popped once (amortised O(log b)
      per batch, O(1) per request). Between two `due`/`next_due` calls the heap grows by
      at most one entry per batch opened, never per request.
    - `_count` and `_bytes` are the totals over open batches.
    """

    __slots__ = ("_bytes", "_count", "_gens", "_heap", "_limits", "_open")

    def __init__(self, limits: BatchLimits) -> None:
        self._limits = limits
        self._open: dict[BatchKey, _Open] = {}
        self._heap: list[tuple[float, int, BatchKey]] = []
        self._gens = itertools.count()
        self._count = 0
        self._bytes = 0

    @property
    def limits(self) -> BatchLimits:
        return self._limits

    def __len__(self) -> int:
        """Requests held in open batches (not yet sealed)."""
        return self._count

    @property
    def open_bytes(self) -> int:
        """Bytes held in open batches, for memory back-pressure."""
        return self._bytes

    def add(self, req: PendingRequest, now: float) -> list[SealedBatch]:
        """Add `req` to its key's open batch; return the batches this add sealed.

        If `req` would push the open batch past `max_bytes`, that batch seals first and
        `req` starts a new one; likewise past `max_tokens`. A batch seals as soon as it
        reaches `max_requests`, `max_bytes` or `max_tokens`. A single request larger than
        `max_bytes` (or `max_tokens`) becomes a batch alone. Likewise
        a request that would start a new offset range past `max_entry_bytes` seals first.
        """
        limits = self._limits
        key = req.key
        sealed: list[SealedBatch] = []
        batch = self._open.get(key)
        new_range = batch is None or req.offset != batch.requests[-1].offset + 1
        if batch is not None and (
            batch.size + req.size > limits.max_bytes
            or (limits.max_tokens and batch.tokens + req.est_tokens > limits.max_tokens)
            or (
                new_range
                and limits.max_entry_bytes
                and len(key.model) + len(key.group) + (batch.ranges + 1) * ENTRY_RANGE_BYTES
                > limits.max_entry_bytes
            )
        ):
            sealed.append(self._seal(key))
            batch = None
            new_range = True
        if batch is None:
            batch = _Open(next(self._gens), now)
            self._open[key] = batch
            heapq.heappush(self._heap, (now, batch.gen, key))
        batch.requests.append(req)
        batch.size += req.size
        batch.tokens += req.est_tokens
        batch.ranges += new_range
        self._count += 1
        self._bytes += req.size
        if (
            len(batch.requests) >= limits.max_requests
            or batch.size >= limits.max_bytes
            or (limits.max_tokens and batch.tokens >= limits.max_tokens)
        ):
            sealed.append(self._seal(key))
        return sealed

    def due(self, now: float) -> list[SealedBatch]:
        """Seal every batch whose age has reached `max_wait_s`, oldest first."""
        sealed: list[SealedBatch] = []
        wait = self._limits.max_wait_s
        heap = self._heap
        while heap:
            opened_at, gen, key = heap[0]
            batch = self._open.get(key)
            if batch is None or batch.gen != gen:
                heapq.heappop(heap)  # stale: that batch already sealed or was dropped
                continue
            # Same expression as next_due, so due(next_due()) always seals that batch.
            if opened_at + wait > now:
                break
            heapq.heappop(heap)
            sealed.append(self._seal(key))
        return sealed

    def next_due(self) -> float | None:
        """The earliest `now` at which `due` will seal something; None if nothing is open."""
        heap = self._heap
        while heap:
            opened_at, gen, key = heap[0]
            batch = self._open.get(key)
            if batch is not None and batch.gen == gen:
                return opened_at + self._limits.max_wait_s
            heapq.heappop(heap)
        return None

    def drop_partition(self, partition: int) -> list[PendingRequest]:
        """Forget the open batches of a revoked partition; return their requests by offset.

        Their offsets were never committed, so the partition's next owner reads them again.
        """
        dropped: list[PendingRequest] = []
        for key in [k for k in self._open if k.partition == partition]:
            batch = self._open.pop(key)
            self._count -= len(batch.requests)
            self._bytes -= batch.size
            dropped.extend(batch.requests)
        # Heap entries of dropped batches are now stale and are skipped lazily.
        dropped.sort(key=lambda r: r.offset)
        return dropped

    def drain(self) -> list[SealedBatch]:
        """Seal every open batch now, oldest first (graceful shutdown)."""
        keys = sorted(self._open, key=lambda k: self._open[k].gen)
        sealed = [self._seal(k) for k in keys]
        self._heap.clear()
        return sealed

    def _seal(self, key: BatchKey) -> SealedBatch:
        batch = self._open.pop(key)
        self._count -= len(batch.requests)
        self._bytes -= batch.size
        limits = self._limits
        use_file = needs_file(key.kind, batch.size, limits.inline_max_bytes)
        return SealedBatch(key, tuple(batch.requests), batch.size, use_file)
