"""Offsets as contiguous ranges, spans to read through, and bounded chunks (pure).

A job's offsets are a subset of its partition's span. Other jobs' records in between are
read through and dropped when the gap is short (interleaved batch keys: every other offset),
and sought past when it is long (a job far behind another's records).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

CHUNK_REQUESTS = 5_000
"""Requests re-read, written or answered at once: bounds memory whatever a job's size."""


def offset_ranges(offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct offsets as sorted half-open runs: (9, 3, 4, 5) → [(3, 6), (9, 10)]."""
    out: list[tuple[int, int]] = []
    for o in sorted(set(offsets)):
        if out and out[-1][1] == o:
            out[-1] = (out[-1][0], o + 1)
        else:
            out.append((o, o + 1))
    return out


SPAN_GAP = 1_000
"""Other records between two wanted offsets that a re-read reads through (and drops) rather
than seek past. Reading one costs a few µs; a seek costs a fetch round trip and the records
the client prefetched (a fetch, ~400 typical requests), so a shorter gap is cheaper to read."""


def read_spans(offsets: Iterable[int], gap: int = SPAN_GAP) -> list[tuple[int, int]]:
    """Distinct offsets as sorted half-open spans to read through, merging runs with at
    most `gap` other offsets between them: (0, 2, 4, 9) with gap 3 → [(0, 5), (9, 10)];
    gap 0 gives `offset_ranges`. Every wanted offset is in exactly one span, and each span
    starts and ends on a wanted offset."""
    out: list[tuple[int, int]] = []
    for o in sorted(set(offsets)):
        if out and o - out[-1][1] <= gap:
            out[-1] = (out[-1][0], o + 1)
        else:
            out.append((o, o + 1))
    return out


def chunks(items: Iterable[T], size: int = CHUNK_REQUESTS) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
