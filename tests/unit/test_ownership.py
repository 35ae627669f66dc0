"""One partition lifecycle (issue 16, findings 1 and 4): whatever way a replica takes a
partition on (assigned, stray records, rebuilt after a Kafka failure) it proves ownership
before every create with the partition's committed offset, and whatever way it lets one go
(revoked, fenced, lost during a Kafka outage) it retracts its fresh INTENTs the same way."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import BrokerUnavailable, Fenced
from connector.testing import TestHarness, harness

HTTP_TIMEOUT_S = 4.0


def intent_not_created(h: TestHarness, commit: bool = True) -> None:
    """One request sealed into an INTENT that this replica never tries to create (its
    submit is held), with its offset committed or (`commit` False) not."""
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    submit = h.sidecar.submitter.submit_due
    h.sidecar.submitter.submit_due = lambda *a, **k: None  # type: ignore[method-assign]
    if not commit:
        h.consumer.fail_commits = 1
    h.step()
    h.sidecar.submitter.submit_due = submit  # type: ignore[method-assign]
    assert [e.state.value for e in h.ledger.live(0).values()] == ["INTENT"]
    assert h.committed(0) == (1 if commit else 0)


def kafka_outage(h: TestHarness) -> None:
    """One pass fails on Kafka: the replica forgets its partitions, to rebuild them."""
    poll = h.consumer.poll

    def down(timeout_s: float) -> Any:
        h.consumer.poll = poll  # type: ignore[method-assign]
        raise BrokerUnavailable("scripted: broker down")

    h.consumer.poll = down  # type: ignore[method-assign]
    assert h.sidecar.guarded_step() is not None
    assert not h.sidecar.owned


def test_a_replica_dropped_during_a_kafka_outage_creates_nothing_after_the_rebuild() -> None:
    """Finding 1: the rebuild set no committed offset, so the claim carried none and the
    coordinator checked nothing; the stale replica created the job the new owner creates."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h)
    kafka_outage(h)
    h.consumer.drop_from_group()  # the group moved on during the outage
    h.consumer.fail_commits = 1_000  # and refuses this stale member's commits, as Kafka does
    assert h.sidecar.guarded_step() is None  # rebuilt from its stale assignment
    # The take-over's own transaction (its epoch, `stages.epochs`) is fenced: the stale
    # replica drops the partition before it could claim anything.
    assert not h.sidecar.owned
    for _ in range(4):  # past the recovered INTENT's lookup delay: looked up, then claimed
        h.advance(HTTP_TIMEOUT_S)
        h.sidecar.guarded_step()
    assert h.emulator is not None
    assert h.emulator.created_by_display_name() == {}, "a zombie created a job"
    assert h.sidecar.stats.fenced == 1


def test_ownership_of_a_partition_without_a_committed_offset_is_never_proven() -> None:
    """A claim that cannot name the partition's committed offset would prove nothing."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h)
    h.sidecar.owned[0].committed = -1  # unknown, as the rebuild used to leave it
    with pytest.raises(Fenced, match="unproven"):
        h.sidecar.ctx.prove_ownership([0])
    with pytest.raises(Fenced, match="unproven"):
        h.sidecar.ctx.prove_ownership([1])  # not owned at all


def test_an_intent_forgotten_in_an_outage_is_retracted_when_the_partition_is_revoked() -> None:
    """Finding 4: rebuilt INTENTs came back to be looked up, which retraction skipped."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    kafka_outage(h)
    # The rebuild still sees the partition assigned; its next poll brings the revocation.
    h.consumer.revoke(0)
    assignment = h.consumer.assignment
    h.consumer.assignment = lambda: {0}  # type: ignore[method-assign]
    h.sidecar._rebuild_partitions()
    h.consumer.assignment = assignment  # type: ignore[method-assign]
    assert 0 in h.sidecar.owned
    h.step()
    assert h.ledger.live(0) == {}
    assert h.sidecar.stats.intents_retracted == 1


def test_an_intent_of_a_partition_lost_during_an_outage_is_retracted_after_it() -> None:
    """Finding 4: the partition went to another member while Kafka was failing; nothing
    revokes it any more, so the rebuild retracts what the ledger still holds unchanged."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    kafka_outage(h)
    h.consumer.revoke(0)
    assert h.sidecar.guarded_step() is None
    assert h.ledger.live(0) == {}
    assert h.sidecar.stats.intents_retracted == 1


def test_an_intent_a_new_owner_moved_on_is_not_retracted_after_an_outage() -> None:
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    kafka_outage(h)
    h.consumer.revoke(0)
    (entry,) = h.ledger.live(0).values()
    h.create_job(entry)  # the new owner created it and recorded it
    from connector.core import policy

    h.seed_ledger(policy.submitted(entry, "batches/x", None, h.clock.wall_ms()))
    assert h.sidecar.guarded_step() is None
    assert [e.state.value for e in h.ledger.live(0).values()] == ["SUBMITTED"]
    assert h.sidecar.stats.intents_retracted == 0


def test_a_partition_assigned_again_keeps_its_fresh_intents_retractable() -> None:
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    h.consumer.assign(0)  # assigned again, no revocation in between
    h.consumer.revoke(0)
    h.step()
    assert h.ledger.live(0) == {}
    assert h.sidecar.stats.intents_retracted == 1


def test_a_fresh_intent_the_group_committed_past_is_retracted_at_the_rebuild() -> None:
    """Sim seeds 876 and 1931: a replica's INTENT (a plain write, at-least-once) landed
    after the group had moved on; its commit was refused, then a Kafka failure made it
    forget and rebuild the partition. Meanwhile the new owner had batched the same records
    itself and committed past them. Rebuilt, the INTENT was fresh but its offsets were now
    "committed", so no retraction took it back: it was later created, and each request
    answered by two jobs (OK, then 499 from a cancel that reached the late job)."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    (late,) = h.ledger.live(0).values()
    kafka_outage(h)
    # The new owner batched r-0 itself (the INTENT landed after it loaded the ledger) and
    # committed past it; its own entry for r-0 is live still.
    h.seed_ledger(h.entry("p0-0-other", (0,)))
    h.kafka.committed[(h.consumer.topic, 0)] = 1
    assert h.sidecar.guarded_step() is None  # rebuilt, rewound to offset 1
    assert h.sidecar.owned[0].committed == 1
    assert late.job_id not in h.ledger.live(0)
    assert h.sidecar.stats.intents_retracted == 1
    for _ in range(4):  # past a recovered INTENT's lookup delay
        h.advance(HTTP_TIMEOUT_S)
        h.sidecar.guarded_step()
    assert h.emulator is not None
    created = h.emulator.created_by_display_name()
    assert late.display_name not in created, "the late INTENT was created"


def test_a_fresh_intent_nobody_committed_past_stays_after_the_rebuild() -> None:
    """Its records are read nowhere else: it is this replica's claim still."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    kafka_outage(h)
    assert h.sidecar.guarded_step() is None
    assert [e.state.value for e in h.ledger.live(0).values()] == ["INTENT"]
    assert h.sidecar.stats.intents_retracted == 0


def test_a_fresh_intent_an_owner_loaded_and_committed_past_stays_after_the_rebuild() -> None:
    """Sim seeds 1197, 1472: the new owner loaded the INTENT and committed past it, then lost
    the partition before creating it; no other entry holds its offsets: it is the only
    record of those requests, and retracting it would lose them."""
    h = harness(batch_max_requests=1, http_timeout_s=HTTP_TIMEOUT_S)
    intent_not_created(h, commit=False)
    kafka_outage(h)
    h.kafka.committed[(h.consumer.topic, 0)] = 1
    assert h.sidecar.guarded_step() is None
    assert [e.state.value for e in h.ledger.live(0).values()] == ["INTENT"]
    assert h.sidecar.stats.intents_retracted == 0


def test_passed_by_takes_only_fresh_untried_intents_the_commit_passed() -> None:
    from connector.core import recovery
    from connector.core.partitions import Tracked
    from connector.core.records import EntryState

    h = harness()
    late = Tracked(h.entry("p0-0-a", (0, 1)), fresh=True)
    ahead = Tracked(h.entry("p0-2-b", (2,)), fresh=True)
    recovered = Tracked(h.entry("p0-0-c", (0,)))  # another owner's: it may be the only one
    tried = Tracked(h.entry("p0-1-d", (1,)), fresh=True, failures=1)
    done = Tracked(h.entry("p0-0-e", (0,), EntryState.DONE), fresh=True)
    jobs = [late, ahead, recovered, tried, done]
    assert recovery.passed_by(jobs, 2) == [late.entry]  # p0-0-c and p0-0-e hold offset 0
    assert recovery.passed_by(jobs, 0) == []
    assert recovery.passed_by([late, ahead], 2) == []  # nothing else holds its offsets


def test_retracting_a_stale_intent_leaves_the_offsets_a_created_job_holds_covered() -> None:
    """Short chaos run on 7009945: a take-over retracted a stale replica's INTENT whose every
    offset a created job held, and the retraction took those offsets out of the partition's
    covered set with it; the rewound consumer read them again and batched them into a
    second job (answered twice). Covered is the union of every live entry's offsets: what
    one entry gives up stays covered while another holds it."""
    from connector.core import policy

    h = harness(batch_max_requests=10, http_timeout_s=HTTP_TIMEOUT_S)
    for i in range(4):
        h.publish(f"r-{i}")
    created = h.entry("p0-0-owner", [0, 1, 2, 3], epoch=7)
    job = h.create_job(created)
    owner = policy.submitted(created, job, None, h.clock.wall_ms())
    zombie = h.entry("p0-2-zombie", [2, 3], epoch=7)  # every offset held by the owner's job
    h.seed_ledger(owner, zombie)
    h.seed_committed(0)
    h.consumer.assign(0)
    for _ in range(3):  # taken over and read again before the owner's job is polled
        h.step()
    h.run_until(lambda: len(h.result_events()) >= 4, advance_s=h.settings.batch_max_wait_s)
    for _ in range(5):  # anything batched again is sealed, created and answered by now
        h.step(advance_s=h.settings.batch_max_wait_s)
    assert h.sidecar.stats.intents_retracted == 1, "the stale INTENT was not retracted"
    assert h.emulator is not None
    assert h.emulator.created_by_display_name() == {owner.display_name: 1}
    assert sorted(e.request_id for e in h.result_events()) == [f"r-{i}" for i in range(4)]
