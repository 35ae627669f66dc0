"""Every path that ends or resubmits a job respects the delivery cursor (issue 16, finding 2),
and a stalled replica's cleanup never makes the new owner pay again (finding 3).

A job of 12 requests is delivered 4 per pass; its owner dies once 8 are answered (their
cursor written), then an event hits the job, then the next owner takes over: whatever the
event, no request is answered twice, and none is resubmitted to a second job.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.core import policy
from connector.core.records import EntryState, LedgerEntry, ResultStatus
from connector.errors import ProduceFailed
from connector.testing import TestHarness
from tests.unit.loop_support import answered, emu, fast, make, publish

N, CHUNK = 12, 4
FILE_JOB = {"batch_inline_max_bytes": 1_000}
GUARANTEES = ["at_least_once", "exactly_once"]


def crashed_mid_delivery(guarantee: str) -> tuple[TestHarness, list[str], LedgerEntry]:
    """The owner answered 8 of 12 (cursor at 8) and died; returns the SUBMITTED entry."""
    h = make(
        batch_max_requests=N,
        processing_guarantee=guarantee,
        delivery_chunk_requests=CHUNK,
        **FILE_JOB,
    )
    ids = publish(h, "c", N)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 2 * CHUNK)
    assert len(h.results()) == 2 * CHUNK
    (live,) = h.ledger.live(0).values()
    assert live.delivered is not None
    assert live.delivered.scanned == 2 * CHUNK
    return h, ids, live


def twice(h: TestHarness) -> dict[str, list[str]]:
    return {
        rid: [f"{r.status.value}/{r.batch_job}" for r in rs]
        for rid, rs in h.results_by_id().items()
        if len(rs) > 1
    }


def settle(nxt: TestHarness, ids: list[str], max_passes: int = 80) -> None:
    nxt.run_until(
        lambda: (
            answered(nxt, ids)
            and all(e.state is EntryState.DONE for e in nxt.ledger.live(0).values())
        ),
        max_passes=max_passes,
        advance_s=1.0,
    )


def jobs_holding(h: TestHarness, rids: set[str]) -> dict[str, int]:
    """Per display name created, how many of `rids` it held (from the results' batch jobs)."""
    out: dict[str, int] = {}
    for rid, rs in h.results_by_id().items():
        if rid in rids:
            for r in rs:
                out[str(r.batch_job)] = out.get(str(r.batch_job), 0) + 1
    return out


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_job_cancel_after_a_crash_mid_delivery_answers_nothing_twice(guarantee: str) -> None:
    h, ids, live = crashed_mid_delivery(guarantee)
    h.cancel(job=live.job_id, reason="no longer needed")
    nxt = h.restart(0)
    settle(nxt, ids)
    assert twice(nxt) == {}, "answered OK, then 499"
    assert {r.status for r in nxt.result_events()} == {ResultStatus.OK}  # too late: answering
    assert nxt.control is not None
    assert nxt.control.pending() == {}


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_request_cancel_after_a_crash_mid_delivery_resubmits_nothing_answered(
    guarantee: str,
) -> None:
    h, ids, _ = crashed_mid_delivery(guarantee)
    h.cancel(request=ids[0], reason="answered already")
    h.cancel(request=ids[-1], reason="not answered yet")
    nxt = h.restart(0)
    settle(nxt, ids)
    assert twice(nxt) == {}, "sent to a successor job after it was answered"
    assert emu(nxt).created_by_display_name() == {n: 1 for n in emu(nxt).created_by_display_name()}
    assert len(emu(nxt).created_by_display_name()) == 1  # no successor job


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_results_file_gone_after_a_crash_mid_delivery_resubmits_only_the_rest(
    guarantee: str,
) -> None:
    h, ids, live = crashed_mid_delivery(guarantee)
    assert live.provider_job is not None
    out = h.gemini.get(live.provider_job).responses_file
    assert out is not None
    h.gemini.delete_file(out)  # the results file is gone (48 h TTL)
    nxt = h.restart(0)
    settle(nxt, ids)
    assert twice(nxt) == {}, "delivered requests resubmitted and answered again"
    created = emu(nxt).created_by_display_name()
    assert all(n == 1 for n in created.values())
    held = jobs_holding(nxt, set(ids[2 * CHUNK :]))
    assert sum(held.values()) == N - 2 * CHUNK  # only the undelivered went to successors


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_crash_before_a_chunks_cursor_then_a_results_file_gone_answers_nothing_twice(
    guarantee: str,
) -> None:
    """Sim seed 10421: the owner sends its third chunk's results and dies before the cursor
    past them is written; the results file is then gone. The next owner resubmits what the
    cursor says is unanswered. At-least-once, the chunk's results were acked before their
    cursor, so that chunk was answered by two jobs; now results and cursor commit in one
    transaction (as exactly-once does), and a reader of committed records sees each
    request answered by one job."""
    h, ids, live = crashed_mid_delivery(guarantee)
    assert h.txn is not None

    def refuse_cursor(topic: str, value: bytes | None) -> BaseException | None:
        cursor = topic == h.settings.ledger and value is not None
        if cursor and h.codec.decode_ledger(value or b"").delivered is not None:
            return ProduceFailed("scripted: the replica dies before the cursor commits")
        return None

    h.txn.fail_when = refuse_cursor
    h.producer.fail_when = refuse_cursor
    with pytest.raises(ProduceFailed):
        h.run_until(lambda: False, max_passes=10)
    assert live.provider_job is not None
    out = h.gemini.get(live.provider_job).responses_file
    assert out is not None
    h.gemini.delete_file(out)  # the results file is gone (48 h TTL)
    nxt = h.restart(0)
    settle(nxt, ids)
    assert twice(nxt) == {}, "a chunk answered by the job and again by its successor"
    assert all(n == 1 for n in emu(nxt).created_by_display_name().values())


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_404_after_a_crash_mid_delivery_resubmits_only_the_rest(guarantee: str) -> None:
    h, ids, live = crashed_mid_delivery(guarantee)
    assert live.provider_job is not None
    h.gemini.delete_job(live.provider_job)  # deleted at the provider, not ended
    nxt = h.restart(0)
    settle(nxt, ids)
    assert twice(nxt) == {}, "delivered requests resubmitted and answered again"
    assert nxt.sidecar.stats.jobs_resubmitted == 1
    assert sorted(r.attempt for r in nxt.result_events())[-1] == 1
    assert all(n == 1 for n in emu(nxt).created_by_display_name().values())


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_quarantine_after_a_crash_mid_delivery_answers_only_the_rest(guarantee: str) -> None:
    h, ids, _ = crashed_mid_delivery(guarantee)
    nxt = h.restart(0)
    gemini = nxt.sidecar.ctx.gemini
    get = gemini.get
    broken = {"on": True}

    def failing(name: str) -> Any:
        if broken["on"]:
            raise RuntimeError("scripted: an answer we cannot handle")
        return get(name)

    gemini.get = failing
    nxt.run_until(lambda: nxt.sidecar.stats.jobs_quarantined >= 1, advance_s=5.0)
    broken["on"] = False
    settle(nxt, ids)
    assert twice(nxt) == {}, "quarantine answered delivered requests again"
    errors = [r for r in nxt.result_events() if r.status is ResultStatus.ERROR]
    assert len(errors) == N - 2 * CHUNK


# -- finding 3: a stalled replica's cleanup ------------------------------------------------


def zombie_and_new_owner(guarantee: str) -> tuple[TestHarness, TestHarness, list[str]]:
    """The old owner has a SUBMITTED job; the group hands the partition to a new owner (which
    loads the job) while the old one is stalled and not told."""
    h = make(fast(processing_delay_s=30.0), batch_max_requests=4, processing_guarantee=guarantee)
    ids = publish(h, "z", 4)
    h.consumer.assign(0)
    h.run_until(lambda: any(e.state is EntryState.SUBMITTED for e in h.ledger.live(0).values()))
    nxt = h.restart(0)  # the old sidecar lives on as a zombie: its generation is stale
    nxt.step()
    return h, nxt, ids


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_zombie_that_finishes_a_job_deletes_nothing_and_no_job_is_paid_twice(
    guarantee: str,
) -> None:
    h, nxt, ids = zombie_and_new_owner(guarantee)
    h.advance(40.0)
    for _ in range(10):  # the zombie polls, delivers, ends the job, tries to clean up
        h.sidecar.step()
        h.advance(1.0)
    for _ in range(30):  # the new owner polls the job it loaded as SUBMITTED
        nxt.step(advance_s=2.0)
    assert answered(nxt, ids)
    created = emu(nxt).created_by_display_name()
    assert len(created) == 1, f"the new owner resubmitted the zombie's job: {created}"
    assert all(n == 1 for n in created.values())
    assert nxt.sidecar.stats.jobs_resubmitted == 0


@pytest.mark.parametrize("guarantee", ["at_least_once"])
def test_a_404_for_a_job_the_ledger_says_is_done_resubmits_nothing(guarantee: str) -> None:
    _, nxt, _ = zombie_and_new_owner(guarantee)
    (entry,) = nxt.ledger.live(0).values()
    assert entry.provider_job is not None
    # Another replica finished it, wrote DONE, deleted the job (before this fix's proof).
    nxt.seed_ledger(policy.done(entry, nxt.clock.wall_ms()))
    nxt.gemini.delete_job(entry.provider_job)
    nxt.advance(40.0)
    for _ in range(10):
        nxt.step(advance_s=1.0)
    assert nxt.sidecar.stats.jobs_resubmitted == 0
    assert len(emu(nxt).created_by_display_name()) == 1
