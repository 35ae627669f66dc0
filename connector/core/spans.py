"""Offsets as contiguous ranges, and bounded chunks of them (pure).

A job's offsets are a subset of its partition's span; reading them back range by range
skips the records of other jobs in between.
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


def chunks(items: Iterable[T], size: int = CHUNK_REQUESTS) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
