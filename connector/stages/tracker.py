"""The tracker: polls submitted jobs and turns each ending into results or successor jobs.

Order within a job's ending: results (or successor INTENTs) are produced and acked, then
the job's tombstone; a crash in between repeats results (the named duplicate window).
A SUCCEEDED job's results go out in bounded chunks, one per pass (`stages.delivery`).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from connector.core import policy
from connector.core.partitions import Tracked
from connector.core.ports import SendHandle
from connector.core.records import (
    EntryState,
    ErrorInfo,
    JobState,
    LedgerEntry,
    RemoteJob,
)
from connector.core.results import Outgoing, error_results
from connector.core.spans import CHUNK_REQUESTS, chunks
from connector.errors import (
    ConnectorError,
    ProviderError,
    ProviderRejected,
    RegistryUnavailable,
)
from connector.stages.context import Context
from connector.stages.delivery import CHUNK_BYTES, Delivery, start_delivery

log = structlog.get_logger("connector")


class Tracker:
    """Polls SUBMITTED jobs with backoff and finishes the ones that ended."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.deliveries: dict[str, Delivery] = {}
        """Jobs whose results are being produced, chunk by chunk, by job id."""
        self.chunk_requests = CHUNK_REQUESTS
        self.chunk_bytes = CHUNK_BYTES

    def track_due(self, now: float, stopping: bool = False) -> None:
        ctx = self.ctx
        self._forget_unowned()
        for t in ctx.owned.due(EntryState.SUBMITTED, now):
            if stopping:
                return
            if t.entry.job_id in self.deliveries:
                self._deliver_chunk(t)
                continue
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
                    continue
                log.warning("job vanished at the provider; treating as failed", batch_job=name)
                remote, state = None, JobState.FAILED
            except ProviderError as exc:
                log.warning("job poll failed; backing off", batch_job=name, error=str(exc))
                ctx.reschedule(t, now)
                continue
            if not state.terminal and self._too_old(t):
                cancelled = self._cancel_stuck(t, now)
                if cancelled is None:
                    continue
                state = cancelled
            t.failures = 0  # the provider answered
            if not state.terminal:
                t.polls += 1
                t.due = now + policy.poll_delay(t.polls, ctx.retry, ctx.rand.random())
                continue
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
                delivery = start_delivery(
                    ctx.gemini, entry, remote, self.chunk_requests, self.chunk_bytes
                )
            except ProviderError as exc:
                log.warning(
                    "fetching results failed; will retry",
                    batch_job=entry.provider_job,
                    error=str(exc),
                )
                ctx.reschedule(t, ctx.clock())
                return
            self.deliveries[entry.job_id] = delivery
            self._deliver_chunk(t)
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

    def _deliver_chunk(self, t: Tracked) -> None:
        """Produce the next chunk of a SUCCEEDED job's results; after the last, end the job.

        One chunk per job per pass, so the loop keeps polling while a big job is delivered.
        """
        ctx = self.ctx
        entry = t.entry
        d = self.deliveries[entry.job_id]
        try:
            outgoing = d.next_chunk(ctx.reader.read, ctx.wall_ms())
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            log.warning(
                "re-reading requests failed; will retry", job_id=entry.job_id, error=str(exc)
            )
            ctx.reschedule(t, ctx.clock())
            return
        if outgoing is not None:
            self.produce(entry, outgoing)
            d.acked()
            if not d.finished():
                t.due = ctx.clock()  # the next chunk in the next pass
                return
        del self.deliveries[entry.job_id]
        d.close()
        self.end(entry)
        log.info(
            "job delivered", job_id=entry.job_id, batch_job=entry.provider_job, chunks=d.chunks
        )
        self.cleanup(entry.provider_job, entry.input_file, d.output_file)

    def _forget_unowned(self) -> None:
        """Drop deliveries of jobs no longer owned (partition revoked) and their temp files;
        close re-read consumers of partitions no longer owned or idle."""
        ctx = self.ctx
        for job_id, d in list(self.deliveries.items()):
            st = ctx.owned.get(d.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            # Revoked and assigned again in one rebalance, the same job goes on where it was.
            if t is None or t.entry.provider_job != d.entry.provider_job:
                del self.deliveries[job_id]
                d.close()
        ctx.reader.retain(ctx.owned.keys())

    def deliver(self, entry: LedgerEntry, outgoing: Iterable[Outgoing]) -> None:
        """Results first, acked; then the tombstone. A crash between them repeats results."""
        self.produce(entry, outgoing)
        self.end(entry)

    def produce(self, entry: LedgerEntry, outgoing: Iterable[Outgoing]) -> None:
        """Produce results and wait for their acks (raises if any failed)."""
        ctx = self.ctx
        sent: list[SendHandle] = []
        errors = 0
        for o in outgoing:
            sent.append(ctx.sink.result(o.kafka_key, o.result))
            errors += o.result.error is not None
        ctx.producer.flush_and_check(sent)
        log.info(
            "results produced",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            ok=len(sent) - errors,
            errors=errors,
        )

    def end(self, entry: LedgerEntry) -> None:
        """The job is finished: every result is acked. The one place that records it."""
        ctx = self.ctx
        ctx.producer.flush_and_check([ctx.ledger.tombstone(entry)])
        ctx.owned.remove_job(entry)
        ctx.stats.jobs_finished += 1

    def give_up(self, entry: LedgerEntry, error: ErrorInfo, job_name: str | None) -> None:
        """Every request of the job gets `error` as its result, a bounded chunk at a time."""
        ctx = self.ctx
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        for offsets in chunks(entry.offsets, self.chunk_requests):
            originals = ctx.reader.read(entry.key.partition, offsets)
            outgoing = error_results(entry, originals, error, job_name, ctx.wall_ms(), offsets)
            self.produce(entry, outgoing)
        self.end(entry)

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
