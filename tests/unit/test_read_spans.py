"""Re-read spans (pure): a job's offsets, interleaved with other jobs' in one partition, are
read as a few sequential spans and filtered, yielding exactly the job's offsets in order."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from connector.core.spans import SPAN_GAP, offset_ranges, read_spans


def test_read_spans_merge_short_gaps_only() -> None:
    assert read_spans([9, 0, 4, 2], gap=3) == [(0, 5), (9, 10)]
    assert read_spans(range(0, 20_000, 2)) == [(0, 19_999)]  # two keys alternating
    assert read_spans([5, 5 + SPAN_GAP + 2, 10**6]) == [
        (5, 6),
        (7 + SPAN_GAP, 8 + SPAN_GAP),
        (10**6, 10**6 + 1),
    ]
    assert read_spans([]) == []


@given(st.sets(st.integers(0, 5_000), max_size=300))
def test_gap_zero_is_offset_ranges(offsets: set[int]) -> None:
    assert read_spans(offsets, gap=0) == offset_ranges(offsets)


# A partition: each offset holds a record of one of `keys` batch keys, or nothing (compacted
# away, a transaction marker); the job wants the offsets of key 0 that it holds.
partitions = st.lists(st.integers(-1, 3), min_size=0, max_size=600)


@given(partitions, st.integers(0, 40), st.integers(0, 100))
def test_span_read_then_filter_yields_exactly_the_jobs_offsets_in_order(
    log: list[int], gap: int, start: int
) -> None:
    wanted = {start + i for i, k in enumerate(log) if k == 0}
    spans = read_spans(wanted, gap)
    read: list[int] = []  # offsets read from the log, as a sequential reader would
    for first, last in spans:
        read.extend(o for o in range(first, last) if log[o - start] != -1)
    got = [o for o in read if o in wanted]
    assert got == sorted(wanted)  # every wanted offset, once, in order
    assert read == sorted(set(read))  # spans sorted and disjoint: nothing read twice
    assert all(a[1] < b[0] for a, b in pairwise(spans))
    for first, last in spans:  # spans start and end on a wanted offset
        assert first in wanted
        assert last - 1 in wanted
    for a, b in pairwise(spans):  # what is sought past is a long gap
        assert b[0] - a[1] > gap
    # What is read and dropped is bounded by the gaps read through.
    assert len(read) - len(wanted) <= gap * max(0, len(wanted) - len(spans))
