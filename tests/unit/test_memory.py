"""Back-pressure by bytes: payloads of waiting jobs drop past their budget, and consumption
pauses past a bound of waiting bytes (pure rules, then the loop on `connector.testing`)."""

from __future__ import annotations

import pytest
from loop_support import (
    HOLD_S,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    fast,
    make,
    publish,
    settled,
)

from connector.core.memory import BYTES_PER_TOKEN, payloads_to_drop, request_bytes, waiting
from connector.core.partitions import Tracked
from connector.core.quota import should_pause
from connector.core.records import (
    BatchKey,
    EntryState,
    Kind,
    LedgerEntry,
    PendingRequest,
    RequestEvent,
    ResultStatus,
)
from connector.testing import TestHarness


def tracked(
    job: str, size: int, priority: int = 0, created: int = 0, state: EntryState = EntryState.INTENT
) -> Tracked:
    ev = RequestEvent("r", "gemini-2.5-flash", Kind.GENERATE, "{}")
    entry = LedgerEntry(
        job, BatchKey(0, "gemini-2.5-flash", Kind.GENERATE, priority), (created,), 1, job,
        state, False, 7, created, created,
    )  # fmt: skip
    return Tracked(entry, payload=(PendingRequest(0, created, ev, size, 1),))


def test_payload_size_is_taken_from_the_requests() -> None:
    t = tracked("a", 300)
    assert t.size == 300
    assert request_bytes(t) == 300
    t.payload = None
    assert t.size == 300  # known after the payload is gone
    unknown = Tracked(t.entry)  # recovered: size unknown, estimated from tokens
    assert request_bytes(unknown) == 7 * BYTES_PER_TOKEN


def test_payloads_of_the_jobs_created_last_drop_first() -> None:
    old = tracked("old", 100, created=1)
    new = tracked("new", 100, created=2)
    urgent = tracked("urgent", 100, priority=5, created=3)
    sent = tracked("sent", 10_000, state=EntryState.SUBMITTED)  # not waiting: never counted
    jobs = [new, sent, old, urgent]
    assert payloads_to_drop(jobs, 300) == []
    assert payloads_to_drop(jobs, 250) == [new]
    assert payloads_to_drop(jobs, 199) == [old, new]
    assert payloads_to_drop(jobs, 0) == [urgent, old, new]
    # A prefix in submit order keeps its payloads: a smaller later one does not jump the queue.
    big_first = [tracked("big", 500, created=1), tracked("small", 10, created=2)]
    assert [t.entry.job_id for t in payloads_to_drop(big_first, 100)] == ["big", "small"]


def test_waiting_counts_intents_and_their_bytes() -> None:
    jobs = [tracked("a", 100), tracked("b", 50), tracked("c", 9, state=EntryState.SUBMITTED)]
    assert waiting(jobs) == (2, 150)


@pytest.mark.parametrize(
    ("intents", "nbytes", "max_bytes", "pause"),
    [(1, 99, 100, False), (1, 100, 100, True), (1, 10**12, 0, False), (200, 0, 100, True)],
)
def test_should_pause_on_bytes_too(intents: int, nbytes: int, max_bytes: int, pause: bool) -> None:
    assert should_pause(intents, 200, nbytes, max_bytes) is pause


def held(h: TestHarness) -> list[Tracked]:
    return [t for t in h.sidecar.owned[0].jobs.values() if t.entry.state is EntryState.INTENT]


def test_waiting_jobs_drop_their_payloads_past_the_budget_and_re_read_them() -> None:
    """max_jobs=1 holds the second job back; its requests leave memory (budget 1 byte) and
    are re-read by offset when its turn comes: every request still answered once."""
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1, max_payload_bytes=1)
    ids = publish(h, "pa", 2, group="a") + publish(h, "pb", 2, group="b")
    h.consumer.assign(0)
    h.step(2)
    h.step(advance_s=1.0)
    (waiting_job,) = held(h)
    assert waiting_job.payload is None
    assert waiting_job.size > 0  # still counted as waiting bytes
    (first,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    emu(h).force_state(first.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: h.sidecar.status()["intents"] == 0)
    (second,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    emu(h).force_state(second.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_payloads_within_the_budget_are_kept() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1)
    publish(h, "ka", 2, group="a")
    publish(h, "kb", 2, group="b")
    h.consumer.assign(0)
    h.step(2)
    h.step(advance_s=1.0)
    (waiting_job,) = held(h)
    assert waiting_job.payload is not None


def test_consumption_pauses_past_the_waiting_bytes_and_resumes() -> None:
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1, max_waiting_bytes=100)
    ids = publish(h, "wa", 2, group="a") + publish(h, "wb", 2, group="b")
    h.consumer.assign(0)
    h.step(2)
    h.step(advance_s=1.0)
    (waiting_job,) = held(h)
    assert waiting_job.size >= 100
    assert h.sidecar.status()["intents"] == 1  # far under max_waiting_intents (200)
    assert h.consumer.paused == {0}
    (first,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    emu(h).force_state(first.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: not h.consumer.paused)
    assert h.sidecar.status()["intents"] == 0
    (second,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    emu(h).force_state(second.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
