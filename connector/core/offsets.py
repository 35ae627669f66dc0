"""Compact offset collections: a job's offsets (`Offsets`) and a partition's covered index.

A job holds thousands of request offsets, almost always consecutive. A tuple of ints costs
~40 bytes per offset (an 8-byte slot plus a 32-byte int object) and a set of ints ~70;
both grow with the job. Here offsets are runs of consecutive values in `array('q')`s:
16 bytes per run, whatever the run's length, so a 10,000-request job of one run costs
about as much as a 1-request one.

Leaf module: imports nothing from the rest of the package (records.py builds on it).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Set
from typing import Any, overload

__all__ = ["Offsets", "RangeIndex"]


def _runs(offsets: Iterable[int]) -> tuple[array[int], array[int]]:
    """Starts and cumulative counts of the runs of consecutive values, order kept."""
    starts: array[int] = array("q")
    cum: array[int] = array("q")
    it = iter(offsets)
    try:
        start = end = int(next(it))
    except StopIteration:
        return starts, cum
    n = 0
    for o in it:
        if o == end + 1:
            end = o
            continue
        n += end - start + 1
        starts.append(start)
        cum.append(n)
        start = end = int(o)
    starts.append(start)
    cum.append(n + end - start + 1)
    return starts, cum


class Offsets:
    """An immutable sequence of ints stored as runs of consecutive values.

    Behaves like the tuple it replaces: `len`, iteration, `in`, indexing (negative too),
    slicing (an `Offsets` again), `index`, `count`, equality with a tuple of the same
    values (and the same hash), ordering is not supported. Any sequence round-trips
    exactly, ascending or not (a run only grows by `end + 1`); ascending offsets, the only
    kind the sidecar writes, give the fewest runs.

    Memory: 16 bytes per run plus ~200 bytes per object. Positional access is O(log runs),
    `in` is O(runs) (O(log runs) on ascending offsets), iteration O(1) per offset.
    """

    __slots__ = ("_cum", "_hash", "_starts")

    _starts: array[int]
    _cum: array[int]
    """`_cum[i]`: offsets in runs 0..i (so run i is `_starts[i] .. _starts[i] + len_i - 1`)."""
    _hash: int | None

    def __init__(self, offsets: Iterable[int] = ()) -> None:
        if isinstance(offsets, Offsets):
            self._starts, self._cum = offsets._starts, offsets._cum
        else:
            self._starts, self._cum = _runs(offsets)
        self._hash = None

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> Offsets:
        """From inclusive `(start, end)` runs, without expanding them; ValueError if end < start.

        Adjacent runs are joined, so equal sequences always have equal runs.
        """
        starts: array[int] = array("q")
        cum: array[int] = array("q")
        n = 0
        for start, end in ranges:
            if end < start:
                raise ValueError(f"offset range ends before it starts: {start}..{end}")
            count = end - start + 1
            if starts and starts[-1] + (n - (cum[-2] if len(cum) > 1 else 0)) == start:
                n += count
                cum[-1] = n
                continue
            n += count
            starts.append(start)
            cum.append(n)
        out = cls.__new__(cls)
        out._starts, out._cum, out._hash = starts, cum, None
        return out

    # -- runs ------------------------------------------------------------------------

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The inclusive `(start, end)` runs, in order."""
        prev = 0
        for s, c in zip(self._starts, self._cum, strict=True):
            yield s, s + c - prev - 1
            prev = c

    @property
    def run_count(self) -> int:
        return len(self._starts)

    def max(self) -> int:
        """The largest offset (ValueError when empty); O(runs)."""
        if not self._starts:
            raise ValueError("max() of empty Offsets")
        return max(e for _, e in self.ranges())

    # -- the tuple API ---------------------------------------------------------------

    def __len__(self) -> int:
        return self._cum[-1] if self._cum else 0

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[int]:
        prev = 0
        for s, c in zip(self._starts, self._cum, strict=True):
            yield from range(s, s + c - prev)
            prev = c

    def __reversed__(self) -> Iterator[int]:
        for i in range(len(self._starts) - 1, -1, -1):
            s = self._starts[i]
            n = self._cum[i] - (self._cum[i - 1] if i else 0)
            yield from range(s + n - 1, s - 1, -1)

    def _at(self, i: int) -> int:
        r = bisect_right(self._cum, i)
        before = self._cum[r - 1] if r else 0
        return self._starts[r] + (i - before)

    @overload
    def __getitem__(self, i: int) -> int: ...
    @overload
    def __getitem__(self, i: slice) -> Offsets: ...
    def __getitem__(self, i: int | slice) -> int | Offsets:
        n = len(self)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return Offsets(self._at(k) for k in range(start, stop, step))
            return self._slice(start, stop)
        i = i.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("Offsets index out of range")
        return self._at(i)

    def _slice(self, start: int, stop: int) -> Offsets:
        if stop <= start:
            return Offsets()

        def pieces() -> Iterator[tuple[int, int]]:
            r = bisect_right(self._cum, start)
            prev = self._cum[r - 1] if r else 0
            pos = start
            while pos < stop:
                s, c = self._starts[r], self._cum[r]
                lo = s + (pos - prev)
                hi = s + (min(stop, c) - prev) - 1
                yield lo, hi
                pos = min(stop, c)
                prev = c
                r += 1

        return Offsets.from_ranges(pieces())

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        return any(s <= x <= e for s, e in self.ranges())

    def index(self, x: int, start: int = 0, stop: int | None = None) -> int:
        n = len(self)
        stop = n if stop is None else stop
        start, stop, _ = slice(start, stop).indices(n)
        prev = 0
        for s, c in zip(self._starts, self._cum, strict=True):
            e = s + c - prev - 1
            if s <= x <= e:
                pos = prev + (x - s)
                if start <= pos < stop:
                    return pos
            prev = c
        raise ValueError(f"{x} is not in Offsets")

    def count(self, x: int) -> int:
        return sum(s <= x <= e for s, e in self.ranges())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Offsets):
            return self._starts == other._starts and self._cum == other._cum
        if isinstance(other, tuple):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        # Equal to a tuple, so the same hash as one (materialised once, rarely needed).
        if self._hash is None:
            self._hash = hash(tuple(self))
        return self._hash

    def __add__(self, other: Any) -> Offsets:
        if not isinstance(other, Offsets | tuple):
            return NotImplemented
        return Offsets.from_ranges([*self.ranges(), *Offsets(other).ranges()])

    def __repr__(self) -> str:
        runs = ", ".join(f"{s}..{e}" if s != e else str(s) for s, e in self.ranges())
        return f"Offsets({runs})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Offsets.from_ranges, (list(self.ranges()),))


class RangeIndex(Set[int]):
    """A set of ints stored as sorted, disjoint, non-adjacent inclusive runs.

    A partition's covered offsets: `x in index` is O(log runs); adding or removing a job's
    runs rewrites the arrays once (O(runs of the index + runs of the job)). Set semantics,
    like the `set` it replaces: `update` is a union, `difference_update` a difference.
    Equal to any set with the same members (`collections.abc.Set`).
    """

    __slots__ = ("_ends", "_starts")

    def __init__(self, offsets: Iterable[int] = ()) -> None:
        self._starts: array[int] = array("q")
        self._ends: array[int] = array("q")
        ranges = offsets.ranges() if isinstance(offsets, Offsets) else Offsets(offsets).ranges()
        self.add_ranges(ranges)

    def ranges(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    @property
    def run_count(self) -> int:
        return len(self._starts)

    def __contains__(self, x: object) -> bool:
        if not isinstance(x, int):
            return False
        i = bisect_right(self._starts, x) - 1
        return i >= 0 and self._ends[i] >= x

    def __len__(self) -> int:
        return sum(e - s + 1 for s, e in self.ranges())

    def __iter__(self) -> Iterator[int]:
        for s, e in self.ranges():
            yield from range(s, e + 1)

    def __repr__(self) -> str:
        runs = ", ".join(f"{s}..{e}" if s != e else str(s) for s, e in self.ranges())
        return f"RangeIndex({runs})"

    def update(self, offsets: Offsets | Iterable[int]) -> None:
        """Union with `offsets` (any iterable of ints; an `Offsets` by its runs)."""
        self.add_ranges(offsets.ranges() if isinstance(offsets, Offsets) else _ranges(offsets))

    def difference_update(self, offsets: Offsets | Iterable[int]) -> None:
        """Remove `offsets` (absent ones are ignored)."""
        self.discard_ranges(offsets.ranges() if isinstance(offsets, Offsets) else _ranges(offsets))

    def add_ranges(self, ranges: Iterable[tuple[int, int]]) -> None:
        new = sorted(r for r in ranges if r[1] >= r[0])
        if not new:
            return
        if len(new) == 1:
            self._add_one(*new[0])
            return
        # Merge two sorted run lists in one pass.
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        old = self.ranges()
        a = next(old, None)
        j = 0
        while a is not None or j < len(new):
            if a is not None and (j >= len(new) or a[0] <= new[j][0]):
                s, e = a
                a = next(old, None)
            else:
                s, e = new[j]
                j += 1
            if ends and s <= ends[-1] + 1:
                ends[-1] = max(ends[-1], e)
            else:
                starts.append(s)
                ends.append(e)
        self._starts, self._ends = starts, ends

    def _add_one(self, s: int, e: int) -> None:
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, s - 1)  # first run that ends at or after s - 1 (touches or after)
        j = bisect_right(starts, e + 1)  # runs from j on start after e + 1
        if i < j:
            s = min(s, starts[i])
            e = max(e, ends[j - 1])
        starts[i:j] = array("q", (s,))
        ends[i:j] = array("q", (e,))

    def discard_ranges(self, ranges: Iterable[tuple[int, int]]) -> None:
        gone = sorted(r for r in ranges if r[1] >= r[0])
        if len(gone) <= 4:
            for s, e in gone:
                self._discard_one(s, e)
            return
        # Many runs (an interleaved job): one sweep over both sorted run lists.
        starts: array[int] = array("q")
        ends: array[int] = array("q")
        j = 0
        for start, e in self.ranges():
            s = start  # what is left of this run starts here
            while j < len(gone) and gone[j][1] < s:
                j += 1
            k = j
            while s <= e and k < len(gone) and gone[k][0] <= e:
                gs, ge = gone[k]
                if gs > s:
                    starts.append(s)
                    ends.append(gs - 1)
                s = max(s, ge + 1)
                if ge <= e:
                    k += 1
                else:
                    break
            if s <= e:
                starts.append(s)
                ends.append(e)
            j = k  # gone[j:k] all end within this run, before the next one
        self._starts, self._ends = starts, ends

    def _discard_one(self, s: int, e: int) -> None:
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, s)  # first run ending at or after s
        j = bisect_right(starts, e)  # runs from j on start after e
        if i >= j:
            return
        keep_s: list[int] = []
        keep_e: list[int] = []
        if starts[i] < s:
            keep_s.append(starts[i])
            keep_e.append(s - 1)
        if ends[j - 1] > e:
            keep_s.append(e + 1)
            keep_e.append(ends[j - 1])
        starts[i:j] = array("q", keep_s)
        ends[i:j] = array("q", keep_e)


def _ranges(offsets: Iterable[int]) -> Iterator[tuple[int, int]]:
    return Offsets(sorted(offsets)).ranges()
