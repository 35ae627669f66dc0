"""`PartitionState.covered` is the union of its live entries' offsets, whatever order jobs
come and go in, overlapping ones included (a stale replica's INTENT next to a created job)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.core.partitions import PartitionState, Tracked
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry


def entry(job_id: str, offsets: list[int]) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=tuple(sorted(set(offsets))),
        attempt=0,
        display_name=f"t:{job_id}",
        state=EntryState.INTENT,
        use_file=False,
        est_tokens=1,
        created_ms=1,
        updated_ms=1,
    )


def test_removing_one_of_two_overlapping_entries_keeps_the_other_covered() -> None:
    s = PartitionState()
    s.add(Tracked(entry("owner", [0, 1, 2, 3])))
    s.add(Tracked(entry("zombie", [2, 3])))
    s.remove("zombie")
    assert set(s.covered) == {0, 1, 2, 3}
    s.remove("owner")
    assert set(s.covered) == set()


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 5), st.lists(st.integers(0, 40), max_size=12)),
        st.tuples(st.just("remove"), st.integers(0, 5), st.just([])),
    ),
    max_size=30,
)


@given(ops)
def test_covered_is_the_union_of_live_offsets(steps: list[tuple[str, int, list[int]]]) -> None:
    s = PartitionState()
    for op, n, offsets in steps:
        if op == "add":
            s.remove(f"j{n}")  # a job's entry replaced, as the tracker does
            s.add(Tracked(entry(f"j{n}", offsets)))
        else:
            s.remove(f"j{n}")
        assert set(s.covered) == {o for t in s.jobs.values() for o in t.entry.offsets}
