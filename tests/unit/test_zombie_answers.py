"""A replica the group dropped, not yet told (a zombie), answers nothing (simulator seeds 26
and 57): neither a finished job's results nor an operator cancel's 499. The new owner may
have answered those requests otherwise (a cancel's 499 and a successor job's results), so
a zombie's answer would be OK and 499 for one request, or one request answered by two jobs.
Both are preceded by a proof of ownership in at-least-once mode (exactly-once answers go in
a fenced transaction already)."""

from __future__ import annotations

from loop_support import (
    HOLD_S,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    fast,
    make,
    publish,
    settled,
)

from connector.core import policy, recovery
from connector.core.records import EntryState, LedgerEntry, ResultStatus
from connector.testing import TestHarness


def submitted(h: TestHarness) -> LedgerEntry:
    """Run until the one job of partition 0 is SUBMITTED; return its entry."""
    h.run_until(lambda: any(e.state is EntryState.SUBMITTED for e in h.ledger.live(0).values()))
    (entry,) = h.ledger.live(0).values()
    return entry


def dropped(h: TestHarness) -> None:
    """The group moves on without this replica and refuses its commits, telling it nothing."""
    h.consumer.drop_from_group()
    h.consumer.fail_commits = 1_000


def test_a_zombie_does_not_deliver_a_finished_jobs_results() -> None:
    h = make(fast(processing_delay_s=HOLD_S))
    ids = publish(h, "z", 2)
    h.consumer.assign(0)
    entry = submitted(h)
    dropped(h)
    emu(h).force_state(entry.provider_job or "", "SUCCEEDED")
    for _ in range(4):
        h.advance(2.0)
        h.sidecar.guarded_step()
    assert not set(ids) & set(h.results_by_id()), "a zombie answered requests the new owner owns"
    assert h.sidecar.stats.fenced >= 1


def test_a_zombie_does_not_answer_an_operator_cancel() -> None:
    h = make(fast(processing_delay_s=HOLD_S))
    ids = publish(h, "c", 2)
    h.consumer.assign(0)
    entry = submitted(h)
    assert entry.state is EntryState.SUBMITTED
    dropped(h)
    h.cancel(request=ids[0], reason="zombie")
    for _ in range(3):
        h.advance(1.0)
        h.sidecar.guarded_step()
    assert h.results_by_id() == {}, "a zombie answered a cancel the new owner carries out"


def test_a_zombie_does_not_resubmit_a_job_it_no_longer_owns() -> None:
    """Simulator seed 2235: a replica frozen before downloading a finished job's results
    resumed after the new owner had delivered the job and deleted it with its files; it read
    "results file gone", resubmitted the requests as `j/a` and `j/b` (plain writes) and the
    next owner created them: each request answered by two jobs. Successors, like answers,
    follow a proof of ownership."""
    h = make(fast(processing_delay_s=HOLD_S))
    publish(h, "e", 2)
    h.consumer.assign(0)
    entry = submitted(h)
    dropped(h)
    emu(h).force_state(entry.provider_job or "", "EXPIRED")
    for _ in range(4):
        h.advance(2.0)
        h.sidecar.guarded_step()
    successors = [j for j in h.ledger.live(0) if j.startswith(entry.job_id + "/")]
    assert successors == [], "a zombie resubmitted a job the new owner owns"
    assert h.sidecar.stats.fenced >= 1


# -- a killed zombie's leftover INTENT (simulator seed 26) ------------------------------


def test_overlapped_gives_way_to_older_submitted_done_and_found_entries() -> None:
    h = make()
    mine = h.entry("p0-0-b", (0, 1, 2), created_ms=20)
    older = h.entry("p0-0-a", (0,), created_ms=10)
    younger = h.entry("p0-1-c", (1,), created_ms=30)
    done = h.entry("p0-2-d", (2,), EntryState.DONE, created_ms=40)
    assert list(recovery.overlapped(mine, [mine, older, younger])) == [0]
    assert list(recovery.overlapped(mine, [younger], found={younger.display_name})) == [1]
    assert list(recovery.overlapped(mine, [done])) == [2]
    assert list(recovery.overlapped(older, [mine, younger])) == []


def test_two_recovered_intents_sharing_requests_create_one_job_each_request_answered_once() -> None:
    """Two replicas the group had dropped each batched the same uncommitted records into an
    INTENT (plain writes in at-least-once mode) and were killed before retracting them; the
    next owner recovers both. Before: both created, every shared request answered by two
    jobs. Now the younger gives the shared requests up; its successor takes the rest."""
    h = make()
    ids = publish(h, "ov", 3)
    a = h.entry("p0-0-aaaa", (0, 1), created_ms=h.clock.wall_ms() - 2)
    b = h.entry("p0-1-bbbb", (1, 2), created_ms=h.clock.wall_ms() - 1)
    h.seed_ledger(a, b)
    h.seed_committed(0)
    nxt = h.restart(0)
    nxt.run_until(lambda: settled(nxt, ids))
    assert_answered_once(nxt, ids, ResultStatus.OK)
    created = emu(nxt).created_by_display_name()
    assert a.display_name in created
    assert b.display_name not in created
    assert len(created) == 2  # a, and b's successor for request 2
    assert_no_job_created_twice(nxt)


def test_a_recovered_intent_gives_way_to_a_created_job_that_ended_during_its_lookup_delay() -> None:
    """Sim seed 51383: a replica the group had dropped wrote an INTENT for records the new
    owner had batched and created itself (the write landed after the owner's load); the
    next owner loaded both, the INTENT and the created job. That job finished, was answered
    and tombstoned within the INTENT's lookup delay, so when the lookup came (nothing found)
    no live entry held the INTENT's requests any more: it was created, each request
    answered by two jobs. What the created job held at the load is what counts."""
    h = make()
    ids = publish(h, "gone", 2)
    created = h.entry("p0-0-aaaa", (0, 1), created_ms=h.clock.wall_ms() - 2)
    job = h.create_job(created)
    late = h.entry("p0-0-zzzz", (0, 1), created_ms=h.clock.wall_ms() - 1)
    h.seed_ledger(policy.submitted(created, job, None, h.clock.wall_ms()), late)
    h.seed_committed(2)
    nxt = h.restart(0)
    nxt.run_until(lambda: settled(nxt, ids) and not nxt.ledger.live(0), advance_s=2.0)
    assert_answered_once(nxt, ids, ResultStatus.OK)
    names = emu(nxt).created_by_display_name()
    assert late.display_name not in names, "the late INTENT was created"
    assert_no_job_created_twice(nxt)
