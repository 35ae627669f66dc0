"""Take-over epochs (sim seed 876): the pure rule that tells a stale replica's late INTENT,
whose requests a later owner batched and committed itself, from an INTENT an owner loaded
and committed past (the only record of its requests)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry
from connector.core.recovery import landed_late, next_epoch, plan_epoch

NOW_MS = 1_000


def entry(
    job_id: str,
    offsets: tuple[int, ...],
    epoch: int,
    state: EntryState = EntryState.INTENT,
) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=offsets,
        attempt=0,
        display_name=f"sim:{job_id}",
        state=state,
        use_file=False,
        est_tokens=10,
        created_ms=5,
        updated_ms=5,
        epoch=epoch,
    )


def test_a_late_intent_below_the_committed_offset_and_the_top_epoch_is_retracted() -> None:
    late = entry("p0-0-zombie", (0, 1), epoch=3)
    owner = entry("p0-2-owner", (2,), epoch=7, state=EntryState.SUBMITTED)
    assert landed_late([late, owner], committed=3, top=7) == [late]


def test_an_intent_an_owner_loaded_and_committed_past_is_kept() -> None:
    """The legitimate case: the owner at the top epoch re-stamped it before committing."""
    known = entry("p0-0-known", (0, 1), epoch=7)
    assert landed_late([known], committed=5, top=7) == []


def test_unstamped_partly_uncommitted_and_non_intent_entries_are_kept() -> None:
    unstamped = entry("p0-0-old", (0,), epoch=0)  # written before epochs: as before
    ahead = entry("p0-1-ahead", (1, 5), epoch=3)  # offset 5 not committed past
    done = entry("p0-2-done", (2,), epoch=3, state=EntryState.DONE)
    submitted = entry("p0-3-sub", (3,), epoch=3, state=EntryState.SUBMITTED)
    assert landed_late([unstamped, ahead, done, submitted], committed=5, top=7) == []


def test_the_epoch_is_above_every_epoch_seen_whatever_the_clock() -> None:
    assert next_epoch(10, now_ms=3) == 11  # a clock behind the marker
    assert next_epoch(10, now_ms=500) == 500


def test_plan_decides_the_late_before_re_stamping_the_rest() -> None:
    late = entry("p0-0-zombie", (0,), epoch=3)
    mine = entry("p0-1-mine", (1,), epoch=7)
    sub = entry("p0-2-sub", (2,), epoch=7, state=EntryState.SUBMITTED)
    plan = plan_epoch([late, mine, sub], committed=3, marked=7, now_ms=NOW_MS)
    assert plan.epoch == NOW_MS
    assert plan.retract == (late,)
    [again] = plan.restamp
    assert again.job_id == "p0-1-mine"
    assert again.epoch == NOW_MS
    assert again.updated_ms > mine.updated_ms
    assert again != mine, "its writer's copy must no longer look as written"


offsets = st.lists(st.integers(0, 20), min_size=1, max_size=4, unique=True).map(
    lambda xs: tuple(sorted(xs))
)
entries = st.lists(
    st.tuples(
        offsets, st.integers(0, 50), st.sampled_from(list(EntryState)), st.integers(0, 10**4)
    ),
    max_size=8,
).map(
    lambda rows: [
        replace(entry(f"p0-{i}-j", offs, epoch, state), updated_ms=updated)
        for i, (offs, epoch, state, updated) in enumerate(rows)
    ]
)


@given(entries, st.integers(0, 25), st.integers(0, 60), st.integers(0, 10**4))
def test_an_owner_never_judges_late_what_it_loaded(
    live: list[LedgerEntry], committed: int, marked: int, now_ms: int
) -> None:
    """Whatever an owner commits after its take-over, and however many owners follow, an
    INTENT it loaded (and kept) is never judged late: a later take-over's top is at least
    this owner's epoch, and the re-stamp carries exactly it."""
    plan = plan_epoch(live, committed, marked, now_ms)
    assert plan.epoch > marked
    assert all(plan.epoch > e.epoch for e in live)
    kept = [e for e in live if e not in plan.retract]
    after = [next((r for r in plan.restamp if r.job_id == e.job_id), e) for e in kept]
    for later_commit in (committed, committed + 10, 10**6):
        assert landed_late(after, later_commit, plan.epoch) == []
    assert {e.job_id for e in plan.restamp} == {
        e.job_id for e in kept if e.state is EntryState.INTENT
    }
    assert all(
        r.updated_ms > e.updated_ms for e in live for r in plan.restamp if r.job_id == e.job_id
    )


@given(entries, st.integers(0, 25), st.integers(0, 60), st.integers(0, 10**4), offsets)
def test_an_intent_landing_after_a_take_over_and_committed_past_is_retracted_next(
    live: list[LedgerEntry], committed: int, marked: int, now_ms: int, offs: tuple[int, ...]
) -> None:
    """A stale replica's INTENT (its epoch below the owner's) landing after the owner's
    take-over, once the owner committed past its offsets, is retracted by the next one."""
    plan = plan_epoch(live, committed, marked, now_ms)
    after = [e for e in live if e not in plan.retract]
    after = [next((r for r in plan.restamp if r.job_id == e.job_id), e) for e in after]
    zombie = entry("p0-z-late", offs, epoch=min(marked, plan.epoch - 1) or 1)
    if zombie.epoch >= plan.epoch:
        return
    later = plan_epoch([*after, zombie], max(offs) + 1, plan.epoch, now_ms)
    assert zombie in later.retract
    assert later.retract == (zombie,)


def test_the_ledger_replay_reads_epochs_and_markers_and_skips_markers_as_jobs() -> None:
    from connector.adapters.ledger import EPOCH_HEADER, marker_key, replay
    from connector.core.codec import Codec
    from connector.core.records import Record

    codec = Codec()
    old = entry("p0-0-old", (0,), epoch=0)
    new = entry("p0-1-new", (1,), epoch=0)

    def rec(key: bytes, value: bytes | None, epoch: int | None = None) -> Record:
        headers = [] if epoch is None else [(EPOCH_HEADER, str(epoch).encode())]
        return Record("ledger", 0, 0, key, value, headers, 0)

    records = [
        rec(b"p0-0-old", codec.encode_ledger(old)),  # written before epochs
        rec(marker_key("requests"), None, 9),
        rec(marker_key("requests"), None, 4),  # compaction keeps the last; the max is read
        rec(marker_key("other"), None, 99),
        rec(b"p0-1-new", codec.encode_ledger(new), 9),
    ]
    live, marked = replay(records, codec, "ledger[0]")
    assert sorted(live) == ["p0-0-old", "p0-1-new"]
    assert live["p0-0-old"].epoch == 0
    assert live["p0-1-new"].epoch == 9
    assert marked == {"requests": 9, "other": 99}


def test_a_take_over_trims_an_intent_of_the_offsets_a_created_job_holds() -> None:
    """Sim seed 79038: a dropped replica's plain INTENT re-read records a live job holds.
    The lookup would give them up (`Tracked.held`), but the job may end and the partition
    move before it; the next owner, loading the INTENT alone, created it whole (two jobs).
    The take-over's re-stamp trims it, so the ledger itself no longer holds the overlap; the
    display name stays (a lookup still finds a job created under it), the input file goes
    (it holds the trimmed requests too)."""
    created = entry("p2-0-owner", (0,), epoch=7, state=EntryState.SUBMITTED)
    zombie = replace(entry("p2-0-zombie", (0, 1), epoch=7), input_file="files/z")
    plan = plan_epoch([created, zombie], committed=1, marked=7, now_ms=NOW_MS)
    assert plan.retract == ()
    [again] = plan.restamp
    assert again.offsets == (1,)
    assert (again.job_id, again.display_name) == (zombie.job_id, zombie.display_name)
    assert again.input_file is None
    assert again.est_tokens == zombie.est_tokens // 2
    assert again.epoch == plan.epoch


def test_an_intent_whose_every_offset_a_created_job_holds_is_retracted() -> None:
    done = entry("p0-0-done", (0, 1), epoch=7, state=EntryState.DONE)
    zombie = entry("p0-0-zombie", (1,), epoch=7)
    plan = plan_epoch([done, zombie], committed=0, marked=7, now_ms=NOW_MS)
    assert plan.retract == (zombie,)
    assert plan.restamp == ()


@given(entries, st.integers(0, 25), st.integers(0, 60), st.integers(0, 10**4))
def test_after_a_take_over_no_intent_shares_an_offset_with_a_created_job(
    live: list[LedgerEntry], committed: int, marked: int, now_ms: int
) -> None:
    """Nothing is lost by the trim: each offset an INTENT gave up is held by a created
    entry, and each INTENT's remaining offsets are its own."""
    plan = plan_epoch(live, committed, marked, now_ms)
    created = {o for e in live if e.state is not EntryState.INTENT for o in e.offsets}
    late = {
        e.job_id for e in landed_late(live, committed, max(marked, *[0, *(e.epoch for e in live)]))
    }
    for e in live:
        if e.state is not EntryState.INTENT or e.job_id in late:
            continue
        [again] = [r for r in plan.restamp if r.job_id == e.job_id] or [None]
        kept = set(again.offsets) if again is not None else set()
        assert kept <= set(e.offsets)
        assert not kept & created
        assert set(e.offsets) - kept <= created
