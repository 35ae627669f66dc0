"""Every row of the crash table in docs/design.md, set up exactly, then taken over.

Each test builds what the dead owner left behind (ledger entries, committed offsets, jobs
and files at the provider), or runs an owner up to the crash point and kills it there;
then a new owner (`h.restart(0)`: a fresh Sidecar on the same MemoryKafka and emulator)
takes the partition over. Each checks the row's outcome, that no display name was created
twice, and that every request ends with a terminal result.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from loop_support import (
    LOOKUP_DELAY_S,
    answered,
    assert_answered_once,
    assert_no_job_created_twice,
    create_job_in_state,
    emu,
    make,
    publish,
    settled,
)

from connector.adapters.ledger import marker_key
from connector.core.jsonl import jsonl_lines
from connector.core.records import EntryState, ResultStatus
from connector.core.results import success_results
from connector.errors import ProduceFailed


def test_consume_to_intent_ack_is_reconsumed_and_rebatched() -> None:
    """Row 1: the INTENT never got its ack; nothing was committed; the records come again."""
    h = make()
    ids = publish(h, "r1", 3)
    h.consumer.assign(0)
    h.step(2)  # the first pass starts the partition (rewound); the second consumes
    assert h.sidecar.status()["open_requests"] == 3
    h.producer.fail_next = 1  # the sealed batch's INTENT is not acked: the owner dies
    with pytest.raises(ProduceFailed):
        h.step(advance_s=1.0)
    assert h.ledger.live(0) == {}
    assert h.committed(0) == 0
    assert emu(h).calls().get("batches.create", 0) == 0

    nxt = h.restart(0)
    nxt.run_until(lambda: settled(nxt, ids))
    assert nxt.sidecar.stats.consumed == 3
    assert nxt.sidecar.stats.jobs_created == 1
    assert nxt.committed(0) == 3
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert_no_job_created_twice(nxt)


def test_intent_ack_to_commit_skips_covered_records_and_commits_them() -> None:
    """Row 2: INTENT in the ledger, offsets not committed: re-read records are skipped."""
    h = make()
    ids = publish(h, "r2", 3)
    intent = h.entry("p0-0-dead", (0, 1, 2))
    h.seed_ledger(intent)
    h.seed_committed(0)

    nxt = h.restart(0)
    nxt.step(2)  # the first pass starts the partition (rewound); the second re-reads
    # Covered by the live INTENT: committed at once, never batched again.
    assert nxt.committed(0) == 3
    assert nxt.sidecar.status()["open_requests"] == 0
    assert list(nxt.ledger.live(0)) == [intent.job_id]
    nxt.run_until(lambda: settled(nxt, ids))
    assert nxt.sidecar.stats.jobs_created == 1
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}
    assert_answered_once(nxt, ids, ResultStatus.OK)
    # Only this job's key in the ledger (INTENT, the claim before create, SUBMITTED and its
    # end, besides the take-over markers): no second INTENT for the same requests.
    keys = {r.key for r in nxt.kafka.records(nxt.settings.ledger, 0)}
    assert keys - {marker_key(nxt.settings.request_topic)} == {b"p0-0-dead"}


def test_commit_to_create_looks_up_after_one_http_timeout_then_creates_once() -> None:
    """Row 3: INTENT, offsets committed, no job: lookup (after one timeout) finds nothing."""
    h = make()
    ids = publish(h, "r3", 3)
    intent = h.entry("p0-0-dead", (0, 1, 2))
    h.seed_ledger(intent)
    h.seed_committed(3)

    nxt = h.restart(0)
    e = emu(nxt)
    nxt.step()
    nxt.step(advance_s=LOOKUP_DELAY_S - 0.5)
    # A create of the dead owner could still be in flight: no lookup, no create yet.
    assert e.calls().get("batches.list", 0) == 0
    assert e.calls().get("batches.create", 0) == 0
    nxt.step(advance_s=0.5)
    assert e.calls().get("batches.list", 0) == 1
    assert e.calls().get("batches.create", 0) == 1
    nxt.run_until(lambda: settled(nxt, ids))
    assert (nxt.sidecar.stats.jobs_created, nxt.sidecar.stats.jobs_adopted) == (1, 0)
    assert e.created_by_display_name() == {intent.display_name: 1}
    assert_answered_once(nxt, ids, ResultStatus.OK)


@pytest.mark.parametrize("lands", ["before-crash", "while-next-owner-waits"])
def test_create_to_submitted_is_adopted_not_created_again(lands: str) -> None:
    """Row 4: the job exists under the INTENT's display name: adopted, no second job.

    `while-next-owner-waits`: the dead owner's create lands after the new owner loaded the
    ledger, within the HTTP timeout it waits before the lookup (why the wait exists).
    """
    h = make()
    ids = publish(h, "r4", 3)
    intent = h.entry("p0-0-dead", (0, 1, 2))
    h.seed_ledger(intent)
    h.seed_committed(3)
    if lands == "before-crash":
        h.create_job(intent)

    nxt = h.restart(0)
    nxt.step()
    if lands == "while-next-owner-waits":
        nxt.step(advance_s=1.0)
        nxt.create_job(intent)
    nxt.run_until(lambda: settled(nxt, ids))
    assert (nxt.sidecar.stats.jobs_created, nxt.sidecar.stats.jobs_adopted) == (0, 1)
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}
    assert_answered_once(nxt, ids, ResultStatus.OK)


def _refuse_tombstones(ledger_topic: str) -> Callable[[str, bytes | None], BaseException | None]:
    def fail(topic: str, value: bytes | None) -> BaseException | None:
        if topic == ledger_topic and value is None:
            return ProduceFailed("scripted: the owner dies before the tombstone is acked")
        return None

    return fail


def test_results_to_tombstone_the_cursor_covers_every_result_nothing_twice() -> None:
    """Row 5, run to the crash point: results acked and the delivery cursor past them
    written, the job's end never is. The next owner resumes from the cursor: nothing is
    left to produce, it only ends the job (no duplicate: the window is the last chunk, and
    only when the cursor write itself is lost, see test_big_jobs)."""
    h = make()
    ids = publish(h, "r5", 3)
    h.consumer.assign(0)
    h.producer.fail_when = _refuse_tombstones(h.settings.ledger)
    with pytest.raises(ProduceFailed):
        h.run_until(lambda: False, max_passes=20)
    assert_answered_once(h, ids, ResultStatus.OK)
    (left,) = h.ledger.live(0).values()
    assert left.state is EntryState.SUBMITTED
    assert left.delivered is not None
    assert left.delivered.scanned == 3

    nxt = h.restart(0)
    nxt.run_until(lambda: not nxt.ledger.live(0))
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert nxt.sidecar.stats.jobs_created == 0
    assert nxt.sidecar.stats.results_ok == 0
    assert_no_job_created_twice(nxt)


def test_results_to_tombstone_seeded_submitted_job_is_delivered_and_retired() -> None:
    """Row 5, seeded: a SUBMITTED entry whose job already SUCCEEDED at the provider."""
    h = make()
    ids = publish(h, "r5s", 3)
    entry = h.entry("p0-0-dead", (0, 1, 2))
    job = create_job_in_state(h, entry, "SUCCEEDED")
    h.seed_ledger(h.entry("p0-0-dead", (0, 1, 2), EntryState.SUBMITTED, provider_job=job))
    h.seed_committed(3)

    nxt = h.restart(0)
    nxt.step()  # SUBMITTED entries are polled at once, no wait
    assert answered(nxt, ids)
    assert nxt.ledger.live(0) == {}
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert nxt.sidecar.stats.jobs_created == 0
    assert_no_job_created_twice(nxt)


@pytest.mark.parametrize("halves", ["none-created", "a-created", "a-finished"])
def test_successors_to_parent_tombstone_retires_parent(halves: str) -> None:
    """Row 6: parent and successor INTENTs live; the parent is superseded and tombstoned.

    `none-created`: both halves are created once. `a-created`: the dead owner had created
    /a: it is adopted. `a-finished`: /a had finished and been tombstoned (its results were
    out); deciding the parent again would write /a again and create it twice: it is not.
    """
    h = make()
    ids = publish(h, "r6", 4)
    parent = h.entry("p0-0-dead", (0, 1, 2, 3))
    job = create_job_in_state(h, parent, "EXPIRED")
    parent = h.entry("p0-0-dead", (0, 1, 2, 3), EntryState.SUBMITTED, provider_job=job)
    a = h.entry("p0-0-dead/a", (0, 1), attempt=1, est_tokens=20)
    b = h.entry("p0-0-dead/b", (2, 3), attempt=1, est_tokens=20)
    assert a.display_name == parent.display_name + "/a"
    h.seed_ledger(parent, a, b)
    if halves != "none-created":
        job_a = h.create_job(a)
    if halves == "a-finished":
        # The dead owner delivered /a's results (acked), then tombstoned /a.
        remote = h.gemini.get(job_a)
        outgoing = success_results(
            a, h.reader.read(0, a.offsets), remote.inline or (), job_a, h.clock.wall_ms()
        )
        sink = h.sidecar.ctx.sink
        h.producer.flush_and_check([sink.result(o.kafka_key, o.result) for o in outgoing])
        h.seed_tombstone(a)
    h.seed_committed(4)

    nxt = h.restart(0)
    nxt.step()
    assert parent.job_id not in nxt.ledger.live(0)  # retired on load, before anything else
    nxt.run_until(lambda: not nxt.ledger.live(0))
    stats = nxt.sidecar.stats
    assert stats.jobs_resubmitted == 0
    created = emu(nxt).created_by_display_name()
    assert created == {parent.display_name: 1, a.display_name: 1, b.display_name: 1}
    assert_no_job_created_twice(nxt)
    # Every request answered once (for `a-finished`, /a's by the dead owner), at attempt 1.
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert {r.attempt for rs in nxt.results_by_id().values() for r in rs} == {1}
    expected = {"none-created": (2, 0), "a-created": (1, 1), "a-finished": (1, 0)}[halves]
    assert (stats.jobs_created, stats.jobs_adopted) == expected


def test_dead_letter_and_error_result_to_commit_answers_again_duplicate_window_2() -> None:
    """Row 7: dead letters and the error result acked, the commit not: read and answered again."""
    h = make()
    h.publish("bad-0", "x", model="")  # decodes, but invalid: dead letter + error result
    h.publish_raw(b"\x00not avro", key=b"junk")  # undecodable: dead letter only
    ids = ["bad-0"]
    h.consumer.assign(0)
    h.step()  # starts the partition
    h.consumer.fail_commits = 1  # the owner dies before its commit lands
    h.step()
    assert len(h.dead_letters()) == 2
    assert len(h.results_by_id()["bad-0"]) == 1
    assert h.committed(0) == 0

    nxt = h.restart(0)
    nxt.step(2)
    assert nxt.committed(0) == 2
    # Duplicate window 2: both records dead-lettered again, the error result sent again.
    assert len(nxt.dead_letters()) == 4
    again = nxt.results_by_id()["bad-0"]
    assert len(again) == 2
    assert all(r.status is ResultStatus.ERROR and r.error is not None for r in again)
    assert again[0].error == again[1].error
    assert answered(nxt, ids)
    assert emu(nxt).created_by_display_name() == {}


def test_upload_to_create_uploads_a_new_file_and_creates_once() -> None:
    """Row 8: the dead owner uploaded the input file, then died before `create`."""
    h = make()
    ids = publish(h, "r8", 3)
    intent = h.entry("p0-0-dead", (0, 1, 2), use_file=True)
    h.seed_ledger(intent)
    h.seed_committed(3)
    orphan = h.gemini.upload_jsonl(jsonl_lines(h.job_inputs(intent)), intent.display_name)
    assert orphan.startswith("files/")

    nxt = h.restart(0)
    nxt.run_until(lambda: settled(nxt, ids))
    files = emu(nxt).stats()["files"]
    assert files["uploaded_total"] == 2  # the orphan, and the new owner's own upload
    assert files["uploaded"] == 1  # the new input file was deleted; the orphan waits its TTL
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}
    assert (nxt.sidecar.stats.jobs_created, nxt.sidecar.stats.jobs_adopted) == (1, 0)
    assert_answered_once(nxt, ids, ResultStatus.OK)
