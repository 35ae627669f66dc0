"""The tracker: polls submitted jobs and turns each ending into results or successor jobs.

Order within a job's ending: results (or successor INTENTs) are produced and acked, then
the job's tombstone; a crash in between repeats results (the named duplicate window).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import structlog

from connector.core import policy
from connector.core.jsonl import parse_output_file
from connector.core.partitions import Tracked
from connector.core.records import (
    EntryState,
    ErrorInfo,
    JobState,
    LedgerEntry,
    OutputItem,
    RemoteJob,
)
from connector.core.results import Outgoing, error_results, lost_request, success_results
from connector.errors import ConnectorError, KafkaError, ProviderError, ProviderRejected
from connector.stages.context import Context

log = structlog.get_logger("connector")
T = TypeVar("T")


class Tracker:
    """Polls SUBMITTED jobs with backoff and finishes the ones that ended."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def track_due(self, now: float, stopping: bool = False) -> None:
        for t in self.ctx.owned.due(EntryState.SUBMITTED, now):
            if stopping:
                return
            self.guarded(t, "track", partial(self._track, t, now))

    def guarded(self, t: Tracked, stage: str, fn: Callable[[], T]) -> T | None:
        """Run one job's step; an unexpected exception counts against that job only.

        Kafka failures are not the job's fault: they propagate to the loop, which backs off.
        Anything else (a bug, a response we cannot handle) is retried with backoff and, at
        the QUARANTINE_AFTER-th failure, the job is quarantined: error results, tombstone.
        """
        try:
            return fn()
        except KafkaError:
            raise
        except Exception as exc:
            self._failed(t, stage, exc)
            return None

    def _failed(self, t: Tracked, stage: str, exc: Exception) -> None:
        ctx = self.ctx
        t.errors += 1
        log.error(
            "processing a job failed",
            job_id=t.entry.job_id,
            batch_job=t.entry.provider_job,
            stage=stage,
            error=f"{type(exc).__name__}: {exc}",
            attempts=t.errors,
            quarantine_after=policy.QUARANTINE_AFTER,
            exc_info=exc,
        )
        if t.errors < policy.QUARANTINE_AFTER:
            ctx.reschedule(t, ctx.clock())
            return
        self.quarantine(t.entry, stage, exc, t.errors)

    def quarantine(self, entry: LedgerEntry, stage: str, exc: Exception, attempts: int) -> None:
        """Answer every request of a job that keeps failing with INTERNAL, then retire it."""
        ctx = self.ctx
        error = ErrorInfo(
            500,
            "INTERNAL",
            f"job {entry.job_id} was quarantined after {attempts} failed attempts to {stage} "
            f"it: {type(exc).__name__}: {exc}",
        )
        ctx.stats.jobs_quarantined += 1
        log.error(
            "job quarantined; producing error results",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            partition=entry.key.partition,
            requests=len(entry.offsets),
            reason=error.message,
        )
        try:
            outgoing = error_results(
                entry, ctx.originals(entry), error, entry.provider_job, ctx.wall_ms()
            )
        except KafkaError:
            raise
        except Exception:  # the requests themselves may be what fails: answer by offset
            outgoing = [
                Outgoing(None, lost_request(entry, o, ctx.wall_ms(), entry.provider_job, error))
                for o in entry.offsets
            ]
        self.deliver(entry, outgoing)
        self.cleanup(entry.provider_job, entry.input_file, None)

    def _track(self, t: Tracked, now: float) -> None:
        ctx = self.ctx
        name = t.entry.provider_job
        assert name is not None
        remote: RemoteJob | None
        try:
            remote = ctx.gemini.get(name)
            state = remote.state
        except ProviderRejected as exc:
            if exc.code != 404:
                log.warning("job poll rejected", batch_job=name, error=str(exc))
                ctx.reschedule(t, now)
                return
            log.warning("job vanished at the provider; treating as failed", batch_job=name)
            remote, state = None, JobState.FAILED
        except ProviderError as exc:
            log.warning("job poll failed; backing off", batch_job=name, error=str(exc))
            ctx.reschedule(t, now)
            return
        if not state.terminal and self._too_old(t):
            cancelled = self._cancel_stuck(t, now)
            if cancelled is None:
                return
            state = cancelled
        t.failures = 0  # the provider answered
        if not state.terminal:
            t.polls += 1
            t.due = now + policy.poll_delay(t.polls, ctx.retry, ctx.rand.random())
            return
        self.finish(t, state, remote)

    def _too_old(self, t: Tracked) -> bool:
        max_age_ms = self.ctx.settings.max_job_age_h * 3_600_000
        return 0 < max_age_ms <= self.ctx.wall_ms() - t.entry.updated_ms

    def _cancel_stuck(self, t: Tracked, now: float) -> JobState | None:
        """Cancel a job past CONNECTOR_MAX_JOB_AGE_H and treat it as EXPIRED (split, resubmit).

        Users of batch APIs watch for jobs stuck for a day and recreate them smaller; this
        does it for them, before the provider's own 48 h expiry. None: try again later.
        """
        name = t.entry.provider_job
        assert name is not None
        try:
            self.ctx.gemini.cancel(name)
        except ProviderRejected as exc:
            # Finished meanwhile (cancel refused): the next poll sees its real state.
            log.info("cancel of a stuck job refused", batch_job=name, error=str(exc))
            t.due = now
            return None
        except ProviderError as exc:
            log.warning("cancel of a stuck job failed; backing off", batch_job=name, error=str(exc))
            self.ctx.reschedule(t, now)
            return None
        log.warning(
            "job exceeded its maximum age; cancelled, resubmitting as if expired",
            job_id=t.entry.job_id,
            batch_job=name,
            max_age_h=self.ctx.settings.max_job_age_h,
        )
        return JobState.EXPIRED

    def finish(self, t: Tracked, state: JobState, remote: RemoteJob | None) -> None:
        ctx = self.ctx
        entry = t.entry
        outcome = policy.on_terminal(entry, state, ctx.retry, ctx.wall_ms())
        log.info("job ended", job_id=entry.job_id, batch_job=entry.provider_job, state=state.value)
        if isinstance(outcome, policy.Deliver):
            try:
                outputs = self._outputs(remote)
            except ProviderError as exc:
                log.warning(
                    "fetching results failed; will retry",
                    batch_job=entry.provider_job,
                    error=str(exc),
                )
                ctx.reschedule(t, ctx.clock())
                return
            originals = ctx.originals(entry)
            outgoing = success_results(entry, originals, outputs, entry.provider_job, ctx.wall_ms())
            self.deliver(entry, outgoing)
            self.cleanup(
                entry.provider_job, entry.input_file, remote.responses_file if remote else None
            )
        elif isinstance(outcome, policy.Resubmit):
            self._resubmit(entry, outcome.entries, state)
            self.cleanup(entry.provider_job, entry.input_file, None)
        else:
            self.give_up(entry, outcome.error, entry.provider_job)
            self.cleanup(entry.provider_job, entry.input_file, None)

    def _resubmit(
        self, entry: LedgerEntry, successors: tuple[LedgerEntry, ...], state: JobState
    ) -> None:
        """Successor INTENTs first (only ids not live yet), acked; then the parent's tombstone."""
        ctx = self.ctx
        st = ctx.owned[entry.key.partition]
        new = [e for e in successors if e.job_id not in st.jobs]
        ctx.producer.flush_and_check([ctx.ledger.write(e) for e in new])
        ctx.producer.flush_and_check([ctx.ledger.tombstone(entry)])
        st.remove(entry.job_id)
        for e in new:
            # New to the ledger, and a job is only created after its INTENT is acked:
            # no job of this name can exist, so no lookup is needed.
            st.add(Tracked(e, due=ctx.clock(), lookup=False))
        ctx.stats.jobs_resubmitted += 1
        log.info(
            "job resubmitted",
            job_id=entry.job_id,
            state=state.value,
            successors=[e.job_id for e in successors],
        )

    def _outputs(self, remote: RemoteJob | None) -> list[OutputItem]:
        if remote is None:
            return []
        if remote.inline is not None:
            return list(remote.inline)
        if remote.responses_file:
            return list(parse_output_file(self.ctx.gemini.download(remote.responses_file)))
        return []

    def deliver(self, entry: LedgerEntry, outgoing: list[Outgoing]) -> None:
        """Results first, acked; then the tombstone. A crash between them repeats results."""
        ctx = self.ctx
        ctx.sink.flush_and_check([ctx.sink.result(o.kafka_key, o.result) for o in outgoing])
        ctx.producer.flush_and_check([ctx.ledger.tombstone(entry)])
        ctx.owned.remove_job(entry)
        ctx.stats.jobs_finished += 1
        log.info(
            "results produced",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            ok=sum(o.result.error is None for o in outgoing),
            errors=sum(o.result.error is not None for o in outgoing),
        )

    def give_up(self, entry: LedgerEntry, error: ErrorInfo, job_name: str | None) -> None:
        """Every request of the job gets `error` as its result."""
        ctx = self.ctx
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        originals = ctx.originals(entry)
        self.deliver(entry, error_results(entry, originals, error, job_name, ctx.wall_ms()))

    def cleanup(self, job: str | None, input_file: str | None, output_file: str | None) -> None:
        """Best effort: Gemini deletes files after 48 h anyway; a failure here loses nothing."""
        gemini = self.ctx.gemini
        for what, fn, arg in (
            ("input file", gemini.delete_file, input_file),
            ("output file", gemini.delete_file, output_file),
            ("job", gemini.delete_job, job),
        ):
            if arg is None:
                continue
            try:
                fn(arg)
            except ConnectorError as exc:
                log.info("cleanup failed", what=what, name=arg, error=str(exc))
