"""The submitter: turns ledger INTENTs into Gemini jobs, each created at most once.

A recovered INTENT (or one whose create failed unclearly) is first looked up by its
display name and adopted if it exists; `create` itself runs with SDK retries off.

A file job's input JSONL (up to 2 GB) is uploaded in `ctx.background`, off the loop thread:
the job stays INTENT meanwhile, and the pass that finds the upload ended claims and creates
it, on the loop thread, in that order (upload → claim → create).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from functools import partial
from itertools import islice
from typing import IO

import structlog

from connector.core import lifecycle, policy, recovery
from connector.core.jsonl import write_jsonl
from connector.core.offsets import Offsets
from connector.core.partitions import Tracked
from connector.core.policy import ClaimWindow
from connector.core.ports import GeminiPort, RequestReaderPort, SendHandle
from connector.core.quota import Budget, admit, over_cap_alone, too_big
from connector.core.records import EntryState, ErrorInfo, JobInput, LedgerEntry, RequestEvent
from connector.core.results import Outgoing, deadline_passed, late, refused
from connector.core.spool import input_file_bytes
from connector.errors import (
    ClaimExpired,
    ProviderAuthFailed,
    ProviderError,
    ProviderRejected,
    ProviderRequestTooLarge,
    RegistryUnavailable,
)
from connector.stages.context import Context
from connector.stages.inputs import job_events, job_inputs, spool_inputs
from connector.stages.tracker import Tracker

log = structlog.get_logger("connector")

CLAIM_FRESH_S = policy.CLAIM_FRESH_S


class Submitter:
    """Creates (or adopts) the jobs of due INTENTs within this replica's quota share."""

    def __init__(self, ctx: Context, tracker: Tracker) -> None:
        self.ctx = ctx
        self.tracker = tracker
        self.uploads: dict[str, _Upload] = {}
        """File jobs whose input is uploading in `ctx.background` (or uploaded, not yet
        created), by job id."""
        self._orphans: list[_Upload] = []
        """Uploads of jobs no longer owned, still running: their files are deleted once in."""
        self.spooling: dict[str, _Spooling] = {}
        """File jobs whose input JSONL is being written to disk, a slice per pass, by job id
        (only with `ctx.background`: a 1M-request job takes seconds to re-read)."""
        self._stopping = False

    def submit_due(
        self,
        now: float,
        budget: Budget,
        deadline: float = float("inf"),
        stopping: bool = False,
    ) -> None:
        """Create (or adopt) the due INTENTs. `stopping` (the drain): no upload is started,
        and those still running are abandoned after this pass (see `_abandon`)."""
        self._stopping = stopping
        try:
            self._submit_due(now, budget, deadline)
        finally:
            if stopping:
                self._abandon()

    def _submit_due(self, now: float, budget: Budget, deadline: float) -> None:
        ctx = self.ctx
        self._forget_unowned()
        due: list[Tracked] = []
        for t in ctx.owned.due(EntryState.INTENT, now):
            if self._waits_for_upload(t):
                t.due = ctx.clock() + policy.FETCH_CHECK_S
            else:
                due.append(t)
        if not due:
            return
        due.sort(key=lambda t: (-t.entry.key.priority, t.entry.created_ms))
        lookups = any(t.lookup for t in due)
        due, existing = self._look_up(due, now)
        if not due:
            return
        if lookups:
            ctx.provider_answered()
        sends: list[SendHandle] = []
        # A claim that is refused (`Fenced`) aborts the SUBMITTED writes sent before it in
        # the same transaction (at-least-once): the new owner's lookup adopts those jobs.
        try:
            self._submit(due, existing, now, budget, deadline, sends)
        except Exception:
            if sends and not ctx.settings.exactly_once and ctx.txn is not None:
                # A Kafka failure: they must never ride a later claim's commit, past what
                # this replica writes after it rebuilt its partitions (exactly-once: the
                # runner aborts the pass's transaction).
                ctx.txn.abort_transaction()
            raise
        if sends:
            if ctx.settings.exactly_once or ctx.txn is None or ctx.consumer is None:
                ctx.commit(sends, {t.entry.key.partition for t in due})
            else:
                self._proven(sends, due)

    def _proven(self, sends: list[SendHandle], due: list[Tracked]) -> None:
        """At-least-once: commit the pass's SUBMITTED writes (sent through `ctx.txn`) in one
        transaction with their partitions' committed offsets, which the group accepts only
        from the current generation. A replica the group dropped after its create (a freeze
        past the session timeout) is `Fenced` and writes nothing: a SUBMITTED entry landing
        after the new owner adopted, delivered and tombstoned that job would bring it back,
        and the next owner, finding it deleted (404), would resubmit it as `.../r1`: a
        request answered by two jobs. The new owner holds the job's INTENT (the claim) and
        adopts it by its lookup instead."""
        parts = {t.entry.key.partition for t in due if t.entry.state is EntryState.SUBMITTED}
        self.ctx.prove_ownership(parts, sends)

    def _record(self, t: Tracked, sent: SendHandle, sends: list[SendHandle]) -> None:
        """A SUBMITTED write: in exactly-once mode committed now, its own unit of work (a
        later job's failure aborts only what that job sent); else flushed with the pass's."""
        if self.ctx.settings.exactly_once:
            self.ctx.commit([sent], [t.entry.key.partition])
        else:
            sends.append(sent)

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
            ctx.provider_answered(exc)
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
                self._record(t, self._submitted(t, found, t.entry.input_file), sends)
                continue
            # Looked up (recovered ones only once their lookup delay passed) and not there:
            # no create of the previous owner can still land, so the answer holds for the
            # next pass too. Without this, a lookup slower than the pass budget would be
            # repeated every pass and nothing would ever be created.
            recovered, t.lookup = t.lookup, False
            if recovered and self._yield_overlap(t, existing):
                continue
            if ctx.clock() >= deadline:
                continue  # the budget is spent: created next pass
            if too_big(t.entry, ctx.settings.token_budget):
                self.tracker.guarded(t, "submit", partial(self._split, t))
                continue
            if t.payload is not None and self._late_in_memory(t):
                continue  # every request's deadline passed while it waited: all answered
            # A job whose input is uploading was admitted when its upload began.
            if t.entry.job_id not in self.uploads and not admit(t.entry, self._live(), budget):
                t.due = now + 1.0
                continue
            sent = self.tracker.guarded(t, "submit", partial(self._create, t, now))
            if sent is not None:
                self._record(t, sent, sends)

    def _create(self, t: Tracked, now: float) -> SendHandle | None:
        """Upload (file jobs) and create; returns the SUBMITTED ledger write on success."""
        entry = t.entry
        use_file = policy.uses_file(entry)
        # An input file kept from an unclear create (maybe read by a job that landed late).
        input_file = entry.input_file if use_file else None
        if use_file and input_file is None:
            return self._upload_then_create(t, now)
        inputs: list[JobInput] = []
        if not use_file:
            try:
                read = self._inputs(t)
            except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
                self._reread_failed(t, now, exc)
                return None
            if read is None:
                return None  # every request's deadline had passed: job retired
            if not read:
                self._unreadable(t)
                return None
            inputs = read
        return self._upload_and_create(t, now, use_file, input_file, None, inputs)

    def _upload_then_create(self, t: Tracked, now: float) -> SendHandle | None:
        """A file job without a kept input file: spool its JSONL, upload it, then create.

        With `ctx.background` the upload runs there (2 GB take minutes) and this returns at
        once; the job stays INTENT, due every `FETCH_CHECK_S`, until a pass finds the upload
        ended. That pass handles it here, on the loop thread, as if the upload had just
        returned: its error as the upload's failure, its file by the claim, then the create
        (the claim fresh as ever, right before it). Without `ctx.background` (unit tests of
        other stages), all of it happens in this call.
        """
        ctx = self.ctx
        entry = t.entry
        up = self.uploads.get(entry.job_id)
        if up is None:
            background = ctx.background
            if background is not None and self._stopping:
                return None  # it would be abandoned at once: the next owner uploads it
            if background is not None:
                spool = self._spool_slice(t, now)
                if spool is None:
                    return None
                up = _Upload.start(background, ctx.gemini, entry, spool)
                self.uploads[entry.job_id] = up
                log.info("uploading input file", job_id=entry.job_id, requests=len(entry.offsets))
                t.due = ctx.clock() + policy.FETCH_CHECK_S
                return None
            spool = self._spool(t, now)
            if spool is None:
                return None
            if background is None:
                with spool:
                    upload = partial(ctx.gemini.upload_file, spool, entry.display_name)
                    return self._upload_and_create(t, now, True, None, upload, [])
            up = _Upload.start(background, ctx.gemini, entry, spool)
            self.uploads[entry.job_id] = up
            log.info("uploading input file", job_id=entry.job_id, requests=len(entry.offsets))
        if not up.future.done():
            t.due = ctx.clock() + policy.FETCH_CHECK_S
            return None
        del self.uploads[entry.job_id]
        # Done: `result()` returns the file at once, or raises the upload's error here.
        return self._upload_and_create(t, now, True, None, up.future.result, [])

    def _spool(self, t: Tracked, now: float) -> IO[bytes] | None:
        """The job's input JSONL on disk, rewound; None if re-reading failed (retried with
        backoff) or found nothing (the job is given up)."""
        if not self._room_for_input(t):
            return None
        gate, need = self.ctx.spool, self._input_bytes(t)
        try:  # written to disk as it is re-read, chunk by chunk
            spool, count = spool_inputs(
                t, self.ctx.reader, open_file=lambda: gate.open("gbc-input-", need)
            )
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            self._reread_failed(t, now, exc)
            return None
        if not count:
            spool.close()
            self._unreadable(t)
            return None
        return spool

    def _spool_slice(self, t: Tracked, now: float) -> IO[bytes] | None:
        """Write the next slice of the job's input JSONL (`policy.SPOOL_SLICE_S` of work at
        most); the whole file, rewound, once the last slice is written, else None (the job
        comes due next pass; also None if re-reading failed or found nothing, as `_spool`).

        A job's first slice waits for an upload slot (`policy.MAX_UPLOADS`: spooled files
        and uploads together), so temporary files stay bounded."""
        ctx = self.ctx
        job_id = t.entry.job_id
        sp = self.spooling.get(job_id)
        if sp is None:
            if self._uploading() >= policy.MAX_UPLOADS:
                t.due = ctx.clock() + policy.FETCH_CHECK_S  # waits for a slot, not spooled
                return None
            if not self._room_for_input(t):
                return None
            sp = self.spooling[job_id] = _Spooling.start(
                t, ctx.reader, ctx.spool.open("gbc-input-", self._input_bytes(t))
            )
        try:
            done = sp.write(ctx.clock, ctx.clock() + policy.SPOOL_SLICE_S)
        except RegistryUnavailable as exc:  # re-reading Confluent-framed requests
            self._drop_spooling(job_id)
            self._reread_failed(t, now, exc)
            return None
        except BaseException:
            self._drop_spooling(job_id)
            raise
        if not done:
            t.due = ctx.clock()  # the next slice, next pass
            return None
        del self.spooling[job_id]
        if not sp.count:
            sp.file.close()
            self._unreadable(t)
            return None
        sp.file.seek(0)
        return sp.file

    def _input_bytes(self, t: Tracked) -> int:
        return input_file_bytes(self.ctx.settings.batch_max_bytes, len(t.entry.offsets))

    def _room_for_input(self, t: Tracked) -> bool:
        """Whether the spool has room for the job's input JSONL now; if not, the job waits
        (INTENT, due again later) and a warning says why. Never a half-written file."""
        ctx = self.ctx
        need = self._input_bytes(t)
        retry_at = ctx.spool.wait_for_room("input", need, ctx.clock(), job_id=t.entry.job_id)
        if retry_at is None:
            return True
        t.due = retry_at
        return False

    def _drop_spooling(self, job_id: str) -> None:
        sp = self.spooling.pop(job_id, None)
        if sp is not None:
            sp.file.close()

    def _reread_failed(self, t: Tracked, now: float, exc: RegistryUnavailable) -> None:
        log.warning("re-reading requests failed; will retry", job_id=t.entry.job_id, error=str(exc))
        self.ctx.reschedule(t, now)

    def _unreadable(self, t: Tracked) -> None:
        error = ErrorInfo(400, "INVALID_ARGUMENT", "no request of the job could be read")
        self.tracker.give_up(t.entry, error)

    def _waits_for_upload(self, t: Tracked) -> bool:
        """Whether `t` can only wait, this pass, for its input's upload to end or for a free
        upload slot. Nothing else is done for it meanwhile (no deadline check, admission or
        commit: ten times a second, those would cost a big job's payload scan and, in
        exactly-once mode, a transaction each)."""
        up = self.uploads.get(t.entry.job_id)
        if up is not None:
            return not up.future.done()
        if t.entry.job_id in self.spooling:
            return False  # it holds a slot already: its next slice is written this pass
        return (
            self.ctx.background is not None
            and not t.lookup  # a lookup (maybe an adoption) needs no upload slot
            and policy.uses_file(t.entry)
            and t.entry.input_file is None
            and self._uploading() >= policy.MAX_UPLOADS
        )

    def _uploading(self) -> int:
        """Uploads holding a temporary file and a background thread (or queued for one)."""
        running = sum(not u.future.done() for u in self.uploads.values())
        return running + len(self._orphans) + len(self.spooling)

    def _live(self) -> Iterator[LedgerEntry]:
        """The owned entries, for `admit`: an INTENT whose input is uploading counts as
        SUBMITTED, holding the quota it was admitted with, as one upload-and-create in a
        single call did. Otherwise every due file job would be admitted (and uploaded) while
        the first ones upload, then wait for quota with an unrecorded file that expires."""
        for e in self.ctx.owned.live():
            if e.state is EntryState.INTENT and (
                e.job_id in self.uploads or e.job_id in self.spooling
            ):
                yield replace(e, state=EntryState.SUBMITTED)
            else:
                yield e

    def _forget_unowned(self) -> None:
        """Let go of the uploads of jobs this replica no longer owns as they were uploaded:
        partition revoked, fenced or rebuilt after a Kafka failure without the job, or the
        job retired, adopted or cancelled meanwhile. An owner whose job is back (revoked and
        assigned again in one rebalance, rebuilt from the same ledger entry) keeps the upload.

        A forgotten upload's temporary file is closed when it ends (its done-callback). No
        create can have used its file (a create follows only an upload taken from
        `self.uploads`) and nothing records it, so it is deleted once in, best effort
        (`Tracker.cleanup`); one still running at stop is left to Gemini's 48 h expiry.
        """
        owned = self.ctx.owned
        for job_id, sp in list(self.spooling.items()):
            st = owned.get(sp.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            if t is None or t.entry != sp.entry:
                self._drop_spooling(job_id)  # written again by whoever creates the job
        for job_id, up in list(self.uploads.items()):
            st = owned.get(up.entry.key.partition)
            t = st.jobs.get(job_id) if st is not None else None
            if t is not None and up.serves(t.entry):
                continue
            del self.uploads[job_id]
            log.info("input upload dropped: its job is no longer owned here", job_id=job_id)
            self._orphans.append(up)
        running: list[_Upload] = []
        for up in self._orphans:
            if not up.future.done():
                running.append(up)
            elif (name := up.file()) is not None:
                self.tracker.cleanup(None, name, None)
        self._orphans = running

    def _abandon(self) -> None:
        """On stop: uploads not started are cancelled, running ones left to end on their own
        (their temporary files close then, their files are left to Gemini's 48 h expiry:
        nothing will create from them, and the runner does not wait for them)."""
        ups = [*self.uploads.values(), *self._orphans]
        if ups:
            log.info("input uploads abandoned on stop", jobs=[u.entry.job_id for u in ups])
        for up in ups:
            up.future.cancel()
        for job_id in list(self.spooling):
            self._drop_spooling(job_id)
        self.uploads.clear()
        self._orphans = []

    def _upload_and_create(
        self,
        t: Tracked,
        now: float,
        use_file: bool,
        input_file: str | None,
        upload: Callable[[], str] | None,
        inputs: list[JobInput],
    ) -> SendHandle | None:
        """`upload` gives the new input file's name (or raises the upload's error); None:
        inline, or `input_file` kept from an earlier upload."""
        ctx = self.ctx
        entry = t.entry
        kept = input_file is not None
        model, kind, name = entry.key.model, entry.key.kind, entry.display_name
        prio = entry.key.priority
        creating = False
        try:
            if upload is not None:
                input_file = upload()
            claim = self._claim(t, now)
            if claim is None:
                self._keep(t, input_file, kept)  # reused when the job is claimed again
                return None
            creating = True
            if use_file:
                job = ctx.gemini.create(model, kind, name, prio, file_name=input_file, claim=claim)
            else:
                job = ctx.gemini.create(model, kind, name, prio, inline=inputs, claim=claim)
        except ClaimExpired as exc:
            # Stalled between the claim and the send: nothing went out. Claimed again next
            # pass, which a replica the group dropped meanwhile cannot do.
            log.warning(
                "create not sent; claiming again next pass", job_id=entry.job_id, error=str(exc)
            )
            t.due = now
            self._keep(t, input_file, kept)
            return None
        except ProviderRejected as exc:
            if isinstance(exc, ProviderAuthFailed):
                # A rotated or revoked key: an outage, never the requests' fault.
                ctx.provider_answered(exc)
                ctx.reschedule(t, now)
                self._keep(t, input_file, kept)
                return None
            if isinstance(exc, ProviderRequestTooLarge) and not use_file:
                # Our size estimate fell short of the bytes sent: a file has no such limit.
                log.warning(
                    "inline create over the provider's size limit; sending a file instead",
                    job_id=entry.job_id,
                    error=str(exc),
                )
                t.entry = replace(entry, use_file=True)
                t.due = now
                return None
            if kept:
                # The kept file may be gone (48 h TTL): forget it and upload afresh.
                log.warning(
                    "create from a kept input file refused; uploading it again",
                    job_id=entry.job_id,
                    input_file=input_file,
                    error=str(exc),
                )
                self.tracker.cleanup(None, input_file, None, partition=entry.key.partition)
                t.entry = replace(entry, input_file=None)
                ctx.reschedule(t, now)
                return None
            log.error("job rejected by the provider", job_id=entry.job_id, error=str(exc))
            self.tracker.cleanup(None, input_file, None, partition=entry.key.partition)
            self.tracker.give_up(entry, ErrorInfo(exc.code or 400, exc.status, str(exc)))
            return None
        except ProviderError as exc:
            if exc.code == 429 and over_cap_alone(str(exc)):
                self._over_cap(t, exc, input_file)
                return None
            log.warning("job create failed; backing off", job_id=entry.job_id, error=str(exc))
            ctx.reschedule(t, now)
            self._keep(t, input_file, kept)
            if exc.code != 429 and creating:
                # A 5xx or timeout may hide a job that was created, or one that lands later:
                # look it up, one server timeout from now, before trying again. A 429 is a
                # clear refusal.
                self._unclear(t)
            else:
                t.lookup = False
            return None
        except Exception:
            if creating:
                # Not the provider's answer (a 200 the SDK could not parse, a transport
                # error of another HTTP stack): the request may have reached the server and
                # the job may exist. Looked up before any new create; counts against the job.
                self._keep(t, input_file, kept)
                self._unclear(t)
            raise
        ctx.provider_answered()
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

    def _over_cap(self, t: Tracked, exc: ProviderError, input_file: str | None) -> None:
        """Refused because the job alone is over the model's enqueued-token cap: it would
        be refused however long it waited. Split it in halves (each split again if refused
        again); a single request over the whole cap can never run and gets the 429."""
        entry = t.entry
        if len(entry.offsets) > 1:
            if input_file is not None and input_file != entry.input_file:
                self.tracker.cleanup(None, input_file, None)  # `_split` deletes the kept one
            log.warning(
                "job alone over the enqueued-token cap; splitting it",
                job_id=entry.job_id,
                est_tokens=entry.est_tokens,
                error=str(exc),
            )
            self._split(t)
            return
        log.error("request alone over the enqueued-token cap", job_id=entry.job_id, error=str(exc))
        self.tracker.cleanup(None, input_file, None)
        self.tracker.give_up(entry, ErrorInfo(429, exc.status, str(exc)))

    def _split(self, t: Tracked) -> None:
        """Replace the INTENT `t` by its halves (`policy.halves`): their INTENTs, then the
        parent's tombstone (one transaction in exactly-once mode). Nothing was created for
        it (its lookup, if any, found nothing), so the halves need no lookup."""
        ctx = self.ctx
        entry = t.entry
        p = entry.key.partition
        parts = policy.halves(entry, ctx.wall_ms())
        writes = [ctx.ledger.write(e) for e in parts]
        if ctx.settings.exactly_once:
            ctx.commit([*writes, ctx.ledger.tombstone(entry)], [p])
        else:
            ctx.commit(writes, [p])
            ctx.commit([ctx.ledger.tombstone(entry)], [p])
        if entry.input_file is not None:
            self.tracker.cleanup(None, entry.input_file, None)
        st = ctx.owned.get(p)
        if st is not None:
            st.remove(entry.job_id)
            for e in parts:
                st.add(Tracked(e, due=ctx.clock(), lookup=False))
        ctx.stats.jobs_split += 1
        log.info(
            "job split under the enqueued-token cap",
            job_id=entry.job_id,
            est_tokens=entry.est_tokens,
            parts=[e.job_id for e in parts],
        )

    def _yield_overlap(self, t: Tracked, found: dict[str, str]) -> bool:
        """A recovered INTENT, not found at the provider, whose offsets another live entry
        holds first (`recovery.overlapped`: a killed zombie's leftover) gives them up: its
        successor `j/o{n}` takes the rest, then its tombstone (one transaction in exactly-once
        mode). True when it did (nothing to create for `t`)."""
        ctx = self.ctx
        entry = t.entry
        p = entry.key.partition
        st = ctx.owned.get(p)
        if st is None:
            return False
        taken = recovery.overlapped(entry, [o.entry for o in st.jobs.values()], found)
        if t.held:  # held at the load by a created job, which may have ended since
            taken = Offsets(sorted({*taken, *(set(t.held) & set(entry.offsets))}))
        if not taken:
            return False
        gone = set(taken)
        rest = Offsets(o for o in entry.offsets if o not in gone)
        succ: LedgerEntry | None = None
        if rest:
            n = len(entry.offsets)
            tokens = entry.est_tokens * len(rest) // n
            succ = policy.derive(entry, f"/o{entry.attempt + 1}", rest, tokens, ctx.wall_ms())
        writes = [ctx.ledger.write(succ)] if succ is not None else []
        if ctx.settings.exactly_once:
            ctx.commit([*writes, ctx.ledger.tombstone(entry)], [p])
        else:
            if writes:
                ctx.commit(writes, [p])  # the successor before the parent's tombstone
            ctx.commit([ctx.ledger.tombstone(entry)], [p])
        if entry.input_file is not None:
            self.tracker.cleanup(None, entry.input_file, None)
        st.remove(entry.job_id)
        if succ is not None:
            st.add(Tracked(succ, due=ctx.clock(), lookup=False))
        log.warning(
            "recovered INTENT shares requests with another live job (a dropped replica's "
            "leftover); those left to it, not created twice",
            job_id=entry.job_id,
            shared=len(taken),
            successor=succ.job_id if succ is not None else None,
        )
        return True

    def _unclear(self, t: Tracked) -> None:
        """The create may have reached the server: look the job up before creating again,
        once any create of ours can no longer land (the server timeout from now)."""
        ctx = self.ctx
        t.lookup = True
        t.due = ctx.clock() + policy.unclear_create_delay(
            t.failures, ctx.rand.random(), ctx.settings.http_timeout_s
        )

    def _claim(self, t: Tracked, now: float) -> ClaimWindow | None:
        """Prove this replica still owns the job's partition, right before its create.

        One transaction: the INTENT again (headed `claimed_by`) and the partition's committed
        offset, which the group coordinator accepts only from the current generation. A
        replica the group dropped (a pass or a freeze past max.poll.interval.ms) gets
        `Fenced`, which propagates: it drops its partitions and creates nothing. A claim that
        took longer than `CLAIM_FRESH_S` is not trusted (the group may have moved on since);
        the job is claimed again next pass. Returns the window in which the create must
        start (checked again right before its request is written), or None.
        """
        ctx = self.ctx
        started = ctx.clock()
        window = ClaimWindow(started + CLAIM_FRESH_S, ctx.clock)
        if ctx.txn is None or ctx.consumer is None:
            return window  # wired without a transactional producer (tests of other stages)
        p = t.entry.key.partition
        claim = ctx.ledger.claim(t.entry, ctx.txn, ctx.txn.transactional_id)
        ctx.prove_ownership([p], [claim])
        if ctx.clock() > window.start_by:
            log.warning("claim took too long; claiming again next pass", job_id=t.entry.job_id)
            t.due = now
            return None
        return window

    def _keep(self, t: Tracked, input_file: str | None, kept: bool) -> None:
        """Keep an uploaded input file for the retry (a job that landed may read it).

        Recorded in the INTENT, so a crash keeps it too; it is deleted only with the job,
        or when the job is given up.
        """
        if input_file is None or kept:
            return
        ctx = self.ctx
        t.entry = replace(t.entry, input_file=input_file)
        p = t.entry.key.partition
        if ctx.settings.exactly_once or ctx.txn is None or ctx.consumer is None:
            ctx.commit([ctx.ledger.write(t.entry)], [p])
        else:
            # Fenced like a claim: a plain write from a replica the group dropped (stalled
            # past its claim, its create unsent or unclear) would land after the new owner
            # delivered and tombstoned the job and bring it back to be created again (sim
            # seed 3634).
            ctx.prove_ownership([p], [ctx.ledger.write(t.entry, ctx.txn)])

    def _submitted(self, t: Tracked, job: str, input_file: str | None) -> SendHandle:
        ctx = self.ctx
        t.entry = policy.submitted(t.entry, job, input_file, ctx.wall_ms())
        t.payload = None
        t.polls = 0
        t.failures = 0
        t.lookup = False
        t.due = ctx.clock() + ctx.retry.poll_initial_s
        if ctx.settings.exactly_once or ctx.txn is None or ctx.consumer is None:
            return ctx.ledger.write(t.entry)
        return ctx.ledger.write(t.entry, ctx.txn)  # committed with a proof (`_proven`)

    def _inputs(self, t: Tracked) -> list[JobInput] | None:
        """An inline job's requests with their correlation keys (from memory, or re-read by
        offset in chunks); unreadable ones get DATA_LOSS results at delivery.

        Requests whose deadline has passed leave the job with a 504 first (never paid for,
        never answered late); None when that leaves nothing and the job was retired.
        """
        events = list(job_events(t, self.ctx.reader))
        now_ms = self.ctx.wall_ms()
        gone = [(o, ev) for o, ev in events if deadline_passed(ev, now_ms)]
        if gone:
            if self._drop_late(t, gone):
                return None
            dropped = {o for o, _ in gone}
            events = [(o, ev) for o, ev in events if o not in dropped]
        return list(job_inputs(events))

    def _late_in_memory(self, t: Tracked) -> bool:
        """While an INTENT waits (for quota, or a lookup), its in-memory requests' deadlines
        are checked every pass: a late one is answered now, not when quota frees."""
        assert t.payload is not None
        now_ms = self.ctx.wall_ms()
        gone = [(r.offset, r.event) for r in t.payload if deadline_passed(r.event, now_ms)]
        return bool(gone) and self._drop_late(t, gone)

    def _drop_late(self, t: Tracked, gone: list[tuple[int, RequestEvent]]) -> bool:
        """Answer 504 for requests whose deadline passed before their job was created.

        All of them late: the job ends (`core.lifecycle.Late`). Else they leave the job
        (`Tracker.answered`: the INTENT without them and a DONE entry covering them, in the
        same transaction as their 504s in exactly-once mode). True when none is left and
        the entry is retired.
        """
        ctx = self.ctx
        entry = t.entry
        p = entry.key.partition
        ctx.stats.deadline_exceeded += len(gone)
        log.warning("deadline passed before submit", job_id=entry.job_id, requests=len(gone))
        error = late("while the request waited for its job to be created")
        dropped = {o for o, _ in gone}
        if all(o in dropped for o in entry.offsets):
            tr = self.tracker.apply(entry, lifecycle.Late(Offsets(sorted(dropped)), error))
            return tr.entry is None or tr.entry.state is EntryState.DONE
        now_ms = ctx.wall_ms()
        if t.payload is not None:
            keys = {r.offset: r.kafka_key for r in t.payload}
        else:
            found = ctx.reader.read(p, [o for o, _ in gone])
            keys = {o: orig.kafka_key for o, orig in found.items()}
        outgoing = [
            Outgoing(keys.get(o), replace(refused(ev, p, o, error, now_ms), attempt=entry.attempt))
            for o, ev in gone
        ]
        answers = [ctx.sink.result(o.kafka_key, o.result) for o in outgoing]
        self.tracker.answered(t, dropped, answers)
        if t.payload is not None:
            t.payload = tuple(r for r in t.payload if r.offset not in dropped)
        return False


@dataclass(slots=True)
class _Upload:
    """A file job's input JSONL going up to Gemini in the background."""

    entry: LedgerEntry
    """The INTENT it was spooled from."""
    future: Future[str]
    """The input file's name, or the upload's `ProviderError`."""

    @classmethod
    def start(
        cls, background: Executor, gemini: GeminiPort, entry: LedgerEntry, spool: IO[bytes]
    ) -> _Upload:
        """Upload `spool` in `background`; the spool is closed when the upload ends, however
        it ends (also cancelled, or after its job was dropped)."""
        try:
            future = background.submit(gemini.upload_file, spool, entry.display_name)
        except BaseException:
            spool.close()
            raise
        future.add_done_callback(lambda _: spool.close())
        return cls(entry, future)

    def serves(self, entry: LedgerEntry) -> bool:
        """Whether `entry` (owned now) is still the job this upload is for: the same INTENT,
        needing a new input file. Its input is the same (a job id names one set of requests;
        ones dropped since, as late, are ignored at delivery)."""
        return (
            entry.state is EntryState.INTENT
            and entry.display_name == self.entry.display_name
            and entry.input_file is None
            and policy.uses_file(entry)
        )

    def file(self) -> str | None:
        """The uploaded file, once the upload succeeded."""
        f = self.future
        if not f.done() or f.cancelled() or f.exception() is not None:
            return None
        return f.result()


@dataclass(slots=True)
class _Spooling:
    """A file job's input JSONL being written to a temporary file, a slice per pass."""

    entry: LedgerEntry
    """The INTENT it is written for: another entry under the job id starts over."""
    file: IO[bytes]
    items: Iterator[JobInput]
    count: int = 0

    @classmethod
    def start(cls, t: Tracked, reader: RequestReaderPort, file: IO[bytes]) -> _Spooling:
        return cls(t.entry, file, job_inputs(job_events(t, reader)))

    def write(self, clock: Callable[[], float], until: float) -> bool:
        """Append lines until `until` (checked every 1,000); True once all are written."""
        while True:
            batch = list(islice(self.items, 1_000))
            self.count += write_jsonl(batch, self.file)
            if len(batch) < 1_000:
                return True
            if clock() >= until:
                return False
