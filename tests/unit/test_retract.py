"""A lost partition's uncommitted, never-created INTENTs are taken back (the long chaos run's
finding: a replica frozen past the poll interval wrote INTENTs for records it had fetched,
then recovered and created them, while the new owner had batched the same requests)."""

from __future__ import annotations

from connector.core.records import EntryState, ResultStatus
from connector.emulator.config import EmulatorConfig
from connector.testing import TestHarness, harness

FAST = EmulatorConfig(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0)


def owner_with_an_uncreated_intent(commit_fails: bool) -> TestHarness:
    # A zero pass budget: INTENTs are written and acked, but no create starts in the pass.
    h = harness(emulator_config=FAST, batch_max_wait_s=1.0, pass_budget_s=0.0)
    for i in range(5):
        h.publish(f"r{i}")
    h.consumer.assign(0)
    h.consumer.fail_commits = 1 if commit_fails else 0
    h.step(3, advance_s=1.0)
    (entry,) = h.ledger.live(0).values()
    assert entry.state is EntryState.INTENT
    return h


def test_uncommitted_intent_of_a_revoked_partition_is_retracted_and_paid_once() -> None:
    h = owner_with_an_uncreated_intent(commit_fails=True)
    assert h.committed(0) == 0, "the commit was refused: the offsets are not committed"
    h.consumer.revoke(0)
    h.step()
    assert h.ledger.live(0) == {}, "taken back: the next owner batches these requests"
    assert h.sidecar.stats.intents_retracted == 1
    nxt = h.restart(0, pass_budget_s=10.0)
    nxt.run_until(lambda: len(nxt.results()) == 5)
    nxt.step(5, advance_s=1.0)
    created = nxt.emulator.created_by_display_name()  # type: ignore[union-attr]
    assert list(created.values()) == [1], created
    events = nxt.result_events()
    assert sorted(r.request_id for r in events) == [f"r{i}" for i in range(5)]
    assert {r.status for r in events} == {ResultStatus.OK}


def test_committed_intent_of_a_revoked_partition_stays_for_the_next_owner() -> None:
    """Its requests exist nowhere else: the next owner must find and create it."""
    h = owner_with_an_uncreated_intent(commit_fails=False)
    assert h.committed(0) == 5
    (entry,) = h.ledger.live(0).values()
    h.consumer.revoke(0)
    h.step()
    assert list(h.ledger.live(0)) == [entry.job_id]
    assert h.sidecar.stats.intents_retracted == 0
    nxt = h.restart(0, pass_budget_s=10.0)
    nxt.run_until(lambda: len(nxt.results()) == 5, advance_s=5.0)
    created = nxt.emulator.created_by_display_name()  # type: ignore[union-attr]
    assert created == {entry.display_name: 1}


def test_a_fenced_zombie_retracts_its_uncommitted_intents() -> None:
    h = owner_with_an_uncreated_intent(commit_fails=True)
    h.sidecar._fenced(RuntimeError("group generation is stale"))  # type: ignore[arg-type]
    assert h.ledger.live(0) == {}
    assert h.sidecar.stats.intents_retracted == 1
