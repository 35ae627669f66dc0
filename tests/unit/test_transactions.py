"""Exactly-once units of work on the harness: a failed unit's sends are aborted, a record
refused as too large at commit is answered another way, and a late request's 504 goes with
the INTENT that no longer lists it (issue 16, findings 5 to 7)."""

from __future__ import annotations

from typing import Any

from loop_support import answered, assert_answered_once, emu, fast, make, publish

from connector.core.records import EntryState, ResultStatus
from connector.errors import RecordTooLarge
from connector.testing import TestHarness

EOS = {"processing_guarantee": "exactly_once"}


def _submitted(h: TestHarness) -> list[Any]:
    st = h.sidecar.owned.get(0)
    jobs = st.jobs.values() if st is not None else ()
    return [t for t in jobs if t.entry.state is EntryState.SUBMITTED]


def _fail_once_on_call(h: TestHarness, n: int, exc: BaseException) -> None:
    """The `n`-th re-read by offset (from now) raises `exc`, once."""
    real = h.reader.read
    calls = {"n": 0}

    def read(partition: int, offsets: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return real(partition, offsets)

    h.reader.read = read  # type: ignore[method-assign]


def _failed_job_whose_give_up_fails(exc: BaseException) -> tuple[TestHarness, list[str]]:
    """A job FAILED for good whose error results go out two a chunk; the second chunk's
    re-read raises `exc` once, after the first chunk was sent."""
    h = make(fast(processing_delay_s=1_000), max_failed_retries=0, **EOS)
    h.consumer.assign(0)
    ids = publish(h, "gu", 6)
    h.run_until(lambda: _submitted(h))
    h.sidecar.tracker.chunk_requests = 2
    [t] = _submitted(h)
    emu(h).force_state(t.entry.provider_job, "FAILED")
    _fail_once_on_call(h, 2, exc)
    return h, ids


def test_a_job_step_that_fails_after_sending_leaves_nothing_for_the_next_commit() -> None:
    """A5: the first chunk's error results were sent when the second chunk's re-read
    failed (a guarded exception): they are aborted, not committed by the next pass's commit
    and then sent again by the retry (one answer per request, not two)."""
    h, ids = _failed_job_whose_give_up_fails(RuntimeError("re-read failed (scripted)"))
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert_answered_once(h, ids, ResultStatus.ERROR)


def test_a_pass_that_backs_off_after_sending_leaves_nothing_for_the_next_commit() -> None:
    """A5: the same with a Kafka failure (the loop backs off and rebuilds): the failed
    pass's sends are aborted before the rebuild commits anything."""
    from connector.errors import BrokerUnavailable

    h, ids = _failed_job_whose_give_up_fails(BrokerUnavailable("broker gone (scripted)"))
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
    """A7: a request's deadline passes while its job waits for quota (creates refused with
    429): its 504 is committed with the INTENT rewritten without it, so the next owner, after
    a crash before the job is created, does not answer it again."""
    h = make(fast(enqueued_token_cap=1), **EOS)
    h.consumer.assign(0)
    deadline = h.clock.wall_ms() + 5_000
    late = publish(h, "late", 1, deadline_ms=deadline)
    rest = publish(h, "rest", 2)
    h.run_until(lambda: answered(h, late), max_passes=30)
    assert [tuple(e.offsets) for e in h.ledger.live(0).values()] == [(1, 2)]
    nxt = h.restart(0)
    emu(nxt).update_config(enqueued_token_cap=3_000_000)
    nxt.run_until(lambda: answered(nxt, rest) and not nxt.ledger.live(0), max_passes=60)
    assert_answered_once(nxt, late, ResultStatus.ERROR)
    assert_answered_once(nxt, rest, ResultStatus.OK)
