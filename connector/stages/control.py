"""The controller: acts on operator commands (`connector cancel`) for the jobs this replica owns.

Every pass it reads what is new on the control topic (`ControlPort.poll`, non-blocking; the
first poll reads the topic from its beginning, before any partition is recovered) and keeps
the pending commands. It acts on a command only where it owns the target: a job id names its
partition (`p{n}-...`); a request id is looked for among the live jobs' requests (in memory,
else re-read by offset, `SEARCH_BUDGET` offsets per pass). A command nobody owns stays
pending (the topic is compacted) until an owner sees it. Acting runs before the submitter
and the tracker in the pass, so a targeted job is neither created nor polled first.

Order of one cancel (decisions in `core.control`), each step acked before the next:

1. 499 CANCELLED results: every request of the job (job cancel), or the one request
   (request cancel);
2. the ledger: the job's entry as DONE, kept even if prunable (job cancel; with the results
   in one transaction in exactly-once mode), or, for a request cancel, the successor INTENT
   `j/c{n}` for the other requests and the parent as DONE covering only the cancelled offset,
   sent together (one record batch of the ledger partition; exactly-once: one transaction
   with the result; at-least-once: a transaction fenced by the partition's committed offset,
   after the acked result, like a resubmission's writes);
3. the provider's cancel of the job (refused when it already ended: nothing to do);
4. the DONE entry's tombstone if the commit is past it, and the command's tombstone.

The ledger holds the decision before the provider hears of it, so the provider's CANCELLED
state is never seen by the tracker (a DONE entry is never polled or decided again) and can
never turn into a resubmit (`max_job_age_h`) or a second job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from connector.core import control, lifecycle, policy
from connector.core.control import Command, Step, Target
from connector.core.partitions import PartitionState, Tracked
from connector.core.ports import ControlPort, SendHandle
from connector.core.records import EntryState
from connector.core.results import Original, error_results
from connector.core.spans import CHUNK_REQUESTS
from connector.errors import KafkaError, ProviderError, ProviderRejected
from connector.stages.context import Context
from connector.stages.tracker import Tracker

log = structlog.get_logger("connector")

SEARCH_BUDGET = CHUNK_REQUESTS
"""Request offsets re-read per pass while looking for the jobs of request cancels."""


@dataclass(slots=True)
class _Search:
    """How far the search for one request id went: job ids read through, and where."""

    done: set[str] = field(default_factory=set)
    pos: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Found:
    st: PartitionState
    t: Tracked
    original: Original


class Controller:
    """Keeps the pending operator commands and carries out those this replica owns."""

    def __init__(self, ctx: Context, tracker: Tracker, port: ControlPort) -> None:
        self.ctx = ctx
        self.tracker = tracker
        self.port = port
        self.pending: dict[str, Command] = {}
        """Commands by key (`job:<id>`, `request:<id>`), in the order they arrived."""
        self.search_budget = SEARCH_BUDGET
        self._searches: dict[str, _Search] = {}
        self._budget = 0
        self._failures: dict[str, int] = {}

    def poll(self) -> None:
        """Take what is new on the control topic: commands, and tombstones retiring them."""
        for rec in self.port.poll():
            if rec.key is None:
                continue
            key = rec.key.decode(errors="replace")
            if rec.value is None:
                self._forget(key)
                continue
            try:
                cmd = control.decode(rec.key, rec.value)
            except ValueError as exc:
                # Maybe a newer release's command (a rolling upgrade): left for it, not retired.
                log.warning("control record not understood; ignored", key=key, error=str(exc))
                continue
            self.pending.pop(key, None)  # a repeated command goes to the back
            self.pending[key] = cmd
            self._searches.pop(key, None)
            log.info("operator command received", key=key, reason=cmd.reason, by=cmd.by)

    def act(self, deadline: float = float("inf")) -> None:
        """Carry out the pending commands this replica owns (none after `deadline`)."""
        ctx = self.ctx
        self._budget = self.search_budget
        for key, cmd in list(self.pending.items()):
            if ctx.clock() >= deadline:
                return
            try:
                with ctx.unit():  # a failure aborts what the command sent (exactly-once)
                    done = self._act(cmd)
            except KafkaError:
                raise
            except Exception as exc:  # one command's trouble must not stop the loop
                n = self._failures[key] = self._failures.get(key, 0) + 1
                log.error(
                    "operator command failed; will retry",
                    key=key,
                    attempts=n,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                )
                continue
            if done is not None:
                ctx.commit([*done[0], self.port.retire(key)], done[1])
                self._forget(key)
                ctx.stats.commands_applied += 1

    def _forget(self, key: str) -> None:
        self.pending.pop(key, None)
        self._searches.pop(key, None)
        self._failures.pop(key, None)

    # -- one command ---------------------------------------------------------------------

    def _act(self, cmd: Command) -> tuple[list[SendHandle], list[int]] | None:
        """Sends to commit with the command's tombstone (and their partitions) once it is
        carried out; None while it waits (not ours, not found yet, or a step to retry)."""
        if control.expired(cmd, self.ctx.wall_ms()):
            log.warning("operator command expired unapplied; retired", key=cmd.key)
            return [], []
        if cmd.target is Target.JOB:
            return self._cancel_job(cmd)
        found = self._find(cmd)
        if found is None:
            return None
        st, t = found.st, found.t
        step = self._step(t)
        if step is Step.WAIT:
            return None
        if step is Step.CANCEL:
            self._prove(t.entry.key.partition)
            if len(t.entry.offsets) > 1:
                self._cancel_request(st, t, found.original, cmd)
            else:
                self._cancel_whole(t, cmd)
            t = st.jobs[t.entry.job_id]
        return self._finish(st, t, cmd)

    def _step(self, t: Tracked) -> Step:
        if self._too_late(t):
            return Step.FINISH  # finished and being answered: too late to cancel
        return control.step_for(t.entry, t.lookup)

    def _too_late(self, t: Tracked) -> bool:
        """The job finished and its results (or error results) are going out: answered up
        to its cursor, maybe by a previous owner. Nothing of it is answered again
        (`core.lifecycle`: a cancel of a DELIVERING job comes too late)."""
        return (
            t.entry.job_id in self.tracker.deliveries
            or lifecycle.phase(t.entry) is lifecycle.Phase.DELIVERING
        )

    def _cancel_job(self, cmd: Command) -> tuple[list[SendHandle], list[int]] | None:
        p = control.job_partition(cmd.id)
        st = self.ctx.owned.get(p) if p is not None else None
        if st is None:
            return None  # another replica's partition (or nobody's yet): stays pending
        targets = control.job_targets(cmd.id, [t.entry for t in st.jobs.values()])
        if not targets:
            log.warning("cancel: no live job of that id (finished or unknown)", key=cmd.key)
            return [], []
        steps = {e.job_id: self._step(st.jobs[e.job_id]) for e in targets}
        if Step.WAIT in steps.values():
            return None  # a recovered INTENT whose job may exist: after its lookup
        if Step.CANCEL in steps.values() and p is not None:
            self._prove(p)
        sends: list[SendHandle] = []
        for e in targets:
            if steps[e.job_id] is Step.CANCEL:
                self._cancel_whole(st.jobs[e.job_id], cmd)
            finished = self._finish(st, st.jobs[e.job_id], cmd)
            if finished is None:  # the DONE entries are finished next pass
                self.ctx.commit(sends, [p] if p is not None else [])
                return None
            sends.extend(finished[0])
        return sends, [p] if p is not None else []

    def _prove(self, p: int) -> None:
        """Before a cancel's first answer (at-least-once; exactly-once answers go in a fenced
        transaction): a replica the group dropped, not yet told, must not answer 499 for
        requests the new owner answers otherwise (its own jobs' results)."""
        ctx = self.ctx
        if not ctx.settings.exactly_once and ctx.txn is not None and ctx.consumer is not None:
            ctx.prove_ownership([p])

    def _cancel_whole(self, t: Tracked, cmd: Command) -> None:
        """499 for every request of the job, then its DONE entry (kept: names the job)."""
        entry = t.entry
        log.warning(
            "operator cancel: answering the job's requests 499 CANCELLED",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            state=entry.state.value,
            requests=len(entry.offsets),
            reason=cmd.reason,
        )
        self.ctx.stats.requests_cancelled += len(entry.offsets)
        self.tracker.apply(entry, lifecycle.CancelJob(control.cancel_error(cmd)))

    def _cancel_request(
        self, st: PartitionState, t: Tracked, original: Original, cmd: Command
    ) -> None:
        """499 for one request; the rest of its job goes on as the derived INTENT `j/c{n}`."""
        ctx = self.ctx
        entry = t.entry
        p, o = entry.key.partition, original.offset
        now_ms = ctx.wall_ms()
        outgoing = error_results(
            entry, {o: original}, control.cancel_error(cmd), entry.provider_job, now_ms, [o]
        )
        sent = self.tracker.send(entry, outgoing)
        if not ctx.settings.exactly_once:
            ctx.commit(sent, [p])  # the answer first: the request is never left without one
            sent = []
        tr = lifecycle.transition(
            entry, lifecycle.CancelRequest(o, control.cancel_error(cmd)), ctx.retry, now_ms
        )
        # More than one request, not delivering (`_step`): the successor `j/c{n}` for the
        # rest, and the parent DONE over the cancelled one.
        (succ, rem) = next(a for a in tr.actions if isinstance(a, lifecycle.Write)).entries
        # Successor and remnant together (one record batch of the ledger partition; one
        # transaction with the answer in exactly-once mode), before the provider's cancel.
        # At-least-once they are fenced like a resubmission's (`Tracker.apply`): a replica
        # the group dropped after its proof above, resuming after the new owner cancelled,
        # created, delivered and tombstoned `j/c1`, would write it back to be created
        # again (sim seed 66787: `j/c1` created twice).
        if not ctx.settings.exactly_once and ctx.txn is not None and ctx.consumer is not None:
            writes = [] if succ.job_id in st.jobs else [ctx.ledger.write(succ, ctx.txn)]
            ctx.prove_ownership([p], [*writes, ctx.ledger.write(rem, ctx.txn)])
        else:
            writes = [] if succ.job_id in st.jobs else [ctx.ledger.write(succ)]
            ctx.commit([*sent, *writes, ctx.ledger.write(rem)], [p])
        payload = t.payload
        st.remove(entry.job_id)
        st.add(Tracked(rem, due=float("inf"), lookup=False))
        if succ.job_id not in st.jobs:
            rest = tuple(r for r in payload if r.offset != o) if payload is not None else None
            st.add(Tracked(succ, due=ctx.clock(), lookup=False, payload=rest or None))
        ctx.stats.requests_cancelled += 1
        log.warning(
            "operator cancel: request answered 499 CANCELLED; the rest of its job resubmitted",
            request_id=cmd.id,
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            successor=succ.job_id,
            requests=len(succ.offsets),
            reason=cmd.reason,
        )

    def _finish(
        self, st: PartitionState, t: Tracked, cmd: Command
    ) -> tuple[list[SendHandle], list[int]] | None:
        """A DONE entry: cancel its provider job, then its tombstone if the commit is past.
        None when the provider cancel must be tried again (next pass)."""
        ctx = self.ctx
        entry = t.entry
        p = entry.key.partition
        if self._too_late(t):
            log.warning("cancel came too late: the job is answering", job_id=entry.job_id)
            return [], []
        name = entry.provider_job
        if name is not None:
            if ctx.txn is not None and ctx.consumer is not None:
                ctx.prove_ownership([p])  # a cancel at the provider, like a create or delete
            try:
                ctx.gemini.cancel(name)
                log.info("provider job cancelled", job_id=entry.job_id, batch_job=name)
            except ProviderRejected as exc:  # already ended (or gone): nothing left to stop
                log.info("provider cancel refused", batch_job=name, error=str(exc))
            except ProviderError as exc:
                ctx.provider_answered(exc)
                log.warning("provider cancel failed; will retry", batch_job=name, error=str(exc))
                return None
        self.tracker.cleanup(None, entry.input_file, None, partition=p)
        sends: list[SendHandle] = []
        if policy.prunable(entry, st.committed):
            sends.append(ctx.ledger.tombstone(entry))
            st.remove(entry.job_id)
        log.info("operator command applied", key=cmd.key, job_id=entry.job_id)
        return sends, [p]

    # -- finding a request ---------------------------------------------------------------

    def _find(self, cmd: Command) -> _Found | None:
        """The live job holding request `cmd.id`, searched within this pass's budget.

        In-memory payloads first, then DONE entries (a cancel that crashed after its ledger
        write left one), then the others, by offset; a job read through is not read again.
        """
        owned = self.ctx.owned
        s = self._searches.setdefault(cmd.key, _Search())
        live = {(p, j) for p, st in owned.items() for j in st.jobs}
        s.done &= {j for _, j in live}
        for st in owned.values():
            for t in st.jobs.values():
                for r in t.payload or ():
                    if r.event.request_id == cmd.id:
                        orig = Original(r.partition, r.offset, r.kafka_key, r.event)
                        return _Found(st, t, orig)
        order = sorted(
            ((p, st, t) for p, st in owned.items() for t in st.jobs.values()),
            key=lambda x: (x[2].entry.state is not EntryState.DONE, x[2].entry.created_ms),
        )
        for p, st, t in order:
            job_id = t.entry.job_id
            if job_id in s.done:
                continue
            offsets = t.entry.offsets
            pos = s.pos.get(job_id, 0)
            while pos < len(offsets):
                if self._budget <= 0:
                    s.pos[job_id] = pos
                    return None
                take = min(self._budget, len(offsets) - pos)
                chunk = list(offsets[pos : pos + take])
                self._budget -= take
                pos += take
                for orig in self.ctx.reader.read(p, chunk).values():
                    if orig.event is not None and orig.event.request_id == cmd.id:
                        return _Found(st, t, orig)
            s.done.add(job_id)
            s.pos.pop(job_id, None)
        return None
