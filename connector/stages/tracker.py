"""The tracker: polls submitted jobs and turns each ending into results or successor jobs.

Order within a job's ending: results (or successor INTENTs) are produced and acked, then
the job's DONE entry (or its tombstone, once the commit is past its offsets); a crash in
between repeats results (the named duplicate window). DONE keeps the offsets covered until
the committed offset passes them, so a rewind never batches finished requests again.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from connector.core.results import Outgoing, error_results, success_results
from connector.errors import (
    ConnectorError,
    ProviderAuthFailed,
    ProviderError,
    ProviderFileGone,
    ProviderRejected,
    ProviderRetryable,
    RegistryUnavailable,
)
from connector.stages.context import Context

log = structlog.get_logger("connector")


class Tracker:
    """Polls SUBMITTED jobs with backoff and finishes the ones that ended."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cleanups: list[_Cleanup] = []

    def track_due(self, now: float, stopping: bool = False, deadline: float = float("inf")) -> None:
        """Poll due jobs; none after `deadline` (the pass budget): they stay due."""
        ctx = self.ctx
        if not stopping:
            self.retry_cleanups(now)
        for t in ctx.owned.due(EntryState.SUBMITTED, now):
            if stopping or ctx.clock() >= deadline:
                return
            name = t.entry.provider_job
            assert name is not None
            remote: RemoteJob | None
            try:
                remote = ctx.gemini.get(name)
                state = remote.state
            except ProviderRejected as exc:
                ctx.provider_answered(exc)
                if exc.code != 404 or isinstance(exc, ProviderAuthFailed):
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
            elif state is JobState.CANCELLED and self._too_old(t):
                # Our own max-age cancel whose reply was lost, or before a crash: the entry's
                # age, durable in the ledger, says so. Resubmit split, never 499 errors.
                log.warning(
                    "job past its maximum age found cancelled; resubmitting as if expired",
                    job_id=t.entry.job_id,
                    batch_job=name,
                    max_age_h=ctx.settings.max_job_age_h,
                )
                state = JobState.EXPIRED
            t.failures = 0  # the provider answered
            ctx.provider_answered()
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
        ctx.obs.job_ended(entry, state, type(outcome).__name__.lower())
        if isinstance(outcome, policy.Deliver):
            try:
                outputs = self._outputs(remote)
                originals = ctx.originals(entry)
            except ProviderFileGone as exc:
                # Past the Files API's 48 h TTL (or deleted): waiting will not bring it back.
                log.error(
                    "results file of a finished job is gone; resubmitting as if expired",
                    job_id=entry.job_id,
                    batch_job=entry.provider_job,
                    error=str(exc),
                )
                self.finish(t, JobState.EXPIRED, None)
                return
            except (ProviderError, RegistryUnavailable) as exc:
                if isinstance(exc, ProviderError):
                    ctx.provider_answered(exc)
                log.warning(
                    "fetching results failed; will retry",
                    batch_job=entry.provider_job,
                    error=str(exc),
                )
                ctx.reschedule(t, ctx.clock())
                return
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
        p = entry.key.partition
        if ctx.settings.exactly_once:  # one transaction: successors and parent's tombstone
            ctx.commit([*(ctx.ledger.write(e) for e in new), ctx.ledger.tombstone(entry)], [p])
        else:
            ctx.commit([ctx.ledger.write(e) for e in new], [p])
            ctx.commit([ctx.ledger.tombstone(entry)], [p])
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
        """Results first, acked; then DONE (or the tombstone). A crash between repeats results.

        While an uncommitted offset below the job holds the partition's commit, a rewind
        would read the job's requests again: DONE keeps them covered until `prune_done`.
        Exactly-once: results and that ledger write are one transaction, fenced by the
        partition's group generation, so a read_committed reader sees them once or not at all.
        """
        ctx = self.ctx
        results = [ctx.sink.result(o.kafka_key, o.result) for o in outgoing]
        p = entry.key.partition
        st = ctx.owned.get(p)
        finished = policy.done(entry, ctx.wall_ms())
        prune_now = st is None or policy.prunable(finished, st.committed)
        end = ctx.ledger.tombstone(entry) if prune_now else ctx.ledger.write(finished)
        if ctx.settings.exactly_once:  # one transaction: no duplicate window
            ctx.commit([*results, end], [p])
        else:
            ctx.commit(results, [p])
            ctx.commit([end], [p])
        if prune_now or st is None:
            ctx.owned.remove_job(entry)
        else:
            st.remove(entry.job_id)
            st.add(Tracked(finished, due=float("inf"), lookup=False))
        ctx.stats.jobs_finished += 1
        log.info(
            "results produced",
            job_id=entry.job_id,
            batch_job=entry.provider_job,
            ok=sum(o.result.error is None for o in outgoing),
            errors=sum(o.result.error is not None for o in outgoing),
        )

    def prune_done(self) -> None:
        """Tombstone DONE entries once the committed offset is past them.

        Cheap: a partition is looked at only when its committed offset moved since the last
        prune, and the tombstones of one pass are flushed together.
        """
        ctx = self.ctx
        sends = []
        touched = []
        for p, st in ctx.owned.items():
            if st.committed <= st.pruned:
                continue
            st.pruned = st.committed
            for t in [t for t in st.jobs.values() if policy.prunable(t.entry, st.committed)]:
                sends.append(ctx.ledger.tombstone(t.entry))
                st.remove(t.entry.job_id)
                touched.append(p)
        if sends:
            ctx.commit(sends, touched)

    def give_up(self, entry: LedgerEntry, error: ErrorInfo, job_name: str | None) -> None:
        """Every request of the job gets `error` as its result."""
        ctx = self.ctx
        log.warning(
            "job gave up; producing error results", job_id=entry.job_id, error=error.message
        )
        originals = ctx.originals(entry)
        self.deliver(entry, error_results(entry, originals, error, job_name, ctx.wall_ms()))

    def cleanup(self, job: str | None, input_file: str | None, output_file: str | None) -> None:
        """Best effort: Gemini deletes files after 48 h anyway; a failure here loses nothing.

        A delete that failed transiently (5xx, 429, timeout, a rejected key) is queued and
        tried again with backoff, `policy.CLEANUP_MAX_ATTEMPTS` times in all.
        """
        now = self.ctx.clock()
        for what, name in (("input file", input_file), ("output file", output_file), ("job", job)):
            if name is not None:
                self._delete(_Cleanup(what, name), now)

    def retry_cleanups(self, now: float) -> None:
        """Try the queued deletes that are due."""
        if not self._cleanups or min(c.due for c in self._cleanups) > now:
            return
        due = [c for c in self._cleanups if c.due <= now]
        self._cleanups = [c for c in self._cleanups if c.due > now]
        for c in due:
            self._delete(c, now)

    def _delete(self, c: _Cleanup, now: float) -> None:
        gemini = self.ctx.gemini
        try:
            if c.what == "job":
                gemini.delete_job(c.name)
            else:
                gemini.delete_file(c.name)
        except (ProviderRetryable, ProviderAuthFailed) as exc:
            c.attempts += 1
            if c.attempts >= policy.CLEANUP_MAX_ATTEMPTS:
                log.warning("cleanup given up", what=c.what, name=c.name, error=str(exc))
            elif len(self._cleanups) >= policy.CLEANUP_MAX_PENDING:
                log.warning("cleanup queue full; left to Gemini's expiry", what=c.what, name=c.name)
            else:
                c.due = now + policy.failure_delay(c.attempts, self.ctx.rand.random())
                self._cleanups.append(c)
                log.info("cleanup failed; will retry", what=c.what, name=c.name, error=str(exc))
        except ConnectorError as exc:  # already gone (404/403) or refused for good
            log.info("cleanup failed", what=c.what, name=c.name, error=str(exc))


@dataclass(slots=True)
class _Cleanup:
    """A delete of a finished job's file or of the job itself, retried after a 5xx."""

    what: str
    name: str
    attempts: int = 0
    due: float = 0.0
