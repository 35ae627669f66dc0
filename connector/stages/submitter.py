"""The submitter: turns ledger INTENTs into Gemini jobs, each created at most once.

A recovered INTENT (or one whose create failed unclearly) is first looked up by its
display name and adopted if it exists; `create` itself runs with SDK retries off.
"""

from __future__ import annotations

import orjson
import structlog

from connector.core import policy
from connector.core.jsonl import jsonl_lines
from connector.core.partitions import Tracked
from connector.core.ports import SendHandle
from connector.core.quota import Budget, admit
from connector.core.records import EntryState, ErrorInfo, JobInput, RequestEvent
from connector.core.results import correlation_key
from connector.errors import Fenced, ProviderError, ProviderRejected, RegistryUnavailable
from connector.stages.context import Context
from connector.stages.tracker import Tracker

log = structlog.get_logger("connector")

CLAIM_FRESH_S = 1.0
"""A create starts at most this long after its claim began. The claim proves membership
when the group coordinator checked it; the group can only have handed the partition on and
the new owner looked the job up (one HTTP timeout after its assignment) well after that."""


class Submitter:
    """Creates (or adopts) the jobs of due INTENTs within this replica's quota share."""

    def __init__(self, ctx: Context, tracker: Tracker) -> None:
        self.ctx = ctx
        self.tracker = tracker

    def submit_due(self, now: float, budget: Budget, deadline: float = float("inf")) -> None:
        ctx = self.ctx
        due = ctx.owned.due(EntryState.INTENT, now)
        if not due:
            return
        due.sort(key=lambda t: (-t.entry.key.priority, t.entry.created_ms))
        due, existing = self._look_up(due, now)
        if not due:
            return
        sends: list[SendHandle] = []
        try:
            self._submit(due, existing, now, budget, deadline, sends)
        except Fenced:
            # A claim was refused. Jobs created before it, under claims that passed, are
            # recorded as SUBMITTED (at-least-once); in exactly-once mode those writes were
            # in the aborted transaction, and the new owner adopts the jobs by display name.
            if not ctx.settings.exactly_once:
                ctx.producer.flush_and_check(sends)
            raise
        ctx.commit(sends, {t.entry.key.partition for t in due})

    def _look_up(self, due: list[Tracked], now: float) -> tuple[list[Tracked], dict[str, str]]:
        """Look up the due INTENTs that may exist remotely; returns those to go on with.

        A failed lookup backs off only the INTENTs that needed it: fresh ones (`lookup`
        False) cannot exist remotely and are created as if nothing happened.
        """
        ctx = self.ctx
        lookups = {t.entry.display_name for t in due if t.lookup}
        if not lookups:
            return due, {}
        try:
            return due, ctx.gemini.find_by_display_names(lookups)
        except ProviderError as exc:
            log.warning("job lookup failed; will retry", error=str(exc), jobs=len(lookups))
            for t in due:
                if t.lookup:
                    ctx.reschedule(t, now)
            return [t for t in due if not t.lookup], {}

    def _submit(
        self,
        due: list[Tracked],
        existing: dict[str, str],
        now: float,
        budget: Budget,
        deadline: float,
        sends: list[SendHandle],
    ) -> None:
        ctx = self.ctx
        for t in due:
            found = existing.get(t.entry.display_name) if t.lookup else None
            if found is not None:
                ctx.stats.jobs_adopted += 1
                log.info("adopted existing job", job_id=t.entry.job_id, batch_job=found)
                sends.append(self._submitted(t, found, None))
                continue
            # Looked up (recovered ones only once their lookup delay passed) and not there:
            # no create of the previous owner can still land, so the answer holds for the
            # next pass too. Without this, a lookup slower than the pass budget would be
            # repeated every pass and nothing would ever be created.
            t.lookup = False
            if ctx.clock() >= deadline:
                continue  # the budget is spent: created next pass
            if not admit(t.entry, ctx.owned.live(), budget):
                t.due = now + 1.0
                continue
            sent = self._create(t, now)
            if sent is not None:
                sends.append(sent)

    def _create(self, t: Tracked, now: float) -> SendHandle | None:
        """Upload (file jobs) and create; returns the SUBMITTED ledger write on success."""
        ctx = self.ctx
        entry = t.entry
        try:
            inputs = self._inputs(t)
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            log.warning(
                "re-reading requests failed; will retry", job_id=entry.job_id, error=str(exc)
            )
            ctx.reschedule(t, now)
            return None
        if not inputs:
            error = ErrorInfo(400, "INVALID_ARGUMENT", "no request of the job could be read")
            self.tracker.give_up(entry, error, None)
            return None
        use_file = policy.uses_file(entry)
        input_file = None
        model, kind, name = entry.key.model, entry.key.kind, entry.display_name
        prio = entry.key.priority
        try:
            if use_file:
                input_file = ctx.gemini.upload_jsonl(jsonl_lines(inputs), name)
            if not self._claim(t, now):
                self.tracker.cleanup(None, input_file, None)
                return None
            if use_file:
                job = ctx.gemini.create(model, kind, name, prio, file_name=input_file)
            else:
                job = ctx.gemini.create(model, kind, name, prio, inline=inputs)
        except ProviderRejected as exc:
            log.error("job rejected by the provider", job_id=entry.job_id, error=str(exc))
            self.tracker.cleanup(None, input_file, None)
            self.tracker.give_up(entry, ErrorInfo(exc.code or 400, exc.status, str(exc)), None)
            return None
        except ProviderError as exc:
            log.warning("job create failed; backing off", job_id=entry.job_id, error=str(exc))
            self.tracker.cleanup(None, input_file, None)
            # A 5xx or timeout may hide a job that was created: look it up before trying
            # again. A 429 is a clear refusal.
            t.lookup = exc.code != 429
            ctx.reschedule(t, now)
            return None
        ctx.stats.jobs_created += 1
        log.info(
            "job created",
            job_id=entry.job_id,
            batch_job=job,
            partition=entry.key.partition,
            model=model,
            kind=kind.value,
            requests=len(entry.offsets),
            via="file" if input_file else "inline",
            attempt=entry.attempt,
        )
        return self._submitted(t, job, input_file)

    def _claim(self, t: Tracked, now: float) -> bool:
        """Prove this replica still owns the job's partition, right before its create.

        One transaction: the INTENT again (headed `claimed_by`) and the partition's committed
        offset, which the group coordinator accepts only from the current generation. A
        replica the group dropped (a pass or a freeze past max.poll.interval.ms) gets
        `Fenced`, which propagates: it drops its partitions and creates nothing. A claim that
        took longer than `CLAIM_FRESH_S` is not trusted (the group may have moved on since);
        the job is claimed again next pass.
        """
        ctx = self.ctx
        if ctx.txn is None or ctx.consumer is None:
            return True  # wired without a transactional producer (tests of other stages)
        p = t.entry.key.partition
        started = ctx.clock()
        claim = ctx.ledger.claim(t.entry, ctx.txn, ctx.txn.transactional_id)
        ctx.txn.commit_transaction([claim], ctx.fence_offsets([p]), ctx.consumer)
        if ctx.clock() - started > CLAIM_FRESH_S:
            log.warning("claim took too long; claiming again next pass", job_id=t.entry.job_id)
            t.due = now
            return False
        return True

    def _submitted(self, t: Tracked, job: str, input_file: str | None) -> SendHandle:
        ctx = self.ctx
        t.entry = policy.submitted(t.entry, job, input_file, ctx.wall_ms())
        t.payload = None
        t.polls = 0
        t.failures = 0
        t.lookup = False
        t.due = ctx.clock() + ctx.retry.poll_initial_s
        return ctx.ledger.write(t.entry)

    def _inputs(self, t: Tracked) -> list[JobInput]:
        """The job's requests with their correlation keys: from memory, or re-read by offset."""
        events: list[tuple[int, RequestEvent]] = []
        if t.payload is not None:
            events = [(r.offset, r.event) for r in t.payload]
        else:
            for o in self.ctx.originals(t.entry).values():
                if o.event is not None:  # unreadable ones get DATA_LOSS results at delivery
                    events.append((o.offset, o.event))
        out: list[JobInput] = []
        for offset, ev in events:
            key = correlation_key(offset)
            meta = {"key": key, "request_id": ev.request_id}
            out.append(JobInput(key, orjson.loads(ev.body), meta))
        return out
