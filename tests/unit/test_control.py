"""Operator cancels (`connector cancel`) on the `connector.testing` doubles.

A command is written to the control topic (`h.cancel`, as the CLI writes it); the owning
replica answers the targeted requests 499 CANCELLED, records the decision in the ledger,
then cancels at the provider and retires the command with a tombstone.
"""

from __future__ import annotations

from typing import Any

import pytest
from loop_support import (
    HOLD_S,
    assert_answered_once,
    assert_no_job_created_twice,
    create_job_in_state,
    emu,
    fast,
    make,
    publish,
    settled,
)

from connector.core import control
from connector.core.control import Command, Step, Target
from connector.core.records import EntryState, LedgerEntry, ResultStatus
from connector.testing import TestHarness

SLOW = fast(processing_delay_s=HOLD_S)
"""Jobs that stay RUNNING until a test forces them on."""


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the loop catches it)."""


def job_state(h: TestHarness, name: str | None) -> str:
    assert name is not None
    return str(emu(h).service.jobs.get(name.removeprefix("batches/")).state)


def pending(h: TestHarness) -> dict[str, bytes]:
    """The commands left in the control topic (not retired)."""
    assert h.control is not None
    return h.control.pending()


def only_entry(h: TestHarness, partition: int = 0) -> LedgerEntry:
    (entry,) = h.ledger.live(partition).values()
    return entry


def submitted(h: TestHarness, ids: list[str], partition: int = 0) -> LedgerEntry:
    """Run until the requests' job is SUBMITTED; return its entry."""
    h.run_until(
        lambda: any(e.state is EntryState.SUBMITTED for e in h.ledger.live(partition).values())
    )
    return only_entry(h, partition)


def assert_cancelled(h: TestHarness, ids: list[str], reason: str) -> None:
    by_id = h.results_by_id()
    for rid in ids:
        (r,) = by_id[rid]
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert (r.error.code, r.error.status) == (499, "CANCELLED")
        assert r.error.message.startswith("cancelled by an operator [")
        assert reason not in r.error.message, "the operator's reason is logged, not answered"


# -- pure decisions ---------------------------------------------------------------------


def test_commands_round_trip_and_bad_ones_are_refused() -> None:
    cmd = Command(Target.REQUEST, "req-7", "bad prompt", 1_700_000_000_000, "ops@host")
    assert control.decode(cmd.key.encode(), control.encode(cmd)) == cmd
    assert cmd.key == "request:req-7"
    with pytest.raises(ValueError, match="does not name"):
        control.decode(b"request:other", control.encode(cmd))
    with pytest.raises(ValueError, match="not a job id"):
        control.encode(Command(Target.JOB, "nonsense"))
    with pytest.raises(ValueError, match="unknown control action"):
        control.decode(None, b'{"action": "pause", "target": "job", "id": "p0-1-x"}')
    with pytest.raises(ValueError, match="not JSON"):
        control.decode(None, b"\xff")


def test_job_ids_name_their_partition_and_derived_jobs_are_targets_too() -> None:
    h = make()
    assert control.job_partition("p12-300-abc/a/r2") == 12
    assert control.job_partition("x12-300") is None
    j = h.entry("p0-0-abc", (0, 1))
    a = h.entry("p0-0-abc/a", (0,))
    other = h.entry("p0-0-abcd", (2,))
    assert control.job_targets("p0-0-abc", [j, a, other]) == [j, a]


def test_successor_takes_the_rest_and_remnant_covers_the_cancelled_offset() -> None:
    h = make()
    parent = h.entry("p0-0-abc", (0, 1, 2, 3), EntryState.SUBMITTED, attempt=0, provider_job="b/1")
    succ = control.successor(parent, [2], 5)
    assert succ is not None
    assert (succ.job_id, list(succ.offsets), succ.state) == ("p0-0-abc/c1", [0, 1, 3], "INTENT")
    assert succ.display_name == parent.display_name + "/c1"
    assert (succ.attempt, succ.provider_job) == (1, None)
    rem = control.remnant(parent, [2], 5)
    assert (rem.state, list(rem.offsets), rem.provider_job) == (EntryState.DONE, [2], "b/1")
    assert control.successor(h.entry("p0-0-one", (4,)), [4], 5) is None
    assert control.step_for(rem, False) is Step.FINISH
    assert control.step_for(h.entry("p0-0-i", (1,)), True) is Step.WAIT
    assert control.step_for(h.entry("p0-0-i", (1,)), False) is Step.CANCEL


# -- job cancel ---------------------------------------------------------------------------


def test_job_cancel_of_a_submitted_job_answers_499_and_cancels_it_once() -> None:
    h = make(SLOW)
    ids = publish(h, "jc", 3)
    h.consumer.assign(0)
    entry = submitted(h, ids)
    h.cancel(job=entry.job_id, reason="runaway prompt", by="ops@test")
    h.step()
    assert_cancelled(h, ids, "runaway prompt")
    assert all("ops@test" not in e.error.message for e in h.result_events() if e.error)
    assert job_state(h, entry.provider_job) == "CANCELLED"
    assert h.ledger.live(0) == {}  # the commit is past the job: DONE, then tombstoned
    assert pending(h) == {}
    assert h.sidecar.stats.commands_applied == 1
    h.step(5, advance_s=10.0)
    assert_cancelled(h, ids, "runaway prompt")  # nothing more: no resubmit, no OK
    assert emu(h).calls().get("batches.cancel") == 1
    assert_no_job_created_twice(h)


def test_job_cancel_of_an_intent_gives_it_up_never_created() -> None:
    h = make(SLOW, max_jobs=1)
    first = publish(h, "busy", 2)
    h.consumer.assign(0)
    busy = submitted(h, first)
    waiting = publish(h, "wait", 2, model="gemini-2.5-pro")
    h.step(3, advance_s=1.0)  # sealed: an INTENT waiting for the one job slot
    intent = next(e for e in h.ledger.live(0).values() if e.job_id != busy.job_id)
    assert intent.state is EntryState.INTENT
    h.cancel(job=intent.job_id, reason="not needed")
    h.step()
    assert_cancelled(h, waiting, "not needed")
    assert list(h.ledger.live(0)) == [busy.job_id]
    assert intent.display_name not in emu(h).created_by_display_name()
    assert emu(h).calls().get("batches.cancel", 0) == 0
    assert job_state(h, busy.provider_job) == "RUNNING"


# -- request cancel -----------------------------------------------------------------------


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_request_cancel_answers_it_499_once_and_resubmits_the_rest(guarantee: str) -> None:
    h = make(SLOW, processing_guarantee=guarantee)
    ids = publish(h, "rc", 4)
    h.consumer.assign(0)
    parent = submitted(h, ids)
    h.cancel(request="rc-2", reason="user withdrew it")
    h.step()
    assert_cancelled(h, ["rc-2"], "user withdrew it")
    assert job_state(h, parent.provider_job) == "CANCELLED"
    live = h.ledger.live(0)
    succ = live[parent.job_id + "/c1"]
    assert list(succ.offsets) == [0, 1, 3]
    # The rest finishes OK.
    h.run_until(lambda: h.ledger.live(0)[succ.job_id].state is EntryState.SUBMITTED)
    emu(h).force_state(str(h.ledger.live(0)[succ.job_id].provider_job), "SUCCEEDED")
    h.run_until(lambda: settled(h, ids), advance_s=2.0)
    assert_answered_once(h, ["rc-0", "rc-1", "rc-3"], ResultStatus.OK)
    assert_cancelled(h, ["rc-2"], "user withdrew it")
    assert emu(h).created_by_display_name() == {
        parent.display_name: 1,
        succ.display_name: 1,
    }
    assert h.sidecar.stats.requests_cancelled == 1
    assert pending(h) == {}


def test_request_cancel_keeps_the_cancelled_offset_covered_until_the_commit_passes() -> None:
    """An open batch below holds the commit: the cancelled request must not be re-batched
    after a rewind, so the parent stays DONE covering it."""
    h = make(SLOW, batch_max_wait_s=1000.0, batch_max_requests=3)
    h.publish("open-0", model="gemini-2.5-pro")  # offset 0: its batch stays open
    ids = publish(h, "cov", 3)  # offsets 1..3: sealed by count
    h.consumer.assign(0)
    parent = submitted(h, ids)
    assert h.committed(0) == 0
    h.cancel(request="cov-1", reason="not wanted")
    h.step()
    rem = h.ledger.live(0)[parent.job_id]
    assert (rem.state, list(rem.offsets)) == (EntryState.DONE, [2])
    nxt = h.restart(0)  # a rewind to offset 0: every record comes again
    nxt.step(3, advance_s=1.0)
    assert nxt.sidecar.status()["open_requests"] == 1  # only open-0: the rest is covered
    assert_cancelled(nxt, ["cov-1"], "not wanted")


def test_unknown_request_stays_pending() -> None:
    h = make(SLOW)
    ids = publish(h, "u", 2)
    h.consumer.assign(0)
    submitted(h, ids)
    h.cancel(request="nobody", reason="not wanted")
    h.step(3, advance_s=1.0)
    assert list(pending(h)) == ["request:nobody"]
    assert h.sidecar.control is not None
    assert "request:nobody" in h.sidecar.control.pending


# -- ownership ----------------------------------------------------------------------------


def test_a_command_for_a_partition_not_owned_waits_for_its_owner() -> None:
    h = make(SLOW, partitions=2)
    ids = publish(h, "p1", 2, partition=1)
    entry = h.entry("p1-0-dead", (0, 1), partition=1)
    job = create_job_in_state(h, entry, None)
    h.seed_ledger(h.entry("p1-0-dead", (0, 1), EntryState.SUBMITTED, partition=1, provider_job=job))
    h.seed_committed(2, partition=1)
    h.consumer.assign(0)
    h.cancel(job="p1-0-dead", reason="later")
    h.step(3, advance_s=1.0)
    assert list(pending(h)) == ["job:p1-0-dead"]
    assert job_state(h, job) == "RUNNING"
    assert h.results_by_id() == {}

    h.consumer.assign(1)  # the partition comes to this replica
    h.step()
    assert_cancelled(h, ids, "later")
    assert job_state(h, job) == "CANCELLED"
    assert pending(h) == {}
    assert h.ledger.live(1) == {}


def test_a_recovered_intent_is_cancelled_after_its_lookup() -> None:
    """The dead owner may have created it: the cancel waits for the lookup, which adopts it,
    then cancels the job it found."""
    h = make(SLOW)
    ids = publish(h, "rec", 2)
    intent = h.entry("p0-0-dead", (0, 1))
    h.seed_ledger(intent)
    h.seed_committed(2)
    job = create_job_in_state(h, intent, None)
    nxt = h.restart(0)
    nxt.cancel(job=intent.job_id, reason="stop")
    nxt.step()
    assert nxt.results_by_id() == {}  # waiting for the lookup
    nxt.run_until(nxt.results_by_id, advance_s=1.0)
    assert_cancelled(nxt, ids, "stop")
    assert job_state(nxt, job) == "CANCELLED"
    assert_no_job_created_twice(nxt)


# -- crashes ------------------------------------------------------------------------------


def _crash_on_cancel(h: TestHarness) -> None:
    def cancel(name: str) -> None:
        raise Crash(name)

    h.sidecar.ctx.gemini.cancel = cancel


@pytest.mark.parametrize("target", ["job", "request"])
def test_crash_between_the_ledger_write_and_the_provider_cancel(target: str) -> None:
    """The decision is in the ledger (DONE, kept) when the owner dies: the next owner only
    cancels at the provider and retires the command; nothing is answered twice, nothing is
    resubmitted, even past the maximum job age (CANCELLED would read as EXPIRED)."""
    h = make(SLOW, max_job_age_h=1.0)
    ids = publish(h, "cr", 3)
    h.consumer.assign(0)
    parent = submitted(h, ids)
    if target == "job":
        h.cancel(job=parent.job_id, reason="crash test")
        cancelled = ids
    else:
        h.cancel(request="cr-1", reason="crash test")
        cancelled = ["cr-1"]
    _crash_on_cancel(h)
    with pytest.raises(Crash):
        h.step()
    done = h.ledger.live(0)[parent.job_id]
    assert (done.state, done.provider_job) == (EntryState.DONE, parent.provider_job)
    assert job_state(h, parent.provider_job) == "RUNNING"
    assert len(pending(h)) == 1
    h.advance(2 * 3600.0)  # past max_job_age_h

    nxt = h.restart(0)
    nxt.step()
    assert job_state(nxt, parent.provider_job) == "CANCELLED"
    assert pending(nxt) == {}
    assert parent.job_id not in nxt.ledger.live(0)
    emu(nxt).update_config(processing_delay_s=0)
    nxt.run_until(lambda: settled(nxt, ids), advance_s=2.0)
    assert_cancelled(nxt, cancelled, "crash test")
    rest = [i for i in ids if i not in cancelled]
    assert_answered_once(nxt, rest, ResultStatus.OK)
    assert emu(nxt).calls().get("batches.cancel") == 1
    assert_no_job_created_twice(nxt)
    assert nxt.sidecar.stats.jobs_resubmitted == 0


def test_crash_after_the_results_before_the_ledger_answers_again_duplicate_window_1() -> None:
    """The 499s are acked, the DONE is not: the next owner acts again (same answers)."""
    h = make(SLOW)
    ids = publish(h, "dw", 2)
    h.consumer.assign(0)
    parent = submitted(h, ids)
    h.cancel(job=parent.job_id, reason="again")

    def refuse_done(topic: str, value: bytes | None) -> BaseException | None:
        if topic == h.settings.ledger:
            raise Crash("dies before the DONE is acked")
        return None

    h.producer.fail_when = refuse_done
    with pytest.raises(Crash):
        h.step()
    assert h.ledger.live(0)[parent.job_id].state is EntryState.SUBMITTED
    nxt = h.restart(0)
    nxt.step()
    by_id = nxt.results_by_id()
    for rid in ids:
        assert [r.error.code for r in by_id[rid] if r.error] == [499, 499]
    assert job_state(nxt, parent.provider_job) == "CANCELLED"
    assert nxt.ledger.live(0) == {}
    assert pending(nxt) == {}


def test_a_zombie_frozen_in_its_request_cancel_never_writes_back_the_successor() -> None:
    """At-least-once (simulator seed 66787): a replica proves it owns the partition, answers
    a request cancel 499 and freezes before that answer is acked, past the session timeout.
    The new owner carries out the same cancel: it creates the successor `j/c1`, delivers it,
    tombstones and deletes it. The zombie resumes and writes its own `j/c1` INTENT and the
    parent's DONE remnant: plain writes, they landed after the tombstone and whoever next
    loaded the ledger created `j/c1` a second time (its lookup finds the deleted job gone).
    Fenced like a resubmission's writes, they are refused."""
    h = make(SLOW)
    ids = publish(h, "zc", 3)
    h.consumer.assign(0)
    parent = submitted(h, ids)
    h.cancel(request="zc-0", reason="zombie test")
    flush = h.producer.flush_and_check
    owners: list[TestHarness] = []

    def frozen_before_the_answer(sent: Any, timeout_s: float = 60.0) -> None:
        answering = any(s.topic == h.settings.result_topic for s in h.producer.pending)
        if not owners and answering:
            held = list(h.producer.pending)
            new = h.restart(0)  # the group moved on: a new owner, a new generation
            h.producer.pending = held  # a frozen process's producer still holds them
            owners.append(new)
            succ_id = parent.job_id + "/c1"

            def succ_submitted() -> bool:
                e = new.ledger.live(0).get(succ_id)
                return e is not None and e.state is EntryState.SUBMITTED

            new.run_until(succ_submitted)
            emu(new).force_state(str(new.ledger.live(0)[succ_id].provider_job), "SUCCEEDED")
            new.run_until(lambda: succ_id not in new.ledger.live(0), advance_s=2.0)
        flush(sent, timeout_s)

    h.producer.flush_and_check = frozen_before_the_answer  # type: ignore[method-assign]
    h.step()  # the zombie's cancel: its answer lands, its ledger writes are refused
    assert owners, "the zombie never answered the cancel"
    assert h.sidecar.stats.fenced == 1
    live = h.ledger.live(0)
    assert parent.job_id + "/c1" not in live, "the zombie wrote the finished successor back"
    [new] = owners
    new.consumer.revoke(0)  # a later rebalance: the owner reloads the ledger
    new.consumer.assign(0)
    new.step(10, advance_s=1.0)
    assert_no_job_created_twice(new)
    created = emu(new).created_by_display_name()
    assert sorted(created.values()) == [1, 1], created  # the job and its `/c1`, once each
    assert_answered_once(new, ["zc-1", "zc-2"], ResultStatus.OK)
