"""The job lifecycle (`core.lifecycle`), exhaustively over phases by events: whatever moves a
job, a delivered offset is never answered or resubmitted again, no offset ends up in two
live jobs, nothing is lost, and every provider cancel or delete follows a proof of
ownership."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core import lifecycle as lc
from connector.core import policy
from connector.core.offsets import Offsets
from connector.core.records import (
    BatchKey,
    DeliveryCursor,
    EntryState,
    ErrorInfo,
    JobState,
    Kind,
    LedgerEntry,
)

RETRY = policy.RetryPolicy(max_failed_retries=2, max_attempts=4)
ERR = ErrorInfo(499, "CANCELLED", "cancelled")
NOW = 1_700_000_000_000


def entry(
    state: EntryState, offsets: list[int], cursor: int | None, job: bool, attempt: int = 0
) -> LedgerEntry:
    return LedgerEntry(
        job_id="p0-10-abc" + "/r1" * attempt,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=Offsets(offsets),
        attempt=attempt,
        display_name="g:p0-10-abc",
        state=state,
        use_file=False,
        est_tokens=10 * len(offsets),
        created_ms=NOW,
        updated_ms=NOW,
        provider_job="batches/x" if job else None,
        input_file="files/in" if job else None,
        delivered=None if cursor is None else DeliveryCursor(0, cursor, ""),
    )


@st.composite
def entries(draw: st.DrawFn) -> LedgerEntry:
    offsets = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=12)))
    state = draw(st.sampled_from(list(EntryState)))
    cursor = None
    if state is EntryState.SUBMITTED and draw(st.booleans()):
        cursor = draw(st.integers(0, len(offsets)))
    job = state is not EntryState.INTENT or draw(st.booleans())
    return entry(state, offsets, cursor, job, attempt=draw(st.integers(0, 3)))


@st.composite
def events(draw: st.DrawFn, e: LedgerEntry) -> lc.Event:
    pick = draw(st.integers(0, 7))
    offsets = list(e.offsets)
    if pick == 0:
        return lc.Polled(draw(st.sampled_from([s for s in JobState if s.terminal])))
    if pick == 1:
        return lc.ResultsGone()
    if pick == 2:
        ledger = draw(
            st.sampled_from(
                [None, e, lc_done(e), replace(e, delivered=DeliveryCursor(0, len(offsets), ""))]
            )
        )
        return lc.NotFound(ledger)
    if pick == 3:
        return lc.CancelJob(ERR, lookup_pending=draw(st.booleans()))
    if pick == 4:
        return lc.CancelRequest(
            draw(st.sampled_from([*offsets, 999])), ERR, lookup_pending=draw(st.booleans())
        )
    if pick == 5:
        return lc.Quarantine(ErrorInfo(500, "INTERNAL", "quarantined"))
    if pick == 6:
        return lc.GiveUp(ErrorInfo(400, "INVALID_ARGUMENT", "refused"))
    late = draw(st.sets(st.sampled_from(offsets)))
    return lc.Late(Offsets(sorted(late)), ErrorInfo(504, "DEADLINE_EXCEEDED", "late"))


def lc_done(e: LedgerEntry) -> LedgerEntry:
    return policy.done(e, NOW)


def check(e: LedgerEntry, ev: lc.Event, t: lc.Transition) -> None:
    before = set(lc.delivered(e))
    answered: list[int] = []
    successors: list[LedgerEntry] = []
    written_done: list[LedgerEntry] = []
    proven = False
    for a in t.actions:
        match a:
            case lc.Answer(offsets=offsets):
                answered.extend(offsets)
            case lc.Write(entries=es):
                successors += [x for x in es if x.state is EntryState.INTENT]
                written_done += [x for x in es if x.state is EntryState.DONE]
            case lc.Prove(partition=p):
                assert p == e.key.partition
                proven = True
            case lc.Cancel() | lc.Delete():
                assert proven, f"{a} without a proof of ownership: {t.actions}"
            case lc.Deliver():
                assert e.state is EntryState.SUBMITTED
                assert proven, f"answers of {a} without a proof of ownership: {t.actions}"
    resubmitted = [o for s in successors for o in s.offsets]
    # A delivered offset is never answered or resubmitted again.
    assert not before & set(answered), (e, ev, t)
    assert not before & set(resubmitted), (e, ev, t)
    # Answered at most once, resubmitted at most once, never both.
    assert len(answered) == len(set(answered))
    assert len(resubmitted) == len(set(resubmitted))
    assert not set(answered) & set(resubmitted)
    assert set(answered) | set(resubmitted) <= set(e.offsets)
    # No offset in two live jobs: successors, a DONE remnant and the entry tracked on.
    live = [set(s.offsets) for s in successors] + [set(d.offsets) for d in written_done]
    tracked_on = (
        t.entry is not None
        and t.entry.job_id not in {s.job_id for s in successors}
        and (not written_done or t.entry.job_id != written_done[0].job_id)
        and t.entry.state is not EntryState.DONE
        and not any(isinstance(a, lc.End) for a in t.actions)
    )
    if tracked_on and t.entry is not None:
        live.append(set(lc.undelivered(t.entry)))
    for i, a_ in enumerate(live):
        for b in live[i + 1 :]:
            assert not a_ & b, (e, ev, t)
    # Nothing lost: every offset is delivered, answered, handed on or still to be handled.
    handled = before | set(answered) | set(resubmitted)
    if any(isinstance(a, lc.Deliver) for a in t.actions) or (
        t.entry is not None and t.entry.state is not EntryState.DONE and not t.actions
    ):
        handled |= set(lc.undelivered(e))
    if t.entry is not None and t.entry.state is not EntryState.DONE:
        handled |= set(t.entry.offsets)
    if isinstance(ev, lc.NotFound) and (ev.ledger is None or ev.ledger.state is EntryState.DONE):
        handled |= set(e.offsets)  # ended elsewhere: that owner answered them
    if t.late or t is lc.WAIT or e.state is EntryState.DONE:
        handled |= set(e.offsets)
    assert set(e.offsets) <= handled, (e, ev, t)
    # A DONE job is never answered or resubmitted.
    if e.state is EntryState.DONE:
        assert not answered
        assert not successors


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_every_transition_keeps_the_invariants(data: st.DataObject) -> None:
    e = data.draw(entries())
    ev = data.draw(events(e))
    check(e, ev, lc.transition(e, ev, RETRY, NOW))


PHASES = {
    "intent": entry(EntryState.INTENT, [1, 2, 3, 4], None, False),
    "intent-created-maybe": entry(EntryState.INTENT, [1, 2, 3, 4], None, True),
    "submitted": entry(EntryState.SUBMITTED, [1, 2, 3, 4], None, True),
    "delivering-0": entry(EntryState.SUBMITTED, [1, 2, 3, 4], 0, True),
    "delivering-2": entry(EntryState.SUBMITTED, [1, 2, 3, 4], 2, True),
    "delivered-all": entry(EntryState.SUBMITTED, [1, 2, 3, 4], 4, True),
    "done": entry(EntryState.DONE, [1, 2, 3, 4], None, True),
}


def all_events(e: LedgerEntry) -> list[lc.Event]:
    out: list[lc.Event] = [lc.Polled(s) for s in JobState if s.terminal]
    out += [lc.ResultsGone(), lc.NotFound(None), lc.NotFound(e), lc.NotFound(lc_done(e))]
    out += [lc.CancelJob(ERR, b) for b in (False, True)]
    out += [lc.CancelRequest(o, ERR, b) for o in (1, 3, 9) for b in (False, True)]
    out += [lc.Quarantine(ERR), lc.GiveUp(ERR)]
    out += [lc.Late(Offsets(x), ERR) for x in ((), (2,), (1, 2, 3, 4))]
    return out


def test_every_phase_times_every_event() -> None:
    """The table, exhaustively: each named phase against each event."""
    n = 0
    for e in PHASES.values():
        for ev in all_events(e):
            check(e, ev, lc.transition(e, ev, RETRY, NOW))
            n += 1
    assert n == len(PHASES) * 21


def test_a_partly_delivered_job_whose_results_are_gone_resubmits_only_the_rest() -> None:
    e = PHASES["delivering-2"]
    t = lc.transition(e, lc.ResultsGone(), RETRY, NOW)
    writes = [a for a in t.actions if isinstance(a, lc.Write)]
    successors = [x for w in writes for x in w.entries if x.state is EntryState.INTENT]
    assert sorted(o for s in successors for o in s.offsets) == [3, 4]
    (remnant,) = [x for w in writes for x in w.entries if x.state is EntryState.DONE]
    assert list(remnant.offsets) == [1, 2]  # still covered until the commit passes them
    assert not [a for a in t.actions if isinstance(a, lc.Tombstone)]


def test_a_cancel_of_a_delivering_job_comes_too_late() -> None:
    for ev in (lc.CancelJob(ERR), lc.CancelRequest(1, ERR), lc.CancelRequest(4, ERR)):
        t = lc.transition(PHASES["delivering-0"], ev, RETRY, NOW)
        assert t.late
        assert t.actions == ()


def test_a_404_of_a_job_the_ledger_finished_elsewhere_resubmits_nothing() -> None:
    e = PHASES["submitted"]
    for ledger in (None, lc_done(e)):
        t = lc.transition(e, lc.NotFound(ledger), RETRY, NOW)
        assert t.actions == (lc.Forget(),)
    moved = replace(e, delivered=DeliveryCursor(0, 3, ""))
    assert lc.transition(e, lc.NotFound(moved), RETRY, NOW) == lc.Transition(moved, ())
    t = lc.transition(e, lc.NotFound(e), RETRY, NOW)  # deleted by someone, not ended: retried
    assert [x.job_id for a in t.actions if isinstance(a, lc.Write) for x in a.entries] == [
        "p0-10-abc/r1"
    ]


def test_a_quarantine_answers_only_what_was_not_delivered() -> None:
    t = lc.transition(PHASES["delivering-2"], lc.Quarantine(ERR), RETRY, NOW)
    (answer,) = [a for a in t.actions if isinstance(a, lc.Answer)]
    assert list(answer.offsets) == [3, 4]
