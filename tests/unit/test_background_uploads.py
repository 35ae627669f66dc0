"""A file job's input upload runs off the loop thread (`ctx.background`); the claim and the
create stay on it, in the pass that finds the upload ended (upload → claim → create).

Each test runs the loop on `connector.testing`'s harness with a one-thread pool as
`ctx.background`, and `ctx.gemini` wrapped so that `upload_file` waits for an Event: the
test decides when an upload ends, and waits for it with deadlines, never bare sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, Any

import pytest

from connector.core import policy
from connector.core.records import EntryState, ResultStatus
from connector.errors import (
    BrokerUnavailable,
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderRetryable,
)
from connector.stages.submitter import CLAIM_FRESH_S
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

FILE_JOB = {"batch_inline_max_bytes": 1, "batch_max_requests": 5}
"""Every batch of 5 goes through an uploaded JSONL file."""


class GatedUploads:
    """`ctx.gemini` whose `upload_file` waits for `gate`, then raises the next scripted
    failure, if any, or uploads. Records each upload's spool and when it began."""

    def __init__(self, inner: Any, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._clock = clock
        self.gate = threading.Event()
        self.started = threading.Event()
        self.spools: list[IO[bytes]] = []
        self.began: list[float] = []
        self.failures: list[ProviderError] = []

    def upload_file(self, f: IO[bytes], display_name: str) -> str:
        assert threading.current_thread() is not threading.main_thread(), "on the loop thread"
        self.spools.append(f)
        self.began.append(self._clock())
        self.started.set()
        assert self.gate.wait(60)
        if self.failures:
            raise self.failures.pop(0)
        name: str = self._inner.upload_file(f, display_name)
        return name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingPool(ThreadPoolExecutor):
    """A one-thread pool that counts what it was given to run."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@contextmanager
def background(h: TestHarness) -> Iterator[GatedUploads]:
    """Uploads (and downloads) in a one-thread pool, uploads gated."""
    gated = GatedUploads(h.sidecar.ctx.gemini, h.clock)
    h.sidecar.ctx.gemini = gated
    pool = CountingPool()
    h.sidecar.ctx.background = pool
    try:
        yield gated
    finally:
        gated.gate.set()
        pool.shutdown(wait=True)


def creates(h: TestHarness) -> int:
    return int(emu(h).calls().get("batches.create", 0))


def uploading(h: TestHarness) -> GatedUploads:
    """Start a file job of 5 requests and return once its upload hangs in the background."""
    ids = publish(h, "up", 5)
    assert ids == [f"up-{i}" for i in range(5)]
    h.consumer.assign(0)
    up = h.sidecar.ctx.gemini
    assert isinstance(up, GatedUploads)
    wait_until(stepping(h, up.started.is_set), timeout=30, message="the upload began")
    return up


IDS = [f"up-{i}" for i in range(5)]


def test_the_loop_keeps_taking_requests_in_while_an_upload_hangs_then_creates_once() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        t = the_job(h)
        later = publish(h, "later", 3)
        consumed = h.sidecar.stats.consumed
        h.step(3, advance_s=1.0)  # passes end while the upload hangs
        assert h.sidecar.stats.consumed == consumed + 3
        assert t.entry.state is EntryState.INTENT
        assert creates(h) == 0
        assert t.due <= h.clock() + policy.FETCH_CHECK_S  # looked at again soon
        assert t.entry.job_id in h.sidecar.submitter.uploads
        up.gate.set()
        wait_until(
            stepping(h, lambda: h.sidecar.stats.jobs_created == 2),
            timeout=30,
            message="both jobs created once their uploads ended",
        )
        wait_until(stepping(h, lambda: answered(h, IDS) and answered(h, later), 1.0), timeout=30)
    assert_answered_once(h, [*IDS, *later], ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 2  # one upload per job
    assert all(s.closed for s in up.spools)
    assert h.sidecar.submitter.uploads == {}


def test_an_uploading_job_holds_its_quota_so_no_job_past_it_is_uploaded() -> None:
    """Admitted when its upload began, a job counts against the quota until it is created,
    as one upload-and-create call did: the next waits, never uploaded before it can be
    created (an unrecorded input file could expire while it waits)."""
    h = make(max_jobs=1, **FILE_JOB)
    with background(h) as up:
        uploading(h)
        pool = h.sidecar.ctx.background
        assert isinstance(pool, CountingPool)
        later = publish(h, "later", 5)
        h.step(3, advance_s=1.0)
        assert len(h.ledger.live(0)) == 2
        assert pool.submitted == 1
        up.gate.set()
        wait_until(stepping(h, lambda: settled(h, [*IDS, *later]), 1.0), timeout=30)
    assert_answered_once(h, [*IDS, *later], ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 2


@pytest.mark.parametrize(
    "failure",
    [
        ProviderRetryable("scripted: 503 on upload", 503, "UNAVAILABLE"),
        ProviderAuthFailed("scripted: API key rejected", 401, "UNAUTHENTICATED"),
    ],
    ids=["503", "auth"],
)
def test_a_failed_upload_is_retried_with_backoff_and_the_job_created_once(
    failure: ProviderError,
) -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        up.failures.append(failure)
        uploading(h)
        t = the_job(h)
        up.gate.set()
        wait_until(
            stepping(h, lambda: t.failures == 1, policy.FETCH_CHECK_S),
            timeout=30,
            message="failure seen",
        )
        # Handled as the synchronous upload's failure was: backoff, and no lookup (nothing
        # can have been created without an input file).
        assert not t.lookup
        assert t.due >= h.clock() + policy.FAILURE_FLOOR_S
        assert h.sidecar.submitter.uploads == {}
        assert up.spools[0].closed
        assert h.sidecar.stats.provider_auth_failing is isinstance(failure, ProviderAuthFailed)
        wait_until(stepping(h, lambda: settled(h, IDS), 1.0), timeout=30, message="delivered")
    assert_answered_once(h, IDS, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.began) == 2
    assert up.began[1] - up.began[0] >= policy.FAILURE_FLOOR_S
    assert not h.sidecar.stats.provider_auth_failing


def test_an_upload_refused_for_good_gives_the_job_up() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        up.failures.append(ProviderRejected("scripted: bad file", 400, "INVALID_ARGUMENT"))
        uploading(h)
        up.gate.set()
        wait_until(stepping(h, lambda: answered(h, IDS)), timeout=30, message="answered")
    assert_answered_once(h, IDS, ResultStatus.ERROR)
    assert {r.error.status for r in h.result_events() if r.error} == {"INVALID_ARGUMENT"}
    assert creates(h) == 0
    assert all(e.state is EntryState.DONE for e in h.ledger.live(0).values())


def test_revoked_during_an_upload_the_old_owner_creates_nothing_the_next_creates_once() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        h.consumer.revoke(0)
        h.step()
        assert h.sidecar.submitter.uploads == {}  # forgotten: the job is not ours any more
        assert not up.spools[0].closed  # still being uploaded from
        up.gate.set()
        wait_until(lambda: up.spools[0].closed, timeout=30, message="spool closed at the end")
        h.step(3, advance_s=1.0)
        assert creates(h) == 0
        # Its file was never used nor recorded: deleted, not left for 48 h.
        files = emu(h).stats()["files"]
        assert (files["uploaded_total"], files["count"]) == (1, 0)

    nxt = h.restart(0)
    nxt.run_until(lambda: settled(nxt, IDS))
    assert_answered_once(nxt, IDS, ResultStatus.OK)
    assert_no_job_created_twice(nxt)
    assert creates(nxt) == 1


def test_revoked_and_assigned_again_in_one_rebalance_the_running_upload_is_reused() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        job_id = the_job(h).entry.job_id
        h.consumer.revoke(0)
        h.consumer.assign(0)
        h.step()
        assert job_id in h.sidecar.submitter.uploads
        up.gate.set()
        # Recovered, it is looked up one HTTP timeout later, then created from that upload.
        wait_until(stepping(h, lambda: settled(h, IDS), 1.0), timeout=30, message="delivered")
    assert_answered_once(h, IDS, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 1


def test_a_kafka_failure_during_an_upload_rebuilds_the_job_and_reuses_the_upload() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        job_id = the_job(h).entry.job_id
        poll = h.consumer.poll

        def broker_down(timeout_s: float) -> Any:
            raise BrokerUnavailable("scripted: broker down")

        h.consumer.poll = broker_down  # type: ignore[method-assign]
        assert h.sidecar.guarded_step() is not None  # backs off, partitions forgotten
        assert not h.sidecar.owned
        h.consumer.poll = poll  # type: ignore[method-assign]
        assert h.sidecar.guarded_step() is None  # rebuilt from the ledger: the same INTENT
        assert job_id in h.sidecar.submitter.uploads
        up.gate.set()
        wait_until(stepping(h, lambda: settled(h, IDS), 1.0), timeout=30, message="delivered")
    assert_answered_once(h, IDS, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 1


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_claim_fenced_after_the_upload_creates_nothing(guarantee: str) -> None:
    """Dropped from the group while the upload ran: the claim the loop makes once it is in
    is refused; the replica drops its partitions and creates nothing."""
    h = make(processing_guarantee=guarantee, **FILE_JOB)
    with background(h) as up:
        uploading(h)
        h.consumer.drop_from_group()  # the group moved on; this replica was not told
        up.gate.set()
        wait_until(stepping(h, lambda: h.sidecar.stats.fenced, policy.FETCH_CHECK_S), timeout=30)
        assert creates(h) == 0
        assert h.sidecar.status()["partitions"] == []
        assert h.sidecar.submitter.uploads == {}
        h.step(3, advance_s=1.0)
        assert creates(h) == 0
        # Rejoined, it gets the partition back: the job is looked up, then created once.
        h.consumer.revoke(0)
        h.consumer.assign(0)
        wait_until(stepping(h, lambda: settled(h, IDS), 1.0), timeout=30, message="delivered")
    assert_answered_once(h, IDS, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_a_claim_too_slow_after_the_upload_keeps_the_file_and_creates_from_it() -> None:
    h = make(**FILE_JOB)
    claim = h.ledger.claim
    slow = [True]

    def slow_once(*args: Any, **kwargs: Any) -> Any:
        if slow:  # the first claim takes longer than CLAIM_FRESH_S: not trusted
            slow.clear()
            h.advance(CLAIM_FRESH_S + 1.0)
        return claim(*args, **kwargs)

    h.ledger.claim = slow_once  # type: ignore[method-assign]
    with background(h) as up:
        uploading(h)
        t = the_job(h)
        up.gate.set()
        wait_until(
            stepping(h, lambda: t.entry.input_file, policy.FETCH_CHECK_S),
            timeout=30,
            message="kept",
        )
        assert creates(h) == 0
        assert h.ledger.live(0)[t.entry.job_id].input_file == t.entry.input_file
        wait_until(stepping(h, lambda: settled(h, IDS), 1.0), timeout=30, message="delivered")
    assert_answered_once(h, IDS, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 1  # created from the kept file, not uploaded again


def test_on_stop_a_queued_upload_is_cancelled_and_the_running_one_abandoned() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        publish(h, "second", 5)
        h.step()  # sealed as a second job; its upload waits for the first (one thread)
        running, queued = (u.future for u in h.sidecar.submitter.uploads.values())
        h.sidecar.stop()
        h.sidecar.loop()  # returns at once: drains
        assert h.sidecar.submitter.uploads == {}
        assert queued.cancelled()
        up.gate.set()
        wait_until(lambda: up.spools[0].closed, timeout=30, message="the running one ended")
        assert running.done()  # and nothing on the loop thread will create from it
    assert len(up.spools) == 1  # the queued upload never ran
    assert creates(h) == 0


def test_on_stop_no_upload_is_started() -> None:
    h = make(**FILE_JOB)
    with background(h) as up:
        uploading(h)
        pool = h.sidecar.ctx.background
        assert isinstance(pool, CountingPool)
        assert pool.submitted == 1
        publish(h, "open", 3)
        h.step()  # taken in, an open batch (neither full nor due)
        h.sidecar.stop()
        h.sidecar.loop()  # returns at once: drains
        assert len(h.ledger.live(0)) == 2  # the open batch is recorded as an INTENT...
        assert pool.submitted == 1  # ...and not uploaded: the next owner will
        assert h.sidecar.submitter.uploads == {}
        up.gate.set()
        wait_until(lambda: up.spools[0].closed, timeout=30, message="the running one ended")
    assert creates(h) == 0


def test_a_big_file_jobs_input_is_written_a_slice_per_pass_then_uploaded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writing a 5,000-request JSONL (from memory here; re-read for recovered jobs) is
    spread over passes (1,000 lines per pass here), so the loop keeps polling; then one
    upload, one create."""
    monkeypatch.setattr(policy, "SPOOL_SLICE_S", 0.0)  # one block of 1,000 lines per pass
    n = 5_000
    h = make(batch_inline_max_bytes=1, batch_max_requests=n, batch_max_wait_s=3_600)
    ids = publish(h, "sp", n)
    with background(h) as up:
        up.gate.set()  # uploads go through at once: this test is about the spooling
        h.consumer.assign(0)
        sliced = 0
        for _ in range(200):
            h.step(advance_s=0.2)
            sliced += bool(h.sidecar.submitter.spooling)
            if h.sidecar.submitter.uploads or h.sidecar.stats.jobs_created:
                break
        assert sliced >= 4  # 5,000 lines, 1,000 per pass
        wait_until(stepping(h, lambda: answered(h, ids)), timeout=60, message="delivered")
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)
    assert len(up.spools) == 1
    assert up.spools[0].closed


def test_revoked_while_its_input_is_written_the_file_is_dropped_and_the_next_owner_creates_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "SPOOL_SLICE_S", 0.0)
    n = 3_000
    h = make(batch_inline_max_bytes=1, batch_max_requests=n, batch_max_wait_s=3_600)
    ids = publish(h, "sr", n)
    with background(h) as up:
        up.gate.set()
        h.consumer.assign(0)
        wait_until(
            stepping(h, lambda: h.sidecar.submitter.spooling), timeout=30, message="spooling"
        )
        [sp] = h.sidecar.submitter.spooling.values()
        h.consumer.revoke(0)
        h.step()
        assert h.sidecar.submitter.spooling == {}
        assert sp.file.closed
        assert up.spools == []  # nothing was uploaded
        nxt = h.restart(0)
        nxt.run_until(lambda: settled(nxt, ids), max_passes=400)
    assert_answered_once(nxt, ids, ResultStatus.OK)
    assert_no_job_created_twice(nxt)
