"""A replica the group dropped, not yet told (a zombie), answers nothing (simulator seeds 26
and 57): neither a finished job's results nor an operator cancel's 499. The new owner may
have answered those requests otherwise (a cancel's 499 and a successor job's results), so
a zombie's answer would be OK and 499 for one request, or one request answered by two jobs.
Both are preceded by a proof of ownership in at-least-once mode (exactly-once answers go in
a fenced transaction already)."""

from __future__ import annotations

from loop_support import HOLD_S, emu, fast, make, publish

from connector.core.records import EntryState, LedgerEntry
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
    assert h.results_by_id() == {}, "a zombie answered requests the new owner owns"
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
