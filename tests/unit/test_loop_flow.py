"""The loop's flow on doubles: intake, commits, partitions, back-pressure and drain.

Each test drives `Sidecar.step` passes on `connector.testing` (MemoryKafka, the scripted
consumer and producer, the in-process emulator behind the real SDK) with manual clocks.
Note the first pass after an assignment only starts the partition: records fetched before
its rewind come again on the next pass.
"""

from __future__ import annotations

import pytest
from loop_support import (
    HOLD_S,
    answered,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    fast,
    latest,
    make,
    publish,
    settled,
)

from connector.core.records import EntryState, ResultStatus
from connector.errors import ProduceFailed
from connector.testing import TestHarness, headers_of


def submitted_jobs(h: TestHarness, partition: int = 0) -> list[str]:
    return [
        e.provider_job
        for e in h.ledger.live(partition).values()
        if e.state is EntryState.SUBMITTED and e.provider_job
    ]


def test_requests_become_one_job_and_one_result_each() -> None:
    h = make()
    ids = publish(h, "ok", 5)
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert h.committed(0) == 5
    stats = h.sidecar.stats
    assert (stats.consumed, stats.jobs_created, stats.jobs_finished) == (5, 1, 1)
    r = latest(h)["ok-3"]
    assert (r.source_partition, r.source_offset, r.attempt) == (0, 3, 0)
    rec = h.results()[0]
    hdrs = headers_of(rec)
    assert rec.key == b"ok-0"
    assert hdrs["request_id"] == b"ok-0"
    assert hdrs["connector.status"] == b"OK"
    assert hdrs["connector.source"] == f"{h.settings.request_topic}/0/0".encode()
    assert hdrs["connector.batch_job"].startswith(b"batches/")
    # Uploaded files, result files and the finished job are deleted once results are out.
    assert emu(h).stats()["batches"]["live"] == 0
    assert_no_job_created_twice(h)


def test_offsets_commit_once_the_intent_is_acked_not_when_the_job_ends() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S))
    ids = publish(h, "w", 3)
    h.consumer.assign(0)
    h.step(2)
    assert h.committed(0) == 0  # batch open: nothing durable yet
    h.step(advance_s=1.0)  # sealed, INTENT acked, committed, job created
    assert h.committed(0) == 3
    (job,) = submitted_jobs(h)
    h.step(5, advance_s=10.0)
    assert not answered(h, ids)  # the job still runs; the offsets did not wait for it
    emu(h).force_state(job, "SUCCEEDED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)


def test_invalid_and_undecodable_records_are_dead_lettered_with_provenance() -> None:
    h = make()
    h.publish("valid-0", "fine")
    bad = h.publish("bad-1", "x", model="")
    junk = h.publish_raw(b"\xc3\x01garbage", key=b"junk-key", headers=[("trace", b"t-1")])
    h.publish("late-3", "too late", deadline_ms=h.clock.wall_ms() - 1)
    h.consumer.assign(0)
    h.run_until(lambda: answered(h, ["valid-0", "bad-1", "late-3"]) and not h.ledger.live(0))
    assert h.committed(0) == 4

    dlq = h.dead_letters()
    assert [(r.key, r.value) for r in dlq] == [(bad.key, bad.value), (junk.key, junk.value)]
    topic = h.settings.request_topic.encode()
    invalid, undecodable = (headers_of(r) for r in dlq)
    assert invalid["__connect.errors.topic"] == topic
    assert invalid["__connect.errors.partition"] == b"0"
    assert invalid["__connect.errors.offset"] == b"1"
    assert invalid["__connect.errors.stage"] == b"VALIDATION"
    assert invalid["__connect.errors.exception.class.name"].endswith(b"InvalidRequest")
    assert b"model is empty" in invalid["__connect.errors.exception.message"]
    assert invalid["__connect.errors.connector.name"] == h.settings.group_id.encode()
    assert undecodable["__connect.errors.offset"] == b"2"
    assert undecodable["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert undecodable["__connect.errors.exception.class.name"].endswith(b"DecodeError")
    assert undecodable["trace"] == b"t-1"  # the original headers are kept

    got = latest(h)
    assert got["valid-0"].status is ResultStatus.OK
    assert got["bad-1"].status is ResultStatus.ERROR
    assert got["bad-1"].error is not None
    assert (got["bad-1"].error.code, got["bad-1"].error.status) == (400, "INVALID_ARGUMENT")
    assert got["late-3"].error is not None
    assert got["late-3"].error.status == "DEADLINE_EXCEEDED"
    assert set(h.results_by_id()) == {"valid-0", "bad-1", "late-3"}  # junk has no id to answer
    assert h.sidecar.stats.dead_lettered == 2
    assert emu(h).calls().get("batches.create") == 1  # only the valid request made a job


def test_refused_commit_is_committed_on_the_next_pass() -> None:
    h = make()
    ids = publish(h, "c", 3)
    h.consumer.assign(0)
    h.step(2)
    h.consumer.fail_commits = 1
    h.step(advance_s=1.0)  # INTENT acked; the group refuses the commit (a rebalance)
    assert h.committed(0) == 0
    assert len(h.ledger.live(0)) == 1
    h.step()
    assert h.committed(0) == 3
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)


def test_failed_produce_raises_and_commits_nothing() -> None:
    h = make()
    h.publish_raw(b"junk", key=b"k0")
    h.consumer.assign(0)
    h.step()
    h.producer.fail_next = 1  # the dead letter is not acked
    with pytest.raises(ProduceFailed):
        h.step()
    assert h.committed(0) == 0
    assert h.dead_letters() == []
    # The process dies on the raise; the next owner answers the record.
    nxt = h.restart(0)
    nxt.step(2)
    assert len(nxt.dead_letters()) == 1
    assert nxt.committed(0) == 1


def test_records_of_a_partition_without_state_recover_it_first() -> None:
    """A stray partition: assigned at the consumer, but no assignment event reached the loop."""
    h = make()
    ids = publish(h, "s", 3)
    intent = h.entry("p0-0-dead", (0, 1, 2))
    h.seed_ledger(intent)
    h.consumer.assigned.add(0)  # no ("assigned", {0}) event
    h.step()
    assert h.sidecar.status()["partitions"] == [0]
    assert h.sidecar.status()["intents"] == 1  # recovered from the ledger, not skipped
    assert h.sidecar.stats.consumed == 0  # the fetched records come again after the rewind
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert h.sidecar.stats.jobs_created == 1
    assert_no_job_created_twice(h)


def test_stray_records_of_an_unassigned_partition_are_not_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records of a partition the consumer no longer holds (fetched before a revocation)."""
    h = make(partitions=2)
    publish(h, "x", 2, partition=1)
    h.consumer.assign(0)
    h.step()
    records = h.kafka.records(h.settings.request_topic, 1)
    monkeypatch.setattr(h.consumer, "poll", lambda timeout_s: records)
    h.step()
    assert h.sidecar.status()["partitions"] == [0]
    assert h.sidecar.stats.consumed == 0


@pytest.mark.parametrize("how", ["revoke", "lose"])
def test_rebalance_drops_open_batches_and_reassignment_rereads_from_committed(how: str) -> None:
    h = make()
    ids = publish(h, "rb", 3)
    h.consumer.assign(0)
    h.step(2)
    assert h.sidecar.status()["open_requests"] == 3
    getattr(h.consumer, how)(0)
    h.step(advance_s=5.0)
    status = h.sidecar.status()
    assert (status["partitions"], status["open_requests"]) == ([], 0)
    assert h.ledger.live(0) == {}  # the open batch was dropped, never recorded
    assert h.committed(0) == 0
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    assert h.sidecar.stats.consumed == 6  # read again from the committed offset
    assert h.sidecar.stats.jobs_created == 1
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_reassignment_recovers_running_jobs_from_the_ledger() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S))
    ids = publish(h, "ra", 3)
    h.consumer.assign(0)
    h.run_until(lambda: submitted_jobs(h))
    (job,) = submitted_jobs(h)
    h.consumer.revoke(0)
    h.step()
    assert h.sidecar.status()["submitted"] == 0
    emu(h).force_state(job, "SUCCEEDED")
    h.step(advance_s=1.0)
    assert not answered(h, ids)  # not ours now
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert (h.sidecar.stats.jobs_created, h.sidecar.stats.jobs_adopted) == (1, 0)
    assert_no_job_created_twice(h)


def test_back_pressure_pauses_consumption_while_intents_wait_for_quota() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1, max_waiting_intents=2)
    ids = [rid for g in ("g1", "g2", "g3") for rid in publish(h, g, 2, group=g)]
    h.consumer.assign(0)
    h.step(2)
    h.step(advance_s=1.0)  # three batches sealed: one job, two INTENTs wait for quota
    status = h.sidecar.status()
    assert (status["submitted"], status["intents"]) == (1, 2)
    assert h.consumer.paused == {0}
    assert h.committed(0) == 6  # waiting INTENTs still let offsets commit
    more = publish(h, "later", 2)
    h.step(3, advance_s=1.0)
    assert h.sidecar.stats.consumed == 6  # paused: nothing new is read

    (job,) = submitted_jobs(h)
    emu(h).force_state(job, "SUCCEEDED")
    emu(h).update_config(processing_delay_s=0)
    h.run_until(lambda: not h.consumer.paused)
    h.run_until(lambda: settled(h, ids + more), max_passes=400)
    assert h.sidecar.stats.consumed == 8
    assert_answered_once(h, ids + more, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_stop_drains_open_batches_into_intents_and_commits_them() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S), batch_max_wait_s=60.0)
    ids = publish(h, "d", 3)
    h.consumer.assign(0)
    h.step(2)
    assert h.sidecar.status()["open_requests"] == 3
    h.sidecar.stop()
    h.sidecar.loop()  # returns at once: stop was asked, so it only drains
    assert h.committed(0) == 3
    (entry,) = h.ledger.live(0).values()
    assert entry.offsets == (0, 1, 2)
    assert entry.state is EntryState.SUBMITTED  # created within the drain timeout
    assert h.results() == []  # the running job stays for the next owner

    nxt = h.restart(0)
    emu(nxt).force_state(entry.provider_job or "", "SUCCEEDED")
    nxt.run_until(lambda: settled(nxt, ids))
    assert nxt.sidecar.stats.consumed == 0  # nothing to read again
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert_no_job_created_twice(nxt)


def test_drain_records_intents_even_without_quota() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1, batch_max_wait_s=60.0)
    ids = [rid for g in ("g1", "g2") for rid in publish(h, g, 2, group=g)]
    h.consumer.assign(0)
    h.step(2)
    h.sidecar.stop()
    h.sidecar.loop()
    assert h.committed(0) == 4
    states = sorted(e.state.value for e in h.ledger.live(0).values())
    assert states == ["INTENT", "SUBMITTED"]

    nxt = h.restart(0)
    (job,) = submitted_jobs(nxt)
    emu(nxt).force_state(job, "SUCCEEDED")
    emu(nxt).update_config(processing_delay_s=0)
    nxt.run_until(lambda: settled(nxt, ids))
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert_no_job_created_twice(nxt)


def test_partition_paused_before_a_rebalance_is_resumed_after_it() -> None:
    h = make(
        emulator=fast(processing_delay_s=HOLD_S), partitions=2, max_jobs=1, max_waiting_intents=2
    )
    for g in ("g1", "g2", "g3"):
        publish(h, g, 1, partition=1, group=g)
    h.consumer.assign(0, 1)
    h.step(2)
    h.step(advance_s=1.0)  # partition 1: one job (its share of the quota), two INTENTs wait
    assert h.consumer.paused == {0, 1}
    emu(h).stats()  # partition 1's job starts, held
    emu(h).update_config(processing_delay_s=0)  # later jobs finish when polled
    # An eager rebalance moves partition 1 away; partition 0 stays (kafka-python keeps its
    # paused flag). The INTENTs that made us pause left with partition 1.
    h.consumer.revoke(0, 1)
    h.consumer.assign(0)
    ids = publish(h, "after", 2, partition=0)
    h.run_until(lambda: answered(h, ids), max_passes=30)
