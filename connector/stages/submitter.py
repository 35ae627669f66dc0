"""The submitter: turns ledger INTENTs into Gemini jobs, each created at most once.

A recovered INTENT (or one whose create failed unclearly) is first looked up by its
display name and adopted if it exists; `create` itself runs with SDK retries off.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import orjson
import structlog

from connector.core import policy
from connector.core.jsonl import jsonl_lines
from connector.core.partitions import Tracked
from connector.core.ports import SendHandle
from connector.core.quota import Budget, admit
from connector.core.records import EntryState, ErrorInfo, JobInput, RequestEvent
from connector.core.results import Outgoing, correlation_key, deadline_passed, late, refused
from connector.errors import ProviderError, ProviderRejected
from connector.stages.context import Context
from connector.stages.tracker import Tracker

log = structlog.get_logger("connector")


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
        lookups = {t.entry.display_name for t in due if t.lookup}
        try:
            existing = ctx.gemini.find_by_display_names(lookups)
        except ProviderError as exc:
            log.warning("job lookup failed; will retry", error=str(exc))
            for t in due:
                ctx.reschedule(t, now)
            return
        sends: list[SendHandle] = []
        for t in due:
            if ctx.clock() >= deadline:
                break
            found = existing.get(t.entry.display_name) if t.lookup else None
            if found is not None:
                ctx.stats.jobs_adopted += 1
                log.info("adopted existing job", job_id=t.entry.job_id, batch_job=found)
                sends.append(self._submitted(t, found, None))
                continue
            sent = self.tracker.guarded(t, "submit", partial(self._submit, t, now, budget))
            if sent is not None:
                sends.append(sent)
        ctx.producer.flush_and_check(sends)

    def _submit(self, t: Tracked, now: float, budget: Budget) -> SendHandle | None:
        if t.payload is not None and self._drop_late(t, self._events(t)):
            return None  # every request's deadline passed while it waited: all answered
        if not admit(t.entry, self.ctx.owned.live(), budget):
            t.due = now + 1.0
            return None
        return self._create(t, now)

    def _create(self, t: Tracked, now: float) -> SendHandle | None:
        """Upload (file jobs) and create; returns the SUBMITTED ledger write on success."""
        ctx = self.ctx
        events = self._events(t)
        if self._drop_late(t, events):
            return None
        entry = t.entry
        inputs = self._inputs(t, events)
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

    def _submitted(self, t: Tracked, job: str, input_file: str | None) -> SendHandle:
        ctx = self.ctx
        t.entry = policy.submitted(t.entry, job, input_file, ctx.wall_ms())
        t.payload = None
        t.polls = 0
        t.failures = 0
        t.lookup = False
        t.due = ctx.clock() + ctx.retry.poll_initial_s
        return ctx.ledger.write(t.entry)

    def _events(self, t: Tracked) -> list[tuple[int, bytes | None, RequestEvent]]:
        """The job's readable requests (offset, Kafka key, event): from memory or re-read."""
        if t.payload is not None:
            return [(r.offset, r.kafka_key, r.event) for r in t.payload]
        # Unreadable ones are left out here; they get DATA_LOSS results at delivery.
        originals = self.ctx.originals(t.entry).values()
        return [(o.offset, o.kafka_key, o.event) for o in originals if o.event is not None]

    def _drop_late(self, t: Tracked, events: list[tuple[int, bytes | None, RequestEvent]]) -> bool:
        """Answer 504 for requests whose deadline passed before their job was created.

        They leave the job (the SUBMITTED entry records the rest); True when none is left
        and the entry is retired. A crash before that write answers them again (same ids).
        """
        ctx = self.ctx
        now_ms = ctx.wall_ms()
        gone = [(o, k, ev) for o, k, ev in events if deadline_passed(ev, now_ms)]
        if not gone:
            return False
        entry = t.entry
        error = late("while the request waited for its job to be created")
        outgoing = [
            Outgoing(
                k,
                replace(refused(ev, entry.key.partition, o, error, now_ms), attempt=entry.attempt),
            )
            for o, k, ev in gone
        ]
        ctx.stats.deadline_exceeded += len(gone)
        log.warning("deadline passed before submit", job_id=entry.job_id, requests=len(gone))
        dropped = {o for o, _, _ in gone}
        keep = tuple(o for o in entry.offsets if o not in dropped)
        if not keep:
            self.tracker.deliver(entry, outgoing)
            return True
        ctx.sink.flush_and_check([ctx.sink.result(o.kafka_key, o.result) for o in outgoing])
        n = len(entry.offsets)
        t.entry = replace(entry, offsets=keep, est_tokens=entry.est_tokens * len(keep) // n)
        if t.payload is not None:
            t.payload = tuple(r for r in t.payload if r.offset not in dropped)
        return False

    def _inputs(
        self, t: Tracked, events: list[tuple[int, bytes | None, RequestEvent]]
    ) -> list[JobInput]:
        """The job's requests with their correlation keys (only offsets still in the job)."""
        wanted = set(t.entry.offsets)
        out: list[JobInput] = []
        for offset, _, ev in events:
            if offset not in wanted:
                continue
            key = correlation_key(offset)
            meta = {"key": key, "request_id": ev.request_id}
            out.append(JobInput(key, orjson.loads(ev.body), meta))
        return out
