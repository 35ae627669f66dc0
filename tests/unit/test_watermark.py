"""The commit watermark: which offset of a partition is safe to commit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.watermark import Watermark


def test_nothing_consumed_commits_start() -> None:
    """Before any record is read, the committable offset is the starting position."""
    w = Watermark(42)
    assert w.committable() == 42
    assert w.pending == 0


def test_pending_offset_holds_the_watermark() -> None:
    """A consumed, unresolved offset is the committable offset: it must be read again."""
    w = Watermark(0)
    w.consumed(0)
    w.consumed(1)
    assert w.committable() == 0
    assert w.pending == 2


def test_out_of_order_resolution() -> None:
    """Resolving later offsets first does not move the watermark past an earlier one."""
    w = Watermark(10)
    for o in range(10, 15):
        w.consumed(o)
    w.resolved([12, 13])
    assert w.committable() == 10
    w.resolved([10])
    assert w.committable() == 11
    w.resolved([11])
    assert w.committable() == 14
    w.resolved([14])
    assert w.committable() == 15
    assert w.pending == 0


def test_gaps_in_offsets() -> None:
    """Gaps (compaction, transaction markers) are skipped: all resolved commits high + 1."""
    w = Watermark(5)
    for o in (7, 9, 20):
        w.consumed(o)
    assert w.committable() == 7
    w.resolved([7, 9])
    assert w.committable() == 20
    w.resolved([20])
    assert w.committable() == 21


def test_resolving_twice_below_start_or_in_a_gap_is_harmless() -> None:
    """Idempotent: repeats, offsets below start and never-seen gap offsets change nothing."""
    w = Watermark(100)
    w.consumed(100)
    w.consumed(105)
    w.resolved([100])
    w.resolved([100, 3, 102])
    assert w.committable() == 105
    assert w.pending == 1


def test_resolving_unconsumed_offset_raises_and_changes_nothing() -> None:
    """An offset not read yet is refused for the whole call, so no state is half-applied."""
    w = Watermark(0)
    w.consumed(0)
    w.consumed(1)
    with pytest.raises(ValueError, match="before it was consumed"):
        w.resolved([0, 2])
    assert w.committable() == 0
    assert w.pending == 2


def test_resolved_accepts_any_iterable() -> None:
    """A generator works and is consumed once (checked, then applied)."""
    w = Watermark(0)
    for o in range(3):
        w.consumed(o)
    w.resolved(o for o in range(3))
    assert w.committable() == 3


@pytest.mark.parametrize("bad", [4, 5, 6])
def test_consuming_out_of_order_raises(bad: int) -> None:
    """Offsets must ascend from start; a replay needs a fresh Watermark."""
    w = Watermark(5)
    w.consumed(6)
    with pytest.raises(ValueError, match="out of order"):
        w.consumed(bad)
    assert w.committable() == 6


def test_negative_start_rejected() -> None:
    """Kafka offsets are non-negative; a negative start is a caller bug."""
    with pytest.raises(ValueError, match="start"):
        Watermark(-1)


def test_high_and_repr() -> None:
    """`high` is the last consumed offset (start - 1 before any); repr shows the state."""
    w = Watermark(3)
    assert w.high == 2
    w.consumed(8)
    assert w.high == 8
    assert "committable=8" in repr(w)


_ops = st.lists(
    # None: consume the next offset; a list: resolve those consumed offsets (by index).
    st.one_of(st.none(), st.lists(st.integers(0, 60), max_size=4)),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 1000), gaps=st.lists(st.integers(0, 3), max_size=40), ops=_ops)
def test_watermark_properties(start: int, gaps: list[int], ops: list[list[int] | None]) -> None:
    """For any interleaving, committable never passes a pending offset and never decreases.

    It equals the smallest pending offset, else highest consumed + 1, else start; once
    everything is resolved it is highest + 1.
    """
    offs: list[int] = []
    o = start
    for g in gaps:  # ascending offsets with gaps of 0-3
        o += g
        offs.append(o)
        o += 1
    w = Watermark(start)
    consumed: list[int] = []
    pending: set[int] = set()
    last = w.committable()
    for op in ops:
        if op is None:
            if len(consumed) == len(offs):
                continue
            nxt = offs[len(consumed)]
            w.consumed(nxt)
            consumed.append(nxt)
            pending.add(nxt)
        elif consumed:
            picks = [consumed[i % len(consumed)] for i in op]
            w.resolved(picks)
            pending.difference_update(picks)
        c = w.committable()
        assert all(c <= p for p in pending)
        assert c >= last
        assert c == (min(pending) if pending else (consumed[-1] + 1 if consumed else start))
        assert w.pending == len(pending)
        last = c
    w.resolved(consumed)
    assert w.committable() == (consumed[-1] + 1 if consumed else start)
    assert w.pending == 0
