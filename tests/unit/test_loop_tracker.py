"""The tracker in the loop: polls, and what each ending of a job turns into.

Jobs are held RUNNING at the emulator (a long processing time) and forced into the ending
under test, so every path is taken on purpose, not by chance.
"""

from __future__ import annotations

from loop_support import (
    HOLD_S,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    fast,
    latest,
    make,
    publish,
    settled,
)

from connector.core.records import EntryState, Kind, LedgerEntry, ResultStatus
from connector.testing import TestHarness


def held(**settings: object) -> TestHarness:
    return make(emulator=fast(processing_delay_s=HOLD_S), **settings)


def running(h: TestHarness, ids_n: int, prefix: str) -> tuple[list[str], LedgerEntry]:
    """Publish `ids_n` requests and run until their job is SUBMITTED; jobs created later
    finish as soon as they are polled."""
    ids = publish(h, prefix, ids_n)
    h.consumer.assign(0)
    h.run_until(lambda: any(e.state is EntryState.SUBMITTED for e in h.ledger.live(0).values()))
    (entry,) = h.ledger.live(0).values()
    emu(h).stats()  # the emulator starts due jobs on any read: this one is held RUNNING
    emu(h).update_config(processing_delay_s=0)
    return ids, entry


def test_failed_job_is_retried_whole() -> None:
    h = held()
    ids, entry = running(h, 3, "f")
    emu(h).force_state(entry.provider_job or "", "FAILED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert {r.attempt for r in latest(h).values()} == {1}
    name = entry.display_name
    assert emu(h).created_by_display_name() == {name: 1, f"{name}/r1": 1}
    assert h.sidecar.stats.jobs_resubmitted == 1
    assert_no_job_created_twice(h)


def test_failed_jobs_give_up_after_the_retry_budget_with_500_errors() -> None:
    """Every attempt fails (the trigger is in the group id, so in every display name)."""
    h = make(group_id="g-emulator-fail-job", max_failed_retries=2)
    ids = publish(h, "ff", 2)
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    for r in latest(h).values():
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert (r.error.code, r.error.status) == (500, "INTERNAL")
        assert r.attempt == 2
    created = emu(h).created_by_display_name()
    first = min(created, key=len)
    # Attempt 1 and two whole retries: the retry budget, no more.
    assert created == {first: 1, f"{first}/r1": 1, f"{first}/r1/r2": 1}
    assert_answered_once(h, ids, ResultStatus.ERROR)
    assert_no_job_created_twice(h)


def test_expired_job_is_split_in_halves() -> None:
    h = held()
    ids, entry = running(h, 5, "e")
    emu(h).force_state(entry.provider_job or "", "EXPIRED")
    h.run_until(lambda: entry.job_id not in h.ledger.live(0))
    halves = sorted(h.ledger.live(0).values(), key=lambda e: e.job_id)
    assert [(e.job_id, e.offsets, e.attempt) for e in halves] == [
        (f"{entry.job_id}/a", (0, 1, 2), 1),
        (f"{entry.job_id}/b", (3, 4), 1),
    ]
    assert sum(e.est_tokens for e in halves) == entry.est_tokens
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert {r.attempt for r in latest(h).values()} == {1}
    name = entry.display_name
    assert emu(h).created_by_display_name() == {name: 1, f"{name}/a": 1, f"{name}/b": 1}


def test_expired_single_request_job_is_retried_whole() -> None:
    h = held()
    ids, entry = running(h, 1, "e1")
    emu(h).force_state(entry.provider_job or "", "EXPIRED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    name = entry.display_name
    assert emu(h).created_by_display_name() == {name: 1, f"{name}/r1": 1}


def test_expired_past_max_attempts_gives_504_errors() -> None:
    h = held(max_attempts=1)
    ids, entry = running(h, 2, "ex")
    emu(h).force_state(entry.provider_job or "", "EXPIRED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.ERROR)
    for r in latest(h).values():
        assert r.error is not None
        assert (r.error.code, r.error.status) == (504, "DEADLINE_EXCEEDED")
        assert r.batch_job == entry.provider_job
    assert emu(h).created_by_display_name() == {entry.display_name: 1}


def test_cancelled_job_gives_499_errors_and_no_retry() -> None:
    h = held()
    ids, entry = running(h, 3, "cx")
    emu(h).force_state(entry.provider_job or "", "CANCELLED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.ERROR)
    for r in latest(h).values():
        assert r.error is not None
        assert (r.error.code, r.error.status) == (499, "CANCELLED")
    assert emu(h).created_by_display_name() == {entry.display_name: 1}
    assert h.sidecar.stats.jobs_resubmitted == 0


def test_job_gone_at_the_provider_404_is_treated_as_failed_and_retried() -> None:
    h = held()
    ids, entry = running(h, 2, "gone")
    job_id = (entry.provider_job or "").removeprefix("batches/")
    emu(h).service.jobs.delete(job_id)  # someone deleted it (or it aged out)
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert {r.attempt for r in latest(h).values()} == {1}
    name = entry.display_name
    assert emu(h).created_by_display_name() == {name: 1, f"{name}/r1": 1}


def test_per_request_errors_fail_only_those_requests() -> None:
    h = make()
    h.publish("pr-0", "fine")
    h.publish("pr-1", "please EMULATOR_FAIL this one")
    h.publish("pr-2", "and EMULATOR_FAIL_503 this one")
    h.publish("pr-3", "fine too")
    ids = ["pr-0", "pr-1", "pr-2", "pr-3"]
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    got = latest(h)
    assert got["pr-0"].status is got["pr-3"].status is ResultStatus.OK
    assert got["pr-1"].error is not None
    assert (got["pr-1"].error.code, got["pr-1"].error.status) == (400, "INVALID_ARGUMENT")
    assert got["pr-2"].error is not None
    assert got["pr-2"].error.code == 503
    assert {r.batch_job for r in got.values()} == {got["pr-0"].batch_job}  # one job
    assert emu(h).calls()["batches.create"] == 1


def test_transient_poll_errors_back_off_and_never_duplicate() -> None:
    h = held()
    ids, entry = running(h, 3, "tp")
    emu(h).update_config(transient_error_rate=1.0)
    polls_before = emu(h).calls().get("batches.get", 0)
    h.step(5, advance_s=30.0)
    assert emu(h).calls().get("batches.get", 0) == polls_before  # every poll refused
    assert emu(h).calls()["faults.transient"] >= 2
    emu(h).update_config(transient_error_rate=0.0)
    emu(h).force_state(entry.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_job_older_than_max_age_is_cancelled_and_split() -> None:
    h = held(max_job_age_h=1.0)
    ids, entry = running(h, 4, "old")
    h.step(advance_s=3601.0)
    live = h.ledger.live(0)
    assert sorted(live) == [f"{entry.job_id}/a", f"{entry.job_id}/b"]
    assert emu(h).calls().get("batches.cancel") == 1
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_requests_no_longer_retained_get_data_loss_results() -> None:
    """A recovered INTENT whose first requests fell out of retention: DATA_LOSS for those."""
    h = make()
    ids = publish(h, "dl", 4)
    intent = h.entry("p0-0-dead", (0, 1, 2, 3))
    h.seed_ledger(intent)
    h.seed_committed(4)
    nxt = h.restart(0)
    nxt.reader.deleted_below[0] = 2  # retention removed offsets 0 and 1
    nxt.run_until(lambda: not nxt.ledger.live(0))
    by_offset = {r.source_offset: r for r in nxt.result_events()}
    assert sorted(by_offset) == [0, 1, 2, 3]
    for o in (0, 1):
        err = by_offset[o].error
        assert err is not None
        assert err.status == "DATA_LOSS"
    assert {by_offset[2].request_id, by_offset[3].request_id} == set(ids[2:])
    assert by_offset[2].status is by_offset[3].status is ResultStatus.OK
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}


def test_succeeded_job_whose_results_file_is_gone_still_answers_every_request() -> None:
    h = held()
    ids = publish(h, "gf", 3, kind=Kind.EMBED, body={"content": {"parts": [{"text": "x"}]}})
    h.consumer.assign(0)
    h.run_until(lambda: any(e.state is EntryState.SUBMITTED for e in h.ledger.live(0).values()))
    (entry,) = h.ledger.live(0).values()
    emu(h).stats()  # started, held RUNNING
    emu(h).force_state(entry.provider_job or "", "SUCCEEDED")
    # The partition sat unowned for two days: the job's results file expired meanwhile.
    h.advance(49 * 3600.0)
    emu(h).update_config(processing_delay_s=0)  # the resubmitted halves finish at once
    h.run_until(lambda: settled(h, ids), max_passes=60, advance_s=60.0)
