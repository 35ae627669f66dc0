"""The submitter: turns ledger INTENTs into Gemini jobs, each created at most once.

A recovered INTENT (or one whose create failed unclearly) is first looked up by its
display name and adopted if it exists; `create` itself runs with SDK retries off.
"""

from __future__ import annotations

import contextlib
from typing import IO

import structlog

from connector.core import policy
from connector.core.partitions import Tracked
from connector.core.ports import SendHandle
from connector.core.quota import Budget, admit
from connector.core.records import EntryState, ErrorInfo, JobInput
from connector.errors import ProviderError, ProviderRejected, RegistryUnavailable
from connector.stages.context import Context
from connector.stages.inputs import job_events, job_inputs, spool_inputs
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
            if not admit(t.entry, ctx.owned.live(), budget):
                t.due = now + 1.0
                continue
            sent = self._create(t, now)
            if sent is not None:
                sends.append(sent)
        ctx.producer.flush_and_check(sends)

    def _create(self, t: Tracked, now: float) -> SendHandle | None:
        """Upload (file jobs) and create; returns the SUBMITTED ledger write on success."""
        ctx = self.ctx
        entry = t.entry
        use_file = policy.uses_file(entry)
        spool: IO[bytes] | None = None
        inputs: list[JobInput] = []
        try:
            if use_file:  # written to disk as it is re-read, chunk by chunk
                spool, count = spool_inputs(t, ctx.reader)
            else:
                inputs = self._inputs(t)
                count = len(inputs)
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            log.warning(
                "re-reading requests failed; will retry", job_id=entry.job_id, error=str(exc)
            )
            ctx.reschedule(t, now)
            return None
        with spool or contextlib.nullcontext():
            if not count:
                error = ErrorInfo(400, "INVALID_ARGUMENT", "no request of the job could be read")
                self.tracker.give_up(entry, error, None)
                return None
            return self._upload_and_create(t, now, spool, inputs)

    def _upload_and_create(
        self, t: Tracked, now: float, spool: IO[bytes] | None, inputs: list[JobInput]
    ) -> SendHandle | None:
        ctx = self.ctx
        entry = t.entry
        input_file = None
        model, kind, name = entry.key.model, entry.key.kind, entry.display_name
        prio = entry.key.priority
        try:
            if spool is not None:
                input_file = ctx.gemini.upload_file(spool, name)
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

    def _inputs(self, t: Tracked) -> list[JobInput]:
        """An inline job's requests with their correlation keys (from memory, or re-read by
        offset in chunks); unreadable ones get DATA_LOSS results at delivery."""
        return list(job_inputs(job_events(t, self.ctx.reader)))
