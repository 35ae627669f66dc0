"""Job reads (`gemini.get`) run off the loop thread (`ctx.reads`); the loop picks each answer
up in a later pass, and uses it only for the ledger entry the read was started for.

Each test runs the loop on `connector.testing`'s harness with a one-thread pool as
`ctx.reads`, and `ctx.gemini` wrapped so that `get` reads the job, then waits for an Event
before it returns: the test decides when a read's answer arrives, and what the job did
meanwhile. Waits have deadlines, never bare sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from connector.core import policy
from connector.core.records import EntryState, RemoteJob, ResultStatus
from connector.errors import ProviderError, ProviderRetryable
from connector.testing import TestHarness, wait_until
from tests.unit.loop_support import (
    answered,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    make,
    publish,
    settled,
    stepping,
    the_job,
)


class GatedReads:
    """`ctx.gemini` whose `get` reads the job at once, then holds the answer until `gate`
    is set (an answer from before whatever the loop does meanwhile), or raises the next
    scripted failure instead."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.started = threading.Event()
        self.reads = 0
        self.failures: list[ProviderError] = []

    def get(self, name: str) -> RemoteJob:
        assert threading.current_thread() is not threading.main_thread(), "on the loop thread"
        self.reads += 1
        answer: RemoteJob = self._inner.get(name)
        self.started.set()
        assert self.gate.wait(60)
        if self.failures:
            raise self.failures.pop(0)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def reading(h: TestHarness) -> Iterator[GatedReads]:
    """Job reads in a one-thread pool, their answers gated."""
    gated = GatedReads(h.sidecar.ctx.gemini)
    h.sidecar.ctx.gemini = gated
    pool = ThreadPoolExecutor(max_workers=1)
    h.sidecar.ctx.reads = pool
    try:
        yield gated
    finally:
        gated.gate.set()
        pool.shutdown(wait=True)


def read_hanging(h: TestHarness, prefix: str, n: int = 3) -> tuple[GatedReads, list[str]]:
    """Publish `n` requests, and return once their job is SUBMITTED and its first read
    hangs (its answer, SUCCEEDED with every response, held back)."""
    ids = publish(h, prefix, n)
    h.consumer.assign(0)
    gated = h.sidecar.ctx.gemini
    assert isinstance(gated, GatedReads)
    wait_until(stepping(h, gated.started.is_set, 1.0), timeout=30, message="the read began")
    assert the_job(h).entry.state is EntryState.SUBMITTED
    return gated, ids


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_loop_goes_on_while_a_job_read_hangs_then_delivers_its_answer(guarantee: str) -> None:
    h = make(batch_max_requests=3, processing_guarantee=guarantee)
    with reading(h) as gated:
        _, ids = read_hanging(h, "rd")
        t = the_job(h)
        later = publish(h, "later", 2)
        consumed = h.sidecar.stats.consumed
        h.step(3, advance_s=0.5)  # passes end while the read hangs
        assert h.sidecar.stats.consumed == consumed + 2
        assert t.entry.state is EntryState.SUBMITTED
        assert t.entry.job_id in h.sidecar.tracker.reads
        assert t.due <= h.clock() + policy.FETCH_CHECK_S  # looked at again soon
        assert not answered(h, ids)
        gated.gate.set()
        wait_until(
            stepping(h, lambda: settled(h, [*ids, *later]), 1.0),
            timeout=30,
            message="both jobs answered once their reads returned",
        )
    assert_answered_once(h, [*ids, *later], ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert h.sidecar.tracker.reads == {}


@pytest.mark.parametrize("target", ["job", "request"])
def test_a_read_started_before_an_operator_cancel_is_not_used_after_it(target: str) -> None:
    """The held answer says SUCCEEDED with every response; the cancel was carried out after
    the read began. Used, it would answer OK what the cancel answered 499 (or what the
    cancel's successor job answers)."""
    h = make(batch_max_requests=3)
    with reading(h) as gated:
        _, ids = read_hanging(h, "cx")
        t = the_job(h)
        if target == "job":
            h.cancel(job=t.entry.job_id, reason="runaway")
        else:
            h.cancel(request=ids[1], reason="withdrawn")
        h.step()
        assert 499 in {r.error.code for r in h.result_events() if r.error is not None}
        gated.gate.set()
        wait_until(
            stepping(h, lambda: settled(h, ids), 1.0),
            timeout=30,
            message="every request answered and no job left",
        )
        h.step(5, advance_s=1.0)
    by_id = h.results_by_id()
    assert all(len(by_id[rid]) == 1 for rid in ids), by_id
    cancelled = {rid for rid in ids if by_id[rid][0].status is ResultStatus.ERROR}
    assert cancelled == (set(ids) if target == "job" else {ids[1]})
    assert_no_job_created_twice(h)
    assert h.sidecar.tracker.reads == {}


def test_a_read_of_a_partition_given_away_is_dropped() -> None:
    h = make(batch_max_requests=3)
    with reading(h) as gated:
        _, ids = read_hanging(h, "rv")
        job_id = the_job(h).entry.job_id
        h.consumer.revoke(0)
        h.step()
        assert job_id not in h.sidecar.tracker.reads
        reads = gated.reads
        gated.gate.set()
        h.consumer.assign(0)
        wait_until(stepping(h, lambda: settled(h, ids), 1.0), timeout=30)
    assert gated.reads > reads  # the new owner read the job again
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_a_failed_read_backs_off_as_on_the_loop_thread_then_delivers() -> None:
    h = make(batch_max_requests=3)
    with reading(h) as gated:
        gated.failures.append(ProviderRetryable("unavailable", 503, "UNAVAILABLE"))
        _, ids = read_hanging(h, "fl")
        t = the_job(h)
        gated.gate.set()
        wait_until(stepping(h, lambda: t.failures == 1), timeout=30)
        assert t.due > h.clock() + policy.FETCH_CHECK_S  # backed off, not read at once
        wait_until(stepping(h, lambda: settled(h, ids), 1.0), timeout=30)
    assert_answered_once(h, ids, ResultStatus.OK)
    assert gated.reads >= 2
    assert emu(h).calls().get("batches.create") == 1


def test_an_answer_is_used_only_for_the_entry_its_read_was_started_for() -> None:
    """An entry replaced while its read is in flight (as when a 404's re-read of the ledger
    finds the job moved on elsewhere, `Tracker.apply`): what this replica knows of the job
    is newer than the read, so the job is read again rather than acted on from the older
    answer."""
    h = make(batch_max_requests=3)
    with reading(h) as gated:
        _, ids = read_hanging(h, "st")
        t = the_job(h)
        t.entry = replace(t.entry, updated_ms=t.entry.updated_ms + 1)
        gated.gate.set()
        wait_until(stepping(h, lambda: settled(h, ids), 1.0), timeout=30)
    assert gated.reads == 2  # the held answer was dropped, the job read again
    assert_answered_once(h, ids, ResultStatus.OK)
