"""One job lifecycle: the phases a job passes through and every event that moves it (pure).

A job's ledger entry is its state. `transition(entry, event, ...)` is the one place that
decides what an event does to it: the entry that follows (None: it leaves this replica's
memory, or the ledger) and the actions the shell carries out, in order. Every path that
ends or resubmits a job (a poll's terminal state, a results file gone, a 404, an operator
cancel of the job or of one request, a quarantine, a refused create, a deadline) goes
through here, so the rules hold by construction rather than by convention:

- **a delivered offset is never answered or resubmitted again**: results go out in offset
  order, so the delivery cursor is a prefix of the job's offsets (`delivered`); every
  answer and every successor takes only `undelivered(entry)`;
- **no offset is in two live jobs**: successors split the undelivered offsets among
  themselves, and the parent that delivered some keeps only those (as DONE);
- **nothing is created, cancelled or deleted at the provider without a proof of
  ownership**: every such action is preceded by `Prove(partition)` (a transaction with the
  partition's committed offset that the group accepts only from the current generation);
  so is the start of a delivery (results or a give-up's errors), so a replica the group
  dropped does not answer, after the new owner cancelled a request or resubmitted the rest,
  with a job the new owner moved on from.

Phases (`phase`): INTENT (recorded, not created), SUBMITTED (created, polled), DELIVERING
(finished, answered up to the cursor), DONE (every request answered; covers its offsets
until the commit passes them). The create itself (INTENT → SUBMITTED after a claim) is
the submitter's; its proof is the claim.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from connector.core import policy
from connector.core.offsets import Offsets
from connector.core.records import EntryState, ErrorInfo, JobState, LedgerEntry

__all__ = [
    "Action",
    "Answer",
    "Cancel",
    "CancelJob",
    "CancelRequest",
    "Delete",
    "Deliver",
    "End",
    "Event",
    "Forget",
    "GiveUp",
    "Late",
    "NotFound",
    "Phase",
    "Polled",
    "Prove",
    "Quarantine",
    "ResultsGone",
    "Tombstone",
    "Transition",
    "Write",
    "delivered",
    "phase",
    "transition",
    "undelivered",
]


class Phase(StrEnum):
    INTENT = "intent"
    SUBMITTED = "submitted"
    DELIVERING = "delivering"
    DONE = "done"


def phase(entry: LedgerEntry) -> Phase:
    if entry.state is EntryState.DONE:
        return Phase.DONE
    if entry.state is EntryState.INTENT:
        return Phase.INTENT
    return Phase.DELIVERING if entry.delivered is not None else Phase.SUBMITTED


def delivered(entry: LedgerEntry) -> Offsets:
    """The job's offsets already answered and acked: the prefix its cursor records."""
    if entry.delivered is None or entry.state is EntryState.DONE:
        return entry.offsets if entry.state is EntryState.DONE else Offsets(())
    return entry.offsets[: max(0, entry.delivered.scanned)]


def undelivered(entry: LedgerEntry) -> Offsets:
    """The job's offsets no result was acked for yet: the only ones any path may answer or
    hand to a successor."""
    if entry.state is EntryState.DONE:
        return Offsets(())
    if entry.delivered is None:
        return entry.offsets
    return entry.offsets[max(0, entry.delivered.scanned) :]


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Polled:
    """The provider reports a terminal state (SUCCEEDED, FAILED, EXPIRED, CANCELLED)."""

    state: JobState


@dataclass(frozen=True, slots=True)
class ResultsGone:
    """A SUCCEEDED job's results file is gone (48 h TTL, deleted)."""


@dataclass(frozen=True, slots=True)
class NotFound:
    """The provider answers 404 for the job; `ledger` is the job's entry as the ledger holds
    it now (re-read), None if tombstoned: another replica may have ended it."""

    ledger: LedgerEntry | None


@dataclass(frozen=True, slots=True)
class CancelJob:
    """An operator cancels the job (answer `error`, 499, to what is left)."""

    error: ErrorInfo
    lookup_pending: bool = False
    """A recovered INTENT whose job may exist remotely: wait for its lookup."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """An operator cancels one request (`offset`) of the job."""

    offset: int
    error: ErrorInfo
    lookup_pending: bool = False


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Processing the job kept failing: answer what is left with `error`."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The job cannot be run (create refused for good, no request readable)."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Late:
    """The deadline of `offsets` passed before the job was created: answer them `error`."""

    offsets: Offsets
    error: ErrorInfo


Event = Polled | ResultsGone | NotFound | CancelJob | CancelRequest | Quarantine | GiveUp | Late


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prove:
    """Prove this replica still owns `partition` (a fenced transaction) before what follows."""

    partition: int


@dataclass(frozen=True, slots=True)
class Answer:
    """Error results `error` for exactly `offsets` (acked before anything after them)."""

    offsets: Offsets
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Deliver:
    """Produce the job's results (`error` None: from its output; else that error for each)
    for its undelivered offsets, a chunk per pass, each followed by its cursor."""

    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """Write `entries` to the ledger (successor INTENTs, a DONE remnant), only ids not live."""

    entries: tuple[LedgerEntry, ...]


@dataclass(frozen=True, slots=True)
class Tombstone:
    entry: LedgerEntry


@dataclass(frozen=True, slots=True)
class End:
    """The job is finished, every request answered: DONE (or its tombstone once the commit
    is past it; `keep`: DONE even then, naming a provider job still to cancel)."""

    entry: LedgerEntry
    keep: bool = False


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the provider job (after `Prove`)."""

    job: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete the provider job and its files (after `Prove`; best effort)."""

    job: str | None
    input_file: str | None


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop the job from memory, writing nothing (it ended, or moved on, elsewhere)."""


Action = Prove | Answer | Deliver | Write | Tombstone | End | Cancel | Delete | Forget


@dataclass(frozen=True, slots=True)
class Transition:
    entry: LedgerEntry | None
    """What the job's entry is after the actions (None: no longer tracked here)."""
    actions: tuple[Action, ...] = ()
    late: bool = False
    """A cancel that came too late (the job is answering already): nothing to do."""


WAIT = Transition(None, ())
"""Returned with `entry` unchanged by the caller: nothing to do yet."""


def transition(
    entry: LedgerEntry, event: Event, retry: policy.RetryPolicy, now_ms: int
) -> Transition:
    """What `event` does to the job whose entry is `entry` (see the module docstring)."""
    p = entry.key.partition
    match event:
        case Polled(state=state):
            return _ended(entry, state, retry, now_ms)
        case ResultsGone():
            return _ended(entry, JobState.EXPIRED, retry, now_ms)
        case NotFound(ledger=ledger):
            if ledger is None or ledger.state is EntryState.DONE:
                # Ended elsewhere (a replica that lost the partition, or before a restart):
                # nothing to answer or resubmit; a DONE entry goes on covering its offsets.
                return Transition(ledger, (Forget(),))
            if ledger != entry:
                return Transition(ledger, ())  # moved on elsewhere: go on from there
            return _ended(entry, JobState.FAILED, retry, now_ms)
        case CancelJob(error=error, lookup_pending=pending):
            return _cancel(entry, entry.offsets, error, pending, now_ms)
        case CancelRequest(offset=offset, error=error, lookup_pending=pending):
            if offset not in set(entry.offsets):
                return Transition(entry, (), late=True)
            return _cancel(entry, Offsets((offset,)), error, pending, now_ms)
        case Quarantine(error=error) | GiveUp(error=error):
            if entry.state is EntryState.DONE:
                return Transition(entry, ())
            return _finish(entry, undelivered(entry), error, now_ms)
        case Late(offsets=offsets, error=error):
            if entry.state is not EntryState.INTENT:
                return Transition(entry, ())  # created already: its results answer them
            gone = set(offsets)
            keep = Offsets(o for o in entry.offsets if o not in gone)
            answer = Offsets(o for o in entry.offsets if o in gone)
            if not keep:
                return _finish(entry, answer, error, now_ms)
            n = len(entry.offsets)
            rest = replace(entry, offsets=keep, est_tokens=entry.est_tokens * len(keep) // n)
            return Transition(rest, (Answer(answer, error),))
    raise AssertionError(f"unknown event {event!r} for partition {p}")  # pragma: no cover


def _finish(
    entry: LedgerEntry, answer: Offsets, error: ErrorInfo, now_ms: int, keep: bool = False
) -> Transition:
    """Answer `answer` with `error`, then End; then delete the provider job (proven)."""
    finished = policy.done(entry, now_ms)
    actions: list[Action] = []
    if answer:
        actions.append(Answer(answer, error))
    actions.append(End(entry, keep))
    if not keep and (entry.provider_job or entry.input_file):
        actions += [Prove(entry.key.partition), Delete(entry.provider_job, entry.input_file)]
    return Transition(finished, tuple(actions))


def _ended(
    entry: LedgerEntry, state: JobState, retry: policy.RetryPolicy, now_ms: int
) -> Transition:
    """The job ended at the provider in `state`: decide for its undelivered offsets only."""
    if entry.state is not EntryState.SUBMITTED:
        return Transition(entry, ())  # never polled: nothing at the provider to end
    rest = undelivered(entry)
    if not rest:  # everything answered already: only the end is missing
        return _finish(entry, rest, ErrorInfo(500, "INTERNAL", "unused"), now_ms)
    remaining = replace(entry, offsets=rest, delivered=None)
    outcome = policy.on_terminal(remaining, state, retry, now_ms)
    # Answers go out only after a proof of ownership: a replica the group dropped (not yet
    # told) must not answer requests its successor may have answered otherwise (a cancel's
    # 499, a successor job's results).
    if isinstance(outcome, policy.Deliver):
        return Transition(entry, (Prove(entry.key.partition), Deliver()))
    if isinstance(outcome, policy.GiveUp):
        return Transition(entry, (Prove(entry.key.partition), Deliver(outcome.error)))
    done_part = delivered(entry)
    # Successors too only after a proof: a replica the group dropped, resuming after the new
    # owner delivered this job and deleted it with its files, reads "results file gone" and
    # would resubmit requests already answered (sim seed 2235; a plain write at-least-once).
    actions: list[Action] = [Prove(entry.key.partition), Write(outcome.entries)]
    if done_part:
        # Its answered offsets stay covered (never batched again) until the commit passes.
        remnant = policy.done(replace(entry, offsets=done_part, delivered=None), now_ms)
        actions.append(Write((remnant,)))
    else:
        actions.append(Tombstone(entry))
    if entry.provider_job or entry.input_file:
        actions += [Prove(entry.key.partition), Delete(entry.provider_job, entry.input_file)]
    return Transition(None, tuple(actions))


def _cancel(
    entry: LedgerEntry, target: Offsets, error: ErrorInfo, pending: bool, now_ms: int
) -> Transition:
    """An operator cancel of `target` (the whole job, or one request) of `entry`."""
    ph = phase(entry)
    p = entry.key.partition
    if ph is Phase.INTENT and pending:
        return WAIT
    if ph is Phase.DELIVERING:
        return Transition(entry, (), late=True)  # finished: its results are going out
    if ph is Phase.DONE:
        # A cancel that crashed after its ledger write (or a job answered already): stop the
        # provider job, answer nothing.
        actions: tuple[Action, ...] = ()
        if entry.provider_job is not None:
            actions = (Prove(p), Cancel(entry.provider_job))
        return Transition(entry, actions)
    if len(target) == len(entry.offsets):
        t = _finish(entry, target, error, now_ms, keep=True)
        tail: tuple[Action, ...] = ()
        if entry.provider_job is not None:
            tail = (Prove(p), Cancel(entry.provider_job))
        return Transition(t.entry, t.actions + tail)
    gone = set(target)
    rest = Offsets(o for o in entry.offsets if o not in gone)
    n = len(entry.offsets)
    succ = policy.derive(
        entry, f"/c{entry.attempt + 1}", rest, entry.est_tokens * len(rest) // n, now_ms
    )
    remnant = policy.done(replace(entry, offsets=target), now_ms)
    actions = (Answer(target, error), Write((succ, remnant)))
    if entry.provider_job is not None:
        actions += (Prove(p), Cancel(entry.provider_job))
    return Transition(remnant, actions)
