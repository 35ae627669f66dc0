"""Zombies and transactions on the in-memory doubles (connector.testing), at second scale.

The same promises are tested against the real broker and emulator in
tests/integration/test_fencing.py; these pin the loop's decisions exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog.testing

from connector.adapters.ledger import CLAIM_HEADER
from connector.errors import BrokerUnavailable
from connector.testing import TestHarness, harness


def slow_creates(h: TestHarness, seconds: float) -> list[float]:
    """Every `create` takes `seconds` of the sidecar's clock, waiting for its reply (the
    request went out at once: a stall before it would leave the claim's window and send
    nothing); returns when each started."""
    started: list[float] = []
    create = h.gemini.create

    def slow(*args: Any, **kwargs: Any) -> str:
        started.append(h.clock())
        name: str = create(*args, **kwargs)
        h.advance(seconds)
        return name

    h.gemini.create = slow
    return started


def test_a_pass_starts_no_create_after_its_budget_and_the_rest_follow_next_pass() -> None:
    h = harness(batch_max_requests=1, pass_budget_s=10.0, http_timeout_s=4.0)
    h.consumer.assign(0)
    h.step()
    for i in range(5):
        h.publish(f"r-{i}")
    started = slow_creates(h, 4.0)
    h.step()
    # Creates start at 0, 4 and 8 s into the pass; at 12 s the budget (10 s) is spent.
    assert len(started) == 3
    assert h.sidecar.stats.jobs_created == 3
    h.step()
    assert h.sidecar.stats.jobs_created == 5
    status = h.sidecar.status()
    assert status["pass_s"]["max"] >= 12.0
    assert status["pass_s"]["p50"] >= 8.0


def test_a_slow_pass_is_logged_with_where_its_time_went() -> None:
    h = harness(batch_max_requests=1, pass_budget_s=1.0, http_timeout_s=4.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    slow_creates(h, 6.0)
    with structlog.testing.capture_logs() as logs:
        h.step()
    [slow] = [e for e in logs if e["event"] == "slow loop pass"]
    assert slow["seconds"] >= 6.0
    assert slow["submit_s"] >= 6.0
    assert slow["track_s"] < 1.0
    assert slow["records"] == 1
    with structlog.testing.capture_logs() as logs:
        h.step()  # nothing slow: nothing logged
    assert not [e for e in logs if e["event"] == "slow loop pass"]


def ledger_claims(h: TestHarness) -> list[bytes]:
    """The claimed_by headers of the claim records a read_committed reader sees."""
    return [
        v for r in h.kafka.records(h.settings.ledger) for k, v in r.headers if k == CLAIM_HEADER
    ]


def test_each_create_is_preceded_by_a_committed_claim() -> None:
    h = harness(batch_max_requests=1)
    h.consumer.assign(0)
    h.step()
    for i in range(3):
        h.publish(f"r-{i}")
    h.step()
    assert h.sidecar.stats.jobs_created == 3
    assert ledger_claims(h) == [b"gemini-batch-connector.test"] * 3
    # The claim re-commits the partition's committed offset inside the transaction.
    assert h.committed(0) == 3


def test_a_zombie_is_fenced_at_its_next_claim_and_creates_nothing() -> None:
    """Dropped from the group mid-pass (a freeze), it must not create the rest."""
    h = harness(batch_max_requests=1, pass_budget_s=10.0, http_timeout_s=4.0)
    h.consumer.assign(0)
    h.step()
    for i in range(5):
        h.publish(f"r-{i}")
    started = slow_creates(h, 4.0)
    h.step()
    assert len(started) == 3
    h.consumer.drop_from_group()  # the group moved on; this replica was not told
    h.step()
    assert h.sidecar.stats.jobs_created == 3, "a zombie created a job"
    assert h.sidecar.stats.fenced == 1
    assert h.sidecar.status()["partitions"] == []
    assert len(ledger_claims(h)) == 3  # the refused claim was aborted
    assert sorted(h.emulator.created_by_display_name().values()) == [1, 1, 1]


def test_new_owner_looks_recovered_intents_up_only_after_one_http_timeout() -> None:
    """A previous owner may have a create in flight: the lookup waits until it landed."""
    h = harness(batch_max_requests=1, http_timeout_s=6.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    h.gemini.create = lambda *a, **k: (_ for _ in ()).throw(AssertionError("created"))
    sidecar_of_old_owner = h.sidecar
    sidecar_of_old_owner.submitter.submit_due = lambda *a, **k: None  # dies before create
    h.step()
    intents = h.ledger.live(0)
    assert len(intents) == 1
    # A new owner of partition 0 on the same Kafka: its own sidecar and consumer.
    new = harness(batch_max_requests=1, http_timeout_s=6.0)
    new.kafka.logs.update(h.kafka.logs)
    new.kafka.committed.update(h.kafka.committed)
    lookups: list[float] = []
    find = new.gemini.find_by_display_names

    def spy(wanted: set[str]) -> dict[str, str]:
        lookups.append(new.clock())
        found: dict[str, str] = find(wanted)
        return found

    new.gemini.find_by_display_names = spy
    assigned_at = new.clock()
    new.consumer.assign(0)
    for _ in range(12):
        new.step(advance_s=1.0)
    assert lookups, "the recovered INTENT was never looked up"
    assert lookups[0] - assigned_at >= 6.0
    assert new.sidecar.stats.jobs_created == 1


def test_exactly_once_results_and_tombstone_are_one_fenced_transaction() -> None:
    """A zombie's results never become visible to read_committed readers."""
    h = harness(batch_max_requests=2, processing_guarantee="exactly_once")
    h.consumer.assign(0)
    h.step()
    h.publish("a")
    h.publish("b")
    h.step()
    assert h.sidecar.stats.jobs_created == 1
    assert h.committed(0) == 2  # INTENT and offsets: one transaction
    h.consumer.drop_from_group()
    h.run_until(lambda: h.sidecar.stats.fenced, max_passes=30)
    assert h.results() == []
    assert len(h.ledger.live(0)) == 1  # the tombstone was aborted with the results
    # The new owner (this replica after its rejoin) delivers them, once.
    h.consumer.revoke(0)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) == 2, max_passes=60)
    h.step(5, advance_s=1.0)
    assert sorted(r.request_id for r in h.result_events()) == ["a", "b"]
    assert h.ledger.live(0) == {}


def test_exactly_once_intents_of_a_zombie_are_aborted_with_their_offsets() -> None:
    h = harness(batch_max_requests=1, processing_guarantee="exactly_once")
    h.consumer.assign(0)
    h.step()
    h.consumer.drop_from_group()
    h.publish("late")
    h.step()
    assert h.sidecar.stats.fenced == 1
    assert h.ledger.live(0) == {}
    assert h.committed(0) == 0
    assert h.sidecar.stats.jobs_created == 0


def test_a_lookup_slower_than_the_budget_does_not_starve_creates() -> None:
    """Recovered INTENTs: the lookup's answer is kept, so the next pass creates."""
    h = harness(batch_max_requests=1, pass_budget_s=1.0, http_timeout_s=2.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    h.sidecar.submitter.submit_due = lambda *a, **k: None  # the first owner dies before create
    h.step()
    new = harness(batch_max_requests=1, pass_budget_s=1.0, http_timeout_s=2.0)
    new.kafka.logs.update(h.kafka.logs)
    new.kafka.committed.update(h.kafka.committed)
    find = new.gemini.find_by_display_names

    def slow_find(wanted: set[str]) -> dict[str, str]:
        new.advance(1.5)
        found: dict[str, str] = find(wanted)
        return found

    new.gemini.find_by_display_names = slow_find
    new.consumer.assign(0)
    new.run_until(lambda: new.sidecar.stats.jobs_created == 1, max_passes=10)


def test_a_zombie_frozen_after_its_create_never_brings_the_ended_job_back() -> None:
    """At-least-once (simulator seeds 44 and 64): a replica frozen right after its create,
    past the session timeout, resumes after the new owner adopted the job, delivered it,
    tombstoned it and deleted it at the provider. Its SUBMITTED write must be fenced: had
    it landed, the next owner would load the job again, find it deleted (404) and resubmit
    it as `.../r1`, answering the request from a second job."""
    h = harness(batch_max_requests=1, http_timeout_s=2.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    create = h.gemini.create
    owners: list[TestHarness] = []

    def frozen_after_create(*args: Any, **kwargs: Any) -> str:
        job: str = create(*args, **kwargs)
        if not owners:  # the frozen replica's create; the new owner only adopts
            new = h.restart(0)  # the group moved on: a new owner, a new generation
            owners.append(new)
            new.run_until(lambda: new.results() and not new.ledger.live(0), max_passes=60)
        return job

    h.gemini.create = frozen_after_create
    h.step()  # the zombie resumes: its SUBMITTED write, then its commit
    assert h.sidecar.stats.fenced == 1
    assert h.ledger.live(0) == {}, "the zombie wrote the ended job back"
    [new] = owners
    new.consumer.revoke(0)  # a later rebalance: the owner reloads the ledger
    new.consumer.assign(0)
    new.step(20, advance_s=1.0)
    assert list(h.emulator.created_by_display_name().values()) == [1]
    assert [r.request_id for r in new.result_events()] == ["r-0"]


def test_a_kafka_failure_mid_submit_leaves_no_submitted_write_for_a_later_commit() -> None:
    """At-least-once: the pass's SUBMITTED writes wait in the transactional producer for
    their proof. A Kafka failure before it aborts them: they must not ride the next claim's
    commit, after whatever the rebuilt replica wrote since."""
    h = harness(batch_max_requests=1)
    h.consumer.assign(0)
    h.step()
    h.publish("a")
    h.publish("b")
    claim = h.ledger.claim
    calls: list[int] = []

    def failing_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise BrokerUnavailable("producer metadata lags behind the ledger")
        return claim(*args, **kwargs)

    h.ledger.claim = failing_second  # type: ignore[method-assign]
    with pytest.raises(BrokerUnavailable):
        h.step()
    assert h.sidecar.stats.jobs_created == 1
    assert h.txn is not None
    assert h.txn.pending == []
    assert h.txn.in_transaction == []


def test_a_zombie_frozen_in_its_poll_never_writes_back_a_resubmitted_job() -> None:
    """At-least-once (simulator seeds 2852 and 50900): a replica polls its job, finds it
    EXPIRED and freezes there past the session timeout. The new owner resubmits the job as
    `.../r1`, delivers it, tombstones it and deletes it. The zombie resumes and carries out
    its own resubmission: its `.../r1` INTENT, a plain write, would land after the tombstone
    and be created a second time by whoever next loads the ledger. Fenced like a claim, it
    is refused."""
    h = harness(batch_max_requests=1, http_timeout_s=2.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    h.step()
    (entry,) = h.ledger.live(0).values()
    assert entry.provider_job is not None
    assert h.emulator is not None
    h.emulator.force_state(entry.provider_job, "EXPIRED")
    get = h.gemini.get
    owners: list[TestHarness] = []

    def frozen_in_get(*args: Any, **kwargs: Any) -> Any:
        job = get(*args, **kwargs)
        if not owners:  # the zombie's poll; the group moves on meanwhile
            new = h.restart(0)
            owners.append(new)
            new.run_until(lambda: new.results() and not new.ledger.live(0), advance_s=5.0)
        return job

    h.gemini.get = frozen_in_get
    h.step(advance_s=5.0)  # the zombie's poll, then its resubmission
    assert h.sidecar.stats.fenced == 1
    assert h.ledger.live(0) == {}, "the zombie wrote the resubmitted job back"
    [new] = owners
    new.consumer.revoke(0)  # a later rebalance: the owner reloads the ledger
    new.consumer.assign(0)
    new.step(20, advance_s=1.0)
    created = h.emulator.created_by_display_name()
    assert sorted(created.values()) == [1, 1], created  # the job and its `/r1`, once each
    assert [r.request_id for r in new.result_events()] == ["r-0"]


def test_an_intent_landing_after_the_new_owner_loaded_the_ledger_is_never_created() -> None:
    """At-least-once (simulator seed 876): a replica frozen with its INTENT unsent (a plain
    write its producer still holds) past the session timeout. The new owner loads the ledger
    without it, batches the same request itself, commits past it, delivers and tombstones.
    The INTENT lands when the frozen replica resumes; a Kafka failure makes that replica
    forget, and its rebuild is fenced. Whoever recovers the partition next finds the INTENT
    with its offset below the committed one, exactly as an INTENT an owner loaded and
    committed past: its epoch, older than the new owner's, says nobody knew it. Created, the
    request would be answered by two jobs."""
    h = harness(batch_max_requests=1, http_timeout_s=2.0)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    flush = h.producer.flush_and_check
    owners: list[TestHarness] = []

    def frozen_before_flush(sent: Any, timeout_s: float = 60.0) -> None:
        if not owners and any(s.topic == h.settings.ledger for s in h.producer.pending):
            held = list(h.producer.pending)
            new = h.restart(0)  # the group moved on: a new owner, a new generation
            h.producer.pending = held  # a frozen process's producer still holds them
            owners.append(new)
            new.run_until(lambda: new.results() and not new.ledger.live(0), max_passes=60)

            def down(offsets: Any) -> None:
                raise BrokerUnavailable("scripted: broker down as the zombie resumes")

            h.consumer.commit = down  # type: ignore[method-assign]
        flush(sent, timeout_s)

    h.producer.flush_and_check = frozen_before_flush  # type: ignore[method-assign]
    assert h.sidecar.guarded_step() is not None  # the INTENT lands; the pass fails on Kafka
    [late] = h.ledger.live(0).values()
    assert late.state.value == "INTENT"
    assert late.offsets == (0,)
    for _ in range(4):  # the zombie's rebuild and passes: fenced, it creates nothing
        h.advance(2.0)
        h.sidecar.guarded_step()
    assert not h.sidecar.owned
    [new] = owners
    new.consumer.revoke(0)  # a later rebalance: the owner reloads the ledger
    new.consumer.assign(0)
    new.step(20, advance_s=1.0)
    assert list(h.emulator.created_by_display_name().values()) == [1], "created twice"
    assert [r.request_id for r in new.result_events()] == ["r-0"]
    assert new.ledger.live(0) == {}
    assert new.sidecar.stats.intents_retracted == 1
