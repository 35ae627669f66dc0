"""Big jobs at bounded memory: results delivered in chunks over passes, inputs and re-reads
chunked and sparse (the loop on `connector.testing`'s harness, and `Delivery` alone).

Memory itself is a benchmark (bench/big_results.py), not a timed test: these tests check the
shapes that bound it (chunk sizes, one chunk per pass, only the wanted records read).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import orjson
import pytest

from connector.core.jsonl import read_output_items
from connector.core.records import (
    BatchKey,
    EntryState,
    ErrorInfo,
    JobState,
    Kind,
    LedgerEntry,
    RemoteJob,
    RequestEvent,
    ResultStatus,
)
from connector.core.results import Original
from connector.core.spans import chunks, offset_ranges
from connector.errors import ProduceFailed
from connector.stages.delivery import Delivery, start_delivery
from connector.testing import TestHarness, wait_until
from tests.unit.loop_support import (
    answered,
    assert_answered_once,
    assert_no_job_created_twice,
    make,
    publish,
)

FILE_JOB = {"batch_inline_max_bytes": 1_000}
"""Every batch goes through an uploaded JSONL file."""


def test_offset_ranges_and_chunks() -> None:
    assert offset_ranges([9, 3, 4, 5, 4, 11, 10]) == [(3, 6), (9, 12)]
    assert offset_ranges([]) == []
    assert [len(c) for c in chunks(range(12_001))] == [5_000, 5_000, 2_001]


def test_20k_request_file_job_is_delivered_one_chunk_per_pass_each_result_once() -> None:
    n = 20_000
    h = make(batch_max_requests=n, batch_max_wait_s=3_600, **FILE_JOB)
    ids = publish(h, "big", n)
    h.consumer.assign(0)
    results_after_pass: list[int] = []
    for _ in range(100):  # 40 passes take the 20k in (500 per poll), 10 deliver them
        h.step(advance_s=1.0)
        results_after_pass.append(len(h.results()))
        if not h.ledger.live(0) and results_after_pass[-1]:
            break
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert h.sidecar.stats.jobs_created == 1
    # One chunk of results per pass (CONNECTOR_DELIVERY_CHUNK_REQUESTS), so the loop
    # polled between them.
    chunk = h.settings.delivery_chunk_requests
    delivering = [r for r in results_after_pass if r > 0]
    assert delivering[: n // chunk] == list(range(chunk, n + 1, chunk))
    assert h.sidecar.tracker.deliveries == {}
    # Results were matched to their requests from the side log written at intake, a
    # chunk at a time: the request topic was never read again.
    assert h.reader.fetched == 0
    assert h.sidecar.ctx.sidelog is not None
    assert h.sidecar.ctx.sidelog.hits == n // chunk


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_revoked_mid_delivery_the_next_owner_resumes_from_the_cursor(guarantee: str) -> None:
    """A crash or revoke between chunks: the next owner reads the delivery cursor from the
    ledger and produces only what is left; nothing twice, nothing lost."""
    n = 12
    h = make(batch_max_requests=n, processing_guarantee=guarantee, **FILE_JOB)
    h.sidecar.tracker.chunk_requests = 5
    ids = publish(h, "rv", n)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 5)
    assert len(h.results()) == 5
    [d] = h.sidecar.tracker.deliveries.values()
    [live] = h.ledger.live(0).values()
    assert live.delivered is not None
    assert live.delivered.scanned == 5
    h.consumer.revoke(0)
    h.step()
    assert h.sidecar.tracker.deliveries == {}
    assert h.reader.retained == set()
    assert d.chunks == 1  # it was mid-delivery

    nxt = h.restart(0)
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0))
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert_no_job_created_twice(nxt)


def _refuse_cursor_writes(h: TestHarness) -> None:
    """The ledger write of a delivery cursor fails (its results were acked before it)."""

    def refuse(topic: str, value: bytes | None) -> BaseException | None:
        if (
            topic == h.settings.ledger
            and value is not None
            and h.codec.decode_ledger(value).delivered is not None
        ):
            return ProduceFailed("scripted: cursor write refused")
        return None

    h.producer.fail_when = refuse
    if h.txn is not None:  # at-least-once, cursors are written in a fenced transaction
        h.txn.fail_when = refuse


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_crash_before_the_cursor_is_written_repeats_one_chunk_at_most(guarantee: str) -> None:
    """The cursor write fails and the replica dies. Both modes: a chunk's results and its
    cursor are one transaction (at-least-once since sim seed 10421), aborted together, so a
    reader of committed records sees nothing twice; a reader of uncommitted records would
    see that one chunk again (duplicate window 1 is one chunk, not the job)."""
    repeated = 0
    n = 12
    h = make(batch_max_requests=n, processing_guarantee=guarantee, **FILE_JOB)
    h.sidecar.tracker.chunk_requests = 5
    ids = publish(h, "cw", n)
    h.consumer.assign(0)
    h.run_until(lambda: h.sidecar.tracker.deliveries != {})
    assert len(h.results()) == 5  # the first chunk and its cursor
    _refuse_cursor_writes(h)
    with pytest.raises(ProduceFailed):  # the replica dies here
        h.run_until(lambda: False, max_passes=20)
    assert len(h.results()) == 5 + repeated  # the second chunk's results: acked or aborted

    nxt = h.restart(0)
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0))
    by_id = nxt.results_by_id()
    assert all(1 <= len(by_id[rid]) <= 2 for rid in ids)
    assert sum(len(by_id[rid]) == 2 for rid in ids) == repeated
    assert_no_job_created_twice(nxt)


def test_a_zombie_frozen_mid_delivery_never_writes_its_cursor_back() -> None:
    """At-least-once (simulator seeds 38513, 44249): a replica delivers a job's first chunk
    and its cursor, then freezes with the second chunk unsent, past the session timeout.
    The new owner delivers the rest from the cursor and tombstones the job. The zombie
    resumes: its cursor write, plain, landed after the tombstone and brought the job back
    SUBMITTED with a cursor short of its end; the next owner found it gone at the provider
    and resubmitted the rest (two jobs). Fenced like a claim, in one transaction with the
    chunk's results, both are refused."""
    n = 12
    h = make(batch_max_requests=n, **FILE_JOB)
    h.sidecar.tracker.chunk_requests = 5
    ids = publish(h, "zd", n)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 5)
    [job] = h.ledger.live(0).values()
    assert h.txn is not None
    txn = h.txn
    commit = txn.commit_transaction
    owners: list[TestHarness] = []

    def frozen_before_the_commit(sent: Any, offsets: Any, consumer: Any) -> None:
        answering = any(s.topic == h.settings.result_topic for s in txn.pending)
        if not owners and answering:
            held = list(txn.pending)
            new = h.restart(0)  # the group moved on: a new owner, a new generation
            txn.pending = held  # a frozen process's producer still holds them
            owners.append(new)
            new.run_until(lambda: answered(new, ids) and not new.ledger.live(0))
        commit(sent, offsets, consumer)

    txn.commit_transaction = frozen_before_the_commit  # type: ignore[method-assign]
    h.step()  # the zombie's second chunk: its results and cursor are refused together
    assert owners, "the zombie never sent its second chunk"
    assert job.job_id not in h.ledger.live(0), "the zombie wrote the delivered job back"
    assert h.sidecar.stats.fenced == 1
    [new] = owners
    new.consumer.revoke(0)  # a later rebalance: the owner reloads the ledger
    new.consumer.assign(0)
    new.step(10, advance_s=1.0)
    assert_no_job_created_twice(new)
    by_id = new.results_by_id()
    for rid in ids:
        jobs = {r.batch_job for r in by_id[rid]}
        assert jobs == {job.provider_job}, (rid, jobs)
        assert all(r.status is ResultStatus.OK for r in by_id[rid])
    # Its chunk's results were in the refused transaction with its cursor: not committed.
    assert all(len(by_id[rid]) == 1 for rid in ids)


def test_revoked_and_assigned_again_in_one_rebalance_the_delivery_goes_on() -> None:
    n = 12
    h = make(batch_max_requests=n, **FILE_JOB)
    h.sidecar.tracker.chunk_requests = 5
    ids = publish(h, "ra", n)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 5)
    h.consumer.revoke(0)
    h.consumer.assign(0)
    h.run_until(lambda: not h.ledger.live(0))
    assert_answered_once(h, ids, ResultStatus.OK)


def test_a_chunk_aborted_in_a_kafka_failure_is_not_sent_again_after_another_owner_sent_it() -> None:
    """Exactly-once (sim seed 52011): a replica's first chunk of results fails on Kafka (its
    transaction aborted), so the chunk stays in hand; the group gives the partition to
    another owner, which delivers that chunk and its cursor in one committed transaction;
    the first replica gets the partition back and reloads the ledger (cursor past the
    chunk). The delivery in memory must not go on from the chunk it still holds: each
    request has one committed result."""
    n = 3
    h = make(batch_max_requests=n, processing_guarantee="exactly_once")
    h.sidecar.tracker.chunk_requests = 2
    ids = publish(h, "eo", n)
    h.consumer.assign(0)

    def refuse_results(topic: str, value: bytes | None) -> BaseException | None:
        if topic == h.settings.result_topic:
            return ProduceFailed("scripted: the broker went away mid-delivery")
        return None

    h.producer.fail_when = refuse_results
    failed = None
    for _ in range(50):
        h.advance(1.0)
        if (failed := h.sidecar.guarded_step()) is not None:
            break
    assert failed is not None, "the first chunk's transaction never failed"
    assert h.sidecar.tracker.deliveries, "the delivery (its chunk in hand) is kept"
    assert h.results() == []
    h.producer.fail_when = None

    nxt = h.restart(0)  # the group's next owner: delivers the first chunk and its cursor
    nxt.sidecar.tracker.chunk_requests = 2
    nxt.run_until(lambda: len(nxt.results()) >= 2)
    [live] = h.ledger.live(0).values()
    assert live.delivered is not None
    assert live.delivered.scanned == 2
    assert len(h.results()) == 2

    h.consumer.revoke(0)  # the first replica rejoins and gets the partition back
    h.consumer.assign(0)
    h.advance(1.0)
    assert h.sidecar.guarded_step() is None  # rebuilt from the ledger
    h.run_until(lambda: not h.ledger.live(0))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_recovered_file_intent_with_sparse_offsets_is_re_read_by_range_and_spooled() -> None:
    """A recovered INTENT (no payload in memory) owning a few offsets scattered over a
    big partition: only its ranges are read, in chunks, and its JSONL is written to disk."""
    h = make(**FILE_JOB)
    publish(h, "other", 3_000)  # the records of other jobs
    wanted = (5, 6, 7, 1_500, 2_998)
    entry = h.entry("p0-0-dead", wanted, use_file=True)
    h.seed_ledger(entry)
    h.seed_committed(3_000)
    nxt = h.restart(0)
    nxt.sidecar.tracker.chunk_requests = 2
    nxt.run_until(lambda: nxt.sidecar.stats.jobs_created == 1, advance_s=5.0)
    assert nxt.reader.fetched == len(wanted)  # not the 2,994 records in between
    assert [offsets for _, offsets in nxt.reader.reads] == [list(wanted)]
    nxt.run_until(lambda: not nxt.ledger.live(0))
    by_offset = {r.source_offset: r for r in nxt.result_events()}
    assert sorted(by_offset) == list(wanted)
    assert all(r.status is ResultStatus.OK for r in by_offset.values())
    # Delivered in chunks of 2 (three re-reads after the submit's one).
    assert [len(o) for _, o in nxt.reader.reads[1:]] == [2, 2, 1]


def test_give_up_answers_every_request_in_chunks() -> None:
    h = make(**FILE_JOB)
    publish(h, "g", 7)
    entry = h.entry("p0-0-dead", tuple(range(7)), EntryState.SUBMITTED, provider_job="x")
    h.sidecar.tracker.chunk_requests = 3
    h.consumer.assign(0)
    h.step()
    h.sidecar.owned[0].jobs.clear()
    h.sidecar.tracker.give_up(entry, ErrorInfo(499, "CANCELLED", "cancelled"))
    assert [len(o) for _, o in h.reader.reads] == [3, 3, 1]
    events = h.result_events()
    assert sorted(r.source_offset for r in events) == list(range(7))
    assert {r.error.status for r in events if r.error} == {"CANCELLED"}


# -- Delivery alone ---------------------------------------------------------------------


def _entry(offsets: Iterable[int]) -> LedgerEntry:
    return LedgerEntry(
        job_id="j",
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=tuple(offsets),
        attempt=1,
        display_name="d",
        state=EntryState.SUBMITTED,
        use_file=True,
        est_tokens=1,
        created_ms=0,
        updated_ms=0,
        provider_job="batches/j",
    )


def _read(partition: int, offsets: Iterable[int]) -> dict[int, Original]:
    return {
        o: Original(partition, o, None, RequestEvent(f"r{o}", "m", Kind.GENERATE, "{}"))
        for o in offsets
        if o != 13  # offset 13 is no longer retained
    }


def _line(key: str, text: str = "hi") -> bytes:
    return orjson.dumps({"key": key, "response": {"candidates": [{"text": text}]}}) + b"\n"


def _drain(d: Delivery) -> list[list[tuple[int, str, str | None]]]:
    out = []
    while (chunk := d.next_chunk(_read, 0)) is not None:
        out.append(
            [
                (
                    o.result.source_offset,
                    o.result.status.value,
                    o.result.error and o.result.error.status,
                )
                for o in chunk
            ]
        )
        d.acked()
    return out


def test_delivery_answers_each_offset_once_in_bounded_chunks() -> None:
    """Repeated keys answered once, foreign and malformed keys ignored, requests without an
    output line answered NO_OUTPUT (INTERNAL), unreadable ones DATA_LOSS, in offset order."""
    lines = [_line(k) for k in ("12", "10", "10", "99", "011", "x", "14", "13")]
    data = io.BytesIO(b"".join(lines) + b"not json\n")
    d = Delivery(
        _entry(range(10, 16)), "batches/j", lambda: read_output_items(data), chunk_requests=2
    )
    got = _drain(d)
    assert [len(c) for c in got] == [2, 2, 2]
    flat = [x for c in got for x in c]
    assert sorted(o for o, _, _ in flat) == list(range(10, 16))
    status = {o: (s, e) for o, s, e in flat}
    assert status[10] == status[12] == status[14] == ("OK", None)
    assert status[13] == ("ERROR", "DATA_LOSS")
    assert status[11] == status[15] == ("ERROR", "INTERNAL")
    assert [o for c in got for o, _, _ in c] == list(range(10, 16))  # in offset order
    assert d.chunks == 3


def test_delivery_bounds_a_chunk_by_bytes_and_retries_a_failed_chunk_as_is() -> None:
    big = "x" * 1_000
    data = io.BytesIO(b"".join(_line(str(o), big) for o in range(6)))
    d = Delivery(_entry(range(6)), "batches/j", lambda: read_output_items(data), chunk_bytes=2_500)
    first = d.next_chunk(_read, 0)
    assert first is not None
    assert len(first) == 3
    again = d.next_chunk(_read, 0)  # not acked (produce failed): the same chunk
    assert again is not None
    assert [o.result.source_offset for o in again] == [0, 1, 2]
    d.acked()
    assert not d.finished()
    rest = _drain(d)
    assert [o for c in rest for o, _, _ in c] == [3, 4, 5]
    assert d.finished()


def test_a_downloaded_results_file_is_read_from_disk_and_closed_with_the_delivery() -> None:
    spools: list[IO[bytes]] = []

    class Files:
        def download_to(self, name: str, out: IO[bytes]) -> None:
            assert name == "files/out"
            out.write(_line("0") + _line("1"))
            spools.append(out)

    remote = RemoteJob("batches/j", JobState.SUCCEEDED, None, None, "files/out")
    d = start_delivery(Files(), _entry([0, 1]), remote)  # type: ignore[arg-type]
    assert d.output_file == "files/out"
    assert _drain(d) == [[(0, "OK", None), (1, "OK", None)]]
    assert not spools[0].closed
    d.close()
    assert spools[0].closed


def test_a_results_download_runs_off_the_loop_thread_and_the_loop_keeps_polling() -> None:
    """A results file that takes long to download (up to 2 GB) does not hold a pass: the
    loop goes on taking requests in while a background thread fetches, then delivers."""
    h = make(batch_max_requests=12, **FILE_JOB)
    started, gate = threading.Event(), threading.Event()

    class SlowDownload:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def download_to(self, name: str, out: IO[bytes]) -> None:
            started.set()
            assert gate.wait(60)
            self._inner.download_to(name, out)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    h.sidecar.ctx.gemini = SlowDownload(h.sidecar.ctx.gemini)
    pool = ThreadPoolExecutor(max_workers=1)
    h.sidecar.ctx.background = pool
    try:
        ids = publish(h, "bg", 12)
        h.consumer.assign(0)

        # The input file's upload runs in the pool too: wait for it with a deadline.
        def downloading() -> bool:
            h.step(advance_s=1.0)
            return started.is_set()

        wait_until(downloading, timeout=30, message="the results download began")
        later = publish(h, "later", 3)
        consumed = h.sidecar.stats.consumed
        h.step(3, advance_s=1.0)  # passes end while the download hangs
        assert h.sidecar.stats.consumed == consumed + 3
        assert h.results() == []
        gate.set()

        def delivered() -> bool:
            h.step(advance_s=0.2)
            return answered(h, ids)

        wait_until(delivered, timeout=30, message="delivered once the download is in")
        assert_answered_once(h, ids, ResultStatus.OK)
        h.run_until(lambda: answered(h, later))
    finally:
        gate.set()
        pool.shutdown(wait=True)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_big_job_that_gives_up_answers_errors_a_chunk_per_pass_and_resumes_from_its_cursor(
    guarantee: str,
) -> None:
    """A FAILED job past its retries: its error results go out like a delivery's, one
    chunk per pass with a cursor, so the loop keeps polling and a new owner resumes."""
    n = 12
    h = make(
        group_id="g-emulator-fail-job",  # every display name fails
        max_failed_retries=0,
        batch_max_requests=n,
        processing_guarantee=guarantee,
    )
    h.sidecar.tracker.chunk_requests = 5
    ids = publish(h, "gu", n)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 5)
    assert len(h.results()) == 5  # one chunk in the pass that saw FAILED
    [live] = h.ledger.live(0).values()
    assert live.delivered is not None
    assert (live.delivered.items, live.delivered.scanned) == (0, 5)
    h.consumer.revoke(0)
    h.step()
    nxt = h.restart(0)
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0))
    assert_answered_once(nxt, ids, ResultStatus.ERROR)
    for rs in nxt.results_by_id().values():
        assert rs[0].error is not None
        assert (rs[0].error.code, rs[0].error.status) == (500, "INTERNAL")
    assert_no_job_created_twice(nxt)
