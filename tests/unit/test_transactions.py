"""Exactly-once units of work on the harness: a failed unit's sends are aborted, a record
refused as too large at commit is answered another way, and a late request's 504 goes with
the INTENT that no longer lists it (issue 16, findings 5 to 7)."""

from __future__ import annotations

from typing import Any

from loop_support import answered, assert_answered_once, emu, fast, make, publish

from connector.core.records import EntryState, ResultStatus
from connector.errors import ProviderRejected, RecordTooLarge
from connector.testing import TestHarness

EOS = {"processing_guarantee": "exactly_once"}


def _submitted(h: TestHarness) -> list[Any]:
    st = h.sidecar.owned.get(0)
    jobs = st.jobs.values() if st is not None else ()
    return [t for t in jobs if t.entry.state is EntryState.SUBMITTED]


def _refused_job_whose_give_up_fails(exc: BaseException) -> tuple[TestHarness, list[str]]:
    """A job whose create is refused for good (400): its error results go out two a chunk,
    and the second chunk's re-read raises `exc` once, after the first chunk was sent."""
    h = make(**EOS)
    h.consumer.assign(0)
    ids = publish(h, "gu", 6)
    h.sidecar.tracker.chunk_requests = 2

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise ProviderRejected("invalid job (scripted)", 400, "INVALID_ARGUMENT")

    h.gemini.create = refuse
    real = h.reader.read
    failed: list[bool] = []

    def read(partition: int, offsets: Any) -> Any:
        offsets = list(offsets)
        if 2 in offsets and not failed:
            failed.append(True)
            raise exc
        return real(partition, offsets)

    h.reader.read = read  # type: ignore[method-assign]
    return h, ids


def test_a_job_step_that_fails_after_sending_leaves_nothing_for_the_next_commit() -> None:
    """A5: the first chunk's error results were sent when the second chunk's re-read
    failed (a guarded exception): they are aborted, not committed by the next pass's commit
    and then sent again by the retry (one answer per request, not two)."""
    h, ids = _refused_job_whose_give_up_fails(RuntimeError("re-read failed (scripted)"))
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert_answered_once(h, ids, ResultStatus.ERROR)


def test_a_pass_that_backs_off_after_sending_leaves_nothing_for_the_next_commit() -> None:
    """A5: the same with a Kafka failure (the loop backs off and rebuilds): the failed
    pass's sends are aborted before the rebuild commits anything."""
    from connector.errors import BrokerUnavailable

    h, ids = _refused_job_whose_give_up_fails(BrokerUnavailable("broker gone (scripted)"))
    for _ in range(200):
        if answered(h, ids) and not h.ledger.live(0):
            break
        h.advance(1.0)
        h.sidecar.guarded_step()
    assert_answered_once(h, ids, ResultStatus.ERROR)


def test_a_result_refused_as_too_large_at_commit_becomes_an_error_result() -> None:
    """A6: the broker refuses one result of a job's transaction as too large (its limit is
    below what the sidecar read): the transaction is sent again with a 413 error result in
    its place, instead of failing every pass forever."""
    h = make(**EOS)
    h.consumer.assign(0)
    ids = publish(h, "big", 3)

    def refuse(topic: str, value: bytes | None) -> BaseException | None:
        if topic != h.settings.result_topic or value is None:
            return None
        ev = h.codec.decode_result(value)
        if ev.request_id == "big-1" and ev.status is ResultStatus.OK:
            return RecordTooLarge("MessageSizeTooLargeError (scripted)")
        return None

    h.producer.fail_when = refuse
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0), max_passes=60)
    by_id = h.results_by_id()
    assert [r.status for r in by_id["big-1"]] == [ResultStatus.ERROR]
    error = by_id["big-1"][0].error
    assert error is not None
    assert error.code == 413
    assert_answered_once(h, ["big-0", "big-2"], ResultStatus.OK)


def test_a_late_requests_504_and_the_intent_without_it_are_one_transaction() -> None:
    """A7: a request's deadline passes while its job waits for quota: its 504 is committed
    with the INTENT rewritten without it, so the next owner, after a crash before the job is
    claimed, does not answer it again."""
    h = make(fast(processing_delay_s=1_000), max_jobs=1, **EOS)
    h.consumer.assign(0)
    first = publish(h, "first", 1)
    h.run_until(lambda: _submitted(h))
    [running] = _submitted(h)
    late = publish(h, "late", 1, deadline_ms=h.clock.wall_ms() + 5_000)
    rest = publish(h, "rest", 2)
    h.run_until(lambda: answered(h, late), max_passes=30)
    intents = [e for e in h.ledger.live(0).values() if e.state is EntryState.INTENT]
    assert [tuple(e.offsets) for e in intents] == [(2, 3)]
    nxt = h.restart(0)
    emu(nxt).update_config(processing_delay_s=0)
    emu(nxt).force_state(running.entry.provider_job, "SUCCEEDED")
    ids = first + late + rest
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0), max_passes=60)
    assert_answered_once(nxt, late, ResultStatus.ERROR)
    assert_answered_once(nxt, first + rest, ResultStatus.OK)


def _result_counts(h: TestHarness) -> list[int]:
    """Results in each transaction the harness's transactional producer commits."""
    assert h.txn is not None
    counts: list[int] = []
    real = h.txn.commit_transaction

    def commit(sent: Any, offsets: Any, consumer: Any) -> None:
        # A chunk of results (`Sink.results`) is one handle over the chunk's records.
        parts = [p for s in sent for p in getattr(s, "handles", [s])]
        topics = [getattr(getattr(p, "handle", p), "topic", "") for p in parts]
        counts.append(topics.count(h.settings.result_topic))
        real(sent, offsets, consumer)

    h.txn.commit_transaction = commit  # type: ignore[method-assign]
    return counts


def test_a_big_job_that_gives_up_answers_a_chunk_per_transaction() -> None:
    """A10: a refused create of a 7-request job, error results two a chunk: four
    transactions of at most two results, never one that grows with the job (past
    transaction.timeout.ms the broker would fence it, and the retry would be as big)."""
    h, ids = _refused_job_whose_give_up_fails(RuntimeError("unused"))
    h.reader.read = h.reader.__class__.read.__get__(h.reader)  # type: ignore[method-assign]
    ids += publish(h, "more", 1)
    counts = _result_counts(h)
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert_answered_once(h, ids, ResultStatus.ERROR)
    assert max(counts) == 2
    assert sum(counts) == 7


def test_a_big_job_giving_up_resumes_after_the_last_committed_chunk() -> None:
    """A10: the owner dies after the first chunk of error results committed: the next owner
    answers only the rest (the committed chunk stays covered by its DONE entry)."""
    h, ids = _refused_job_whose_give_up_fails(RuntimeError("the owner dies (scripted)"))
    h.run_until(h.results_by_id, max_passes=20)
    assert len(h.results_by_id()) == 2
    nxt = h.restart(0)
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0), max_passes=60)
    assert_answered_once(nxt, ids, ResultStatus.ERROR)


def test_no_unit_of_work_leaves_sends_for_another() -> None:
    """A5: in a normal exactly-once flow (batch, create, poll, deliver, a late request, an
    expiry and its split) every unit commits its own sends: no begin ever finds leftovers."""
    h = make(fast(), **EOS)
    h.consumer.assign(0)
    ids = publish(h, "ok", 5)
    ids += publish(h, "late", 1, deadline_ms=h.clock.wall_ms() + 500)
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert h.txn is not None
    assert h.txn.stray_aborts == 0
