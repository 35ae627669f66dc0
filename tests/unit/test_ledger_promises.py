"""The ledger keeps its promises under rewinds, shared ledgers and small message limits.

Whole-sidecar tests on the doubles of `connector.testing` (in-memory Kafka, the emulator
in-process): each sets up one fault exactly and checks no request reaches two jobs.
"""

from __future__ import annotations

from collections import defaultdict

from connector.core import policy
from connector.core.batcher import Batcher, BatchLimits
from connector.core.ledger_topic import (
    ENTRY_RANGE_BYTES,
    check_ledger,
    entry_budget,
    ledger_replication,
)
from connector.core.records import (
    BatchKey,
    EntryState,
    Kind,
    LedgerEntry,
    PendingRequest,
    RequestEvent,
)
from connector.core.recovery import plan_recovery
from connector.errors import ProduceFailed
from connector.testing import TestHarness, harness


def jobs_per_request(h: TestHarness) -> dict[str, set[str | None]]:
    """The batch jobs whose results name each request id."""
    out: dict[str, set[str | None]] = defaultdict(set)
    for r in h.result_events():
        out[r.request_id].add(r.batch_job)
    return out


def open_batch_holds_the_watermark(h: TestHarness) -> None:
    """Offset 0 (group "slow") stays in an open batch; offsets 1-2 (group "fast") seal by
    count, become a job and finish: results out, while the commit cannot pass offset 0."""
    h.publish("slow-0", group="slow")
    h.publish("fast-1", group="fast")
    h.publish("fast-2", group="fast")
    h.consumer.assign(0)
    h.run_until(lambda: {"fast-1", "fast-2"} <= set(jobs_per_request(h)))
    assert h.committed(0) == 0, "the open batch at offset 0 must hold the commit"


def test_finished_job_is_not_batched_again_after_a_rebalance() -> None:
    """A rewind below a finished job re-reads its requests: they are skipped, never batched."""
    h = harness(batch_max_requests=2, batch_max_wait_s=3600)
    open_batch_holds_the_watermark(h)
    created = h.sidecar.stats.jobs_created
    h.consumer.revoke(0)
    h.consumer.assign(0)  # back to the committed offset 0: offsets 1 and 2 come again
    h.step(5, advance_s=1.0)
    h.advance(3600)  # seal "slow" by age so its job runs too
    h.run_until(lambda: "slow-0" in jobs_per_request(h))
    assert h.sidecar.stats.jobs_created == created + 1, "only the slow batch is a new job"
    assert all(len(jobs) == 1 for jobs in jobs_per_request(h).values()), jobs_per_request(h)
    assert set(h.emulator.created_by_display_name().values()) == {1}  # type: ignore[union-attr]


def test_finished_job_is_not_batched_again_after_a_restart() -> None:
    """A new sidecar on the same ledger and commits (a crash, no drain) skips the re-read."""
    h = harness(batch_max_requests=2, batch_max_wait_s=3600)
    open_batch_holds_the_watermark(h)
    done = h.ledger.live(0)
    assert [e.state for e in done.values()] == [EntryState.DONE]
    # The successor process: same Kafka, same ledger, same emulator; a fresh Sidecar.
    h2 = harness(h.settings, gemini=h.gemini, clock=h.clock, kafka=h.kafka, emulator=h.emulator)
    h2.consumer.assign(0)
    h2.step(5, advance_s=1.0)
    assert h2.sidecar.stats.jobs_created == 0, "the finished job's requests were batched again"
    h2.advance(3600)
    h2.run_until(lambda: "slow-0" in jobs_per_request(h2))
    assert all(len(jobs) == 1 for jobs in jobs_per_request(h2).values())


def test_done_entries_are_tombstoned_once_the_commit_passes_them() -> None:
    """DONE covers offsets only until the committed offset is past the job's last offset."""
    h = harness(batch_max_requests=2, batch_max_wait_s=3600)
    open_batch_holds_the_watermark(h)
    assert [e.state for e in h.ledger.live(0).values()] == [EntryState.DONE]
    assert h.sidecar.owned[0].covered == {1, 2}
    h.step(advance_s=3600)  # the slow batch seals as an INTENT: the commit passes offset 2
    assert h.committed(0) == 3
    h.run_until(lambda: "slow-0" in jobs_per_request(h))
    h.step(2)
    assert h.ledger.live(0) == {}, "every finished job is pruned once committed past"
    assert h.sidecar.owned[0].covered == set()


# -- recovery (pure) ----------------------------------------------------------------------


def entry(
    job_id: str, state: EntryState, offsets: tuple[int, ...] = (0, 1), topic: str = ""
) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=offsets,
        attempt=0,
        display_name=f"g:{job_id}",
        state=state,
        use_file=False,
        est_tokens=1,
        created_ms=0,
        updated_ms=0,
        provider_job="batches/x" if state is not EntryState.INTENT else None,
        request_topic=topic,
    )


def test_recovery_loads_done_entries_as_covering_only() -> None:
    """DONE is tracked (its offsets stay covered) but never due: not submitted, not polled."""
    plan = plan_recovery({"j": entry("j", EntryState.DONE)}, now=10.0, lookup_delay_s=5.0)
    assert plan.tombstones == ()
    (r,) = plan.resume
    assert r.entry.state is EntryState.DONE
    assert r.due == float("inf")
    assert not r.lookup
    assert (plan.done, plan.intents, plan.submitted) == (1, 0, 0)


def test_done_children_still_retire_their_parent() -> None:
    """A parent whose halves are live is superseded even when a half is already DONE."""
    live = {
        "j": entry("j", EntryState.SUBMITTED, (0, 1, 2, 3)),
        "j/a": entry("j/a", EntryState.DONE, (0, 1)),
        "j/b": entry("j/b", EntryState.INTENT, (2, 3)),
    }
    plan = plan_recovery(live, now=0.0, lookup_delay_s=1.0)
    assert [e.job_id for e in plan.tombstones] == ["j"]
    assert {r.entry.job_id: r.entry.state for r in plan.resume} == {
        "j/a": EntryState.DONE,
        "j/b": EntryState.INTENT,
    }


def test_done_parent_is_never_decided_again() -> None:
    """A DONE entry stays covering-only, whatever else is live under its id."""
    live = {"j": entry("j", EntryState.DONE), "j/r2": entry("j/r2", EntryState.SUBMITTED)}
    plan = plan_recovery(live, now=0.0, lookup_delay_s=1.0)
    assert plan.tombstones == ()
    assert {r.entry.job_id: r.due for r in plan.resume} == {"j": float("inf"), "j/r2": 0.0}


def test_entries_of_another_request_topic_are_set_apart() -> None:
    """A shared ledger: the other topic's entries are neither tracked, retired nor parents."""
    live = {
        "mine": entry("mine", EntryState.INTENT, topic="a"),
        "old": entry("old", EntryState.SUBMITTED, topic=""),  # pre-v2: assumed ours
        "theirs": entry("theirs", EntryState.SUBMITTED, topic="b"),
        "theirs/a": entry("theirs/a", EntryState.INTENT, topic="b"),
        "mine/a": entry("mine/a", EntryState.INTENT, topic="b"),  # their child, our id
    }
    plan = plan_recovery(live, now=0.0, lookup_delay_s=1.0, request_topic="a")
    assert {e.job_id for e in plan.foreign} == {"theirs", "theirs/a", "mine/a"}
    assert {r.entry.job_id for r in plan.resume} == {"mine", "old"}
    assert plan.tombstones == ()


def test_prunable_once_the_commit_is_past_the_last_offset() -> None:
    done = entry("j", EntryState.DONE, (3, 7))
    assert not policy.prunable(done, 7)
    assert policy.prunable(done, 8)
    assert not policy.prunable(entry("j", EntryState.SUBMITTED, (3, 7)), 100)


def test_a_finished_job_is_tombstoned_at_once_when_already_committed() -> None:
    """No lower batch holds the commit: the ending writes the tombstone, no DONE at all."""
    h = harness(batch_max_requests=2, batch_max_wait_s=3600)
    h.publish("a-0")
    h.publish("a-1")
    h.consumer.assign(0)
    h.run_until(lambda: len(h.result_events()) == 2)
    states = [
        h.codec.decode_ledger(r.value).state for r in h.kafka.records(h.settings.ledger) if r.value
    ]
    assert EntryState.DONE not in states
    assert h.ledger.live(0) == {}


def test_ledger_entries_name_their_request_topic() -> None:
    """Every entry written (INTENT, SUBMITTED, DONE) carries the request topic."""
    h = harness(batch_max_requests=2, batch_max_wait_s=3600)
    open_batch_holds_the_watermark(h)
    written = [
        h.codec.decode_ledger(r.value) for r in h.kafka.records(h.settings.ledger) if r.value
    ]
    assert written
    assert {e.request_topic for e in written} == {h.settings.request_topic}


def test_a_shared_ledger_skips_the_other_deployments_entries() -> None:
    """A second deployment's live job in the same ledger is not tracked, nor answered here."""
    h = harness(batch_max_requests=2, batch_max_wait_s=0.5)
    theirs = entry("p0-0-theirs", EntryState.INTENT, (0, 1), topic="other.requests")
    h.producer.flush_and_check([h.ledger.write(theirs)])
    h.publish("mine-0")
    h.publish("mine-1")
    h.consumer.assign(0)
    h.run_until(lambda: len(h.result_events()) == 2)
    h.step(3, advance_s=10)
    assert h.sidecar.stats.ledger_foreign_entries == 1
    assert h.sidecar.stats.jobs_created == 1
    assert theirs.display_name not in h.emulator.created_by_display_name()  # type: ignore[union-attr]
    assert h.ledger.live(0) == {"p0-0-theirs": theirs}, "their entry is left alone"
    assert sorted(r.request_id for r in h.result_events()) == ["mine-0", "mine-1"]


# -- entry size ----------------------------------------------------------------------------


def test_interleaved_keys_never_write_a_ledger_entry_over_the_limit() -> None:
    """Two keys alternating on one partition: every offset is its own range. With a ledger
    that refuses records over 3,000 bytes (as a broker with max.message.bytes=3000 does), batches
    seal before their entry could outgrow it; nothing crash-loops, every request answered."""
    limit = 3000
    h = harness(batch_max_requests=1000, batch_max_wait_s=5, ledger_max_message_bytes=limit)
    ledger_topic = h.settings.ledger

    def refuse_large(topic: str, value: bytes | None) -> BaseException | None:
        if topic == ledger_topic and value is not None and len(value) > limit:
            return ProduceFailed(f"MessageSizeTooLargeError: {len(value)} bytes")
        return None

    h.producer.fail_when = refuse_large
    ids = [f"r-{i}" for i in range(2400)]
    for i, rid in enumerate(ids):
        h.publish(rid, group="even" if i % 2 == 0 else "odd")
    h.consumer.assign(0)
    h.run_until(lambda: len({r.request_id for r in h.result_events()}) == len(ids), 400)
    sizes = [len(r.value) for r in h.kafka.records(ledger_topic) if r.value]
    assert max(sizes) <= limit
    assert h.sidecar.stats.jobs_created > 2, "1,000-offset interleaved batches must be split"


def test_batcher_seals_before_the_entry_outgrows_its_budget() -> None:
    """Pure: with room for 3 ranges, contiguous offsets fill a batch; interleaved ones seal."""
    room = len("m") + 3 * ENTRY_RANGE_BYTES
    b = Batcher(BatchLimits(max_requests=100, max_wait_s=60, max_entry_bytes=room))

    def req(offset: int) -> PendingRequest:
        ev = RequestEvent(f"r{offset}", "m", Kind.GENERATE, "{}")
        return PendingRequest(0, offset, ev, 10, 1)

    assert [s for o in range(50) for s in b.add(req(o), 0.0)] == []  # one range
    sealed = [s for o in (60, 62, 64, 66, 68) for s in b.add(req(o), 0.0)]
    assert [x.offsets for x in sealed] == [(*range(50), 60, 62)]
    assert [x.offsets for x in b.drain()] == [(64, 66, 68)]


def test_ledger_replication_and_checks() -> None:
    """RF min(3, brokers), min ISR min(2, RF); grow when fewer partitions; warn on RF 1."""
    assert [ledger_replication(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 2), (3, 2), (3, 2)]
    ok = check_ledger("L", 4, 4, 3, 3, "compact")
    assert (ok.grow_to, ok.error, ok.warnings) == (None, None, ())
    assert check_ledger("L", 2, 6, 1, 1, "compact").grow_to == 6
    assert "recreated" in (check_ledger("L", 6, 2, 1, 1, "compact").error or "")
    assert "compact" in (check_ledger("L", 2, 2, 1, 1, "delete").error or "")
    (warning,) = check_ledger("L", 2, 2, 1, 3, "compact").warnings
    assert "single replica" in warning
    assert check_ledger("L", 2, 2, 1, 1, "compact").warnings == ()  # one broker: nothing to do
    assert entry_budget(1_048_576, "llm.requests") > 1_000_000
    assert entry_budget(100, "t") == 0
