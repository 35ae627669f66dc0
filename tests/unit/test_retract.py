"""A lost partition's uncommitted, never-created INTENTs are taken back (the long chaos run's
finding: a replica frozen past the poll interval wrote INTENTs for records it had fetched,
then recovered and created them, while the new owner had batched the same requests)."""

from __future__ import annotations

from connector.core.records import EntryState, ResultStatus
from connector.emulator.config import EmulatorConfig
from connector.errors import Fenced
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


def test_a_zombie_never_retracts_an_intent_the_new_owner_loaded() -> None:
    """Sim seed 3954: a replica wrote an INTENT, its offset commit was refused, and it froze
    past the session timeout. The new owner loaded the INTENT and committed past its
    offsets (a live entry holds them). The zombie resumed, was fenced and retracted the
    INTENT with a plain tombstone; the new owner lost the partition before creating it, and
    the next owner found neither the entry nor the records: never answered. A retraction is
    `Fenced` retracts nothing: the group moved on before the refusal."""
    h = owner_with_an_uncreated_intent(commit_fails=True)
    (entry,) = h.ledger.live(0).values()
    h.consumer.drop_from_group()
    owner = h.restart(0, pass_budget_s=0.0)  # the new owner, no create in its pass
    (
        owner.run_until(lambda: owner.committed(0) == 5, max_passes=5),
        "it committed past the INTENT's offsets",
    )
    assert owner.emulator is not None
    assert owner.emulator.created_by_display_name() == {}
    h.sidecar._fenced(Fenced("scripted"))  # the zombie resumes, and is fenced
    assert list(h.ledger.live(0)) == [entry.job_id], "the zombie took it back"
    assert h.sidecar.stats.intents_retracted == 0
    nxt = owner.restart(0, pass_budget_s=10.0)  # the owner loses it before creating it
    nxt.run_until(lambda: len(nxt.results()) == 5, advance_s=5.0)
    assert nxt.emulator is not None
    assert nxt.emulator.created_by_display_name() == {entry.display_name: 1}
    events = nxt.result_events()
    assert sorted(r.request_id for r in events) == [f"r{i}" for i in range(5)]


def test_a_zombie_told_by_a_revocation_keeps_an_intent_the_new_owner_loaded() -> None:
    """Seed 3954's sibling (sim seed 8099's shape, on the revocation path): the member was
    expelled while it stalled, its INTENT acked and its offset commit refused; the new owner
    loaded the INTENT (re-stamping it at its take-over) and committed past its offsets. The
    zombie learns it at its next poll, as a revocation (kafka-python reports a lost
    partition so), and retracted the INTENT with a plain tombstone: the owner that lost the
    partition before creating it left those requests in no entry, never answered."""
    h = owner_with_an_uncreated_intent(commit_fails=True)
    (entry,) = h.ledger.live(0).values()
    h.consumer.drop_from_group()
    owner = h.restart(0, pass_budget_s=0.0)  # the new owner, no create in its pass
    owner.run_until(lambda: owner.committed(0) == 5, max_passes=5)
    assert owner.emulator is not None
    assert owner.emulator.created_by_display_name() == {}
    h.consumer.lose(0)  # the zombie's next poll: its partition is gone
    h.step()
    assert 0 not in h.sidecar.owned
    assert list(h.ledger.live(0)) == [entry.job_id], "the zombie took it back"
    assert h.sidecar.stats.intents_retracted == 0
    nxt = owner.restart(0, pass_budget_s=10.0)  # the owner loses it before creating it
    nxt.run_until(lambda: len(nxt.results()) == 5, advance_s=5.0)
    assert nxt.emulator is not None
    assert nxt.emulator.created_by_display_name() == {entry.display_name: 1}
    events = nxt.result_events()
    assert sorted(r.request_id for r in events) == [f"r{i}" for i in range(5)]
