"""The one partition lifecycle: assign, revoke, lose, fence, and rebuild after an outage.

Every way this replica takes partitions on goes through `take_over` (recover from the
ledger, rewind to the group's committed offset, so every claim is fenced by the group
generation), and every way it lets them go goes through `let_go` (retract this replica's
fresh INTENTs, or remember them while Kafka is failing). The runner calls
`apply_rebalance` once per pass after the poll, `fenced` when the group refused a
transaction, `forget_partitions` after a Kafka failure and `rebuild_partitions` when
Kafka answers again; the steps hear of each change through `on_assigned`/`on_revoked`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import structlog

from connector.config import Settings
from connector.core import policy
from connector.core.batcher import Batcher
from connector.core.partitions import PartitionState, Stats, Tracked
from connector.core.ports import ConsumerPort
from connector.core.quota import Budget, share
from connector.core.records import EntryState, LedgerEntry, Record
from connector.core.recovery import overlapped, passed_by, plan_recovery, to_retract
from connector.core.watermark import Watermark
from connector.errors import Fenced
from connector.stages import epochs
from connector.stages.context import Context
from connector.stages.step import Step

log = structlog.get_logger("connector")


class Ownership:
    """Which partitions this replica owns, and the one path by which that changes."""

    def __init__(
        self,
        settings: Settings,
        ctx: Context,
        consumer: ConsumerPort,
        batcher: Batcher,
        stats: Stats,
        clock: Callable[[], float],
        project_budget: Budget,
        total_partitions: int,
        grow_ledger: Callable[[], None] | None = None,
        resumed: Callable[[], None] = lambda: None,
    ) -> None:
        self.s = settings
        self.ctx = ctx
        self.consumer = consumer
        self.batcher = batcher
        self.stats = stats
        self.clock = clock
        self.project_budget = project_budget
        self.budget = project_budget
        self.total_partitions = total_partitions
        self.grow_ledger = grow_ledger
        self.resumed = resumed
        """Called after a rebalance changed the assignment: resume what flow control and
        the registry holds paused, and decide again."""
        self.steps: Sequence[Step] = ()
        """Told of every partition let go (`on_revoked`) and taken on (`on_assigned`)."""
        self.resync = False
        """A Kafka failure dropped every partition: rebuild them before the next pass."""
        self.fresh: dict[int, dict[str, LedgerEntry]] = {}
        """Per partition forgotten after a Kafka failure: the INTENTs it would have retracted."""

    def apply(self, records: list[Record]) -> list[Record]:
        """Apply the partition changes the poll queued; return the records still to take."""
        rewound = self.apply_rebalance({r.partition for r in records})
        if rewound:
            # Fetched before the rewind: these come again from the committed offset.
            records = [r for r in records if r.partition not in rewound]
        return records

    def apply_rebalance(self, fetched: set[int]) -> set[int]:
        """Apply queued partition changes; return the partitions (re)started, and rewound.

        `fetched` are the partitions of the records just polled: one we hold records of
        but have no state for is treated as newly assigned, never silently skipped.
        """
        owned = self.ctx.owned
        changed = False
        assigned: set[int] = set()
        for kind, partitions in self.consumer.rebalance_events():
            changed = True
            if kind == "revoked":
                self.let_go(partitions)
                # Dropped by an assignment or an outage before, not rebuilt since.
                self.retract_lost({p: self.fresh.pop(p) for p in partitions & set(self.fresh)})
                assigned -= partitions
                log.info("partitions revoked", partitions=sorted(partitions))
            else:
                # Assigned again without a revocation: recovered afresh, its fresh INTENTs
                # still this replica's own.
                self.let_go(partitions & set(owned), write=False)
                assigned |= partitions
                log.info("partitions assigned", partitions=sorted(partitions))
        stray = fetched - set(owned) - assigned
        if stray and (stray := stray & self.consumer.assignment()):
            log.warning(
                "records of a partition without state; recovering it", partitions=sorted(stray)
            )
            assigned |= stray
        if assigned:
            self.take_over(assigned)
        if changed:
            # kafka-python keeps the paused flag of partitions retained through a rebalance:
            # resume everything (but partitions waiting for the registry) and decide again.
            self.resumed()
        return assigned

    # -- the one ownership path ----------------------------------------------------------

    def take_over(self, partitions: set[int]) -> None:
        """The one way this replica takes partitions on: assigned, records of a partition
        without state, or rebuilt after a Kafka failure.

        Each is recovered from its ledger, then rewound: the watermark and the committed
        offset start at the group's committed offset. Every claim re-commits that offset in
        its transaction, so the group checks this replica still owns the partition before
        any create or delete (left unset, the claim would carry no offset and prove
        nothing: a replica dropped during an outage would create its stale jobs).
        """
        owned = self.ctx.owned
        self.ensure_ledger_partitions(partitions)
        for p in sorted(partitions):
            self.recover(p)
        passed: list[LedgerEntry] = []
        for p, start in self.consumer.rewind(partitions).items():
            owned[p].watermark = Watermark(start)
            owned[p].committed = start
            if not self.s.exactly_once:
                passed.extend(passed_by(list(owned[p].jobs.values()), start))
        if passed:  # another owner batched and committed those records itself
            for e in passed:
                owned.remove_job(e)
            self.tombstone_intents(passed)
        try:  # before any offset is committed (see `stages.epochs`)
            self.tombstone_intents(epochs.stamp(self.ctx, partitions & set(owned)))
        except Fenced as exc:  # the group moved on: every partition is lost, not only these
            self.fenced(exc)
            return
        self.budget = share(self.project_budget, len(owned), self.total_partitions)
        for step in self.steps:
            step.on_assigned(partitions)

    def let_go(self, partitions: Iterable[int], write: bool = True, retract: bool = True) -> None:
        """The one way partitions are let go: revoked, lost, fenced, or forgotten after a
        Kafka failure (`write` False: nothing can be written, so the INTENTs to retract are
        remembered and come back retractable if the partition is rebuilt; `retract` False:
        fenced, the group moved on already, so nothing is retracted or remembered)."""
        owned = self.ctx.owned
        gone = [p for p in partitions if p in owned]
        if not retract:
            for p in gone:
                self.fresh.pop(p, None)
        elif write:
            self.retract(gone)
        else:
            self.fresh.update(
                (p, {e.job_id: e for e in to_retract(owned[p].jobs.values(), owned[p].committed)})
                for p in gone
            )
        for p in partitions:
            self.batcher.drop_partition(p)
            owned.pop(p, None)
            if self.ctx.sidelog is not None:
                self.ctx.sidelog.drop(p)
        for step in self.steps:
            step.on_revoked(partitions)
        self.budget = share(self.project_budget, len(owned), self.total_partitions)

    def ensure_ledger_partitions(self, partitions: set[int]) -> None:
        """A request partition beyond those known at start (the topic grew): grow the ledger
        before its jobs are loaded or written there."""
        need = max(partitions, default=-1) + 1
        if need <= self.total_partitions:
            return
        log.warning("request topic grew", partitions=need, before=self.total_partitions)
        if self.grow_ledger is not None:
            self.grow_ledger()
        self.total_partitions = need

    def recover(self, p: int) -> None:
        """Rebuild partition p from its ledger before any of its records is processed."""
        ctx = self.ctx
        self.batcher.drop_partition(p)
        plan = plan_recovery(
            ctx.ledger.load(p),
            self.clock(),
            policy.recovered_lookup_delay(self.s.http_timeout_s),
            self.s.request_topic,
        )
        if plan.foreign:
            self.stats.ledger_foreign_entries += len(plan.foreign)
            log.error(
                "ledger entries of another request topic skipped: two deployments share "
                "this ledger; give each its own CONNECTOR_LEDGER_TOPIC",
                partition=p,
                ledger=self.s.ledger,
                request_topic=self.s.request_topic,
                foreign_topics=sorted({e.request_topic for e in plan.foreign}),
                entries=len(plan.foreign),
            )
        # Not fenced by offsets here (the partition's are not known before the rewind);
        # a tombstone of a superseded parent is safe to repeat.
        ctx.commit([ctx.ledger.tombstone(e) for e in plan.tombstones], ())
        st = PartitionState()
        mine = self.fresh.pop(p, {})
        created = [r.entry for r in plan.resume if r.entry.state is not EntryState.INTENT]
        for r in plan.resume:
            fresh = mine.get(r.entry.job_id) == r.entry
            # What a created job holds now, remembered for the INTENT's lookup: by then
            # that job may have ended and left (sim seed 51383).
            held = tuple(overlapped(r.entry, created)) if r.lookup else ()
            st.add(Tracked(r.entry, due=r.due, lookup=r.lookup, fresh=fresh, held=held))
        ctx.owned[p] = st
        if plan.resume:
            log.info(
                "recovered jobs from ledger",
                partition=p,
                intents=plan.intents,
                submitted=plan.submitted,
                done=plan.done,
                superseded=len(plan.tombstones),
            )

    def fenced(self, exc: Fenced) -> None:
        """The group refused a transaction: it moved on without this replica (a pass or a
        freeze outlived max.poll.interval.ms). Forget every partition, create nothing; the
        consumer rejoins on its next poll and the assignment it gets is recovered afresh."""
        dropped = sorted(self.ctx.owned)
        # Nothing retracted: the group gave these partitions away before this refusal, and
        # a new owner that loaded an INTENT of ours committed past its offsets (a live
        # entry held them); a tombstone now, landing after that load, leaves the requests
        # in no entry if that owner loses the partition before creating it (sim seed 3954:
        # never answered). Kept, whoever owns the partition looks the INTENT up and creates
        # it; one that landed after the owner's load is `recovery.overlapped`'s case.
        self.let_go(dropped, retract=False)
        self.stats.fenced += 1
        log.warning(
            "fenced: this replica no longer owns its partitions; dropped them, created nothing",
            partitions=dropped,
            error=str(exc),
        )

    def retract(self, partitions: Iterable[int]) -> None:
        """Take back the uncommitted, never-created INTENTs of partitions being lost.

        At-least-once only: in exactly-once mode such INTENTs were in a transaction that was
        aborted or committed together with their offsets. The new owner reads those requests
        again and batches them itself; see `recovery.to_retract` for why and what stays.

        Only those the ledger still holds as this replica wrote them (`retract_lost`): a
        member expelled while it stalled learns it here, at its next poll, as a revocation,
        and a new owner may have loaded its INTENT and committed past its offsets meanwhile;
        that owner re-stamped it at its take-over (`stages.epochs`, before any commit), so
        the ledger's copy is not this one any more, and it stays: tombstoned, it was the only
        record of those requests (sim seed 8099 on the revocation path, seed 3954's sibling).
        """
        ctx = self.ctx
        self.retract_lost(
            {
                p: {e.job_id: e for e in to_retract(st.jobs.values(), st.committed)}
                for p in partitions
                if (st := ctx.owned.get(p)) is not None
            }
        )

    def retract_lost(self, remembered: dict[int, dict[str, LedgerEntry]]) -> None:
        """Retract the INTENTs of partitions lost (revoked, or lost while Kafka was failing:
        forgotten, then not assigned any more): only those the ledger still holds exactly as
        this replica wrote them (a new owner that moved one on, re-stamped at its take-over,
        adopted or created, keeps it)."""
        if self.s.exactly_once or not any(remembered.values()):
            return
        gone: list[LedgerEntry] = []
        for p, mine in remembered.items():
            if mine:
                live = self.ctx.ledger.load(p)
                gone.extend(e for e in mine.values() if live.get(e.job_id) == e)
        self.tombstone_intents(gone)

    def tombstone_intents(self, gone: list[LedgerEntry]) -> None:
        if self.s.exactly_once or not gone:
            return
        ctx = self.ctx
        ctx.producer.flush_and_check([ctx.ledger.tombstone(e) for e in gone])
        self.stats.intents_retracted += len(gone)
        log.warning(
            "retracted INTENTs of lost partitions (never committed, never created); the new "
            "owner batches those requests itself",
            jobs=[e.job_id for e in gone],
        )

    def forget_partitions(self) -> None:
        """Drop what this pass may have left half done; `rebuild_partitions` redoes it.

        Kafka is failing, so nothing is written here: the INTENTs a revocation would
        retract are remembered instead, and come back retractable when rebuilt (`recover`).
        """
        self.let_go(list(self.ctx.owned), write=False)
        self.resync = True

    def rebuild_partitions(self) -> None:
        """Recover every assigned partition from its ledger and committed offset: the same
        ownership path as an assignment (`take_over`), so claims are fenced again."""
        assigned = self.consumer.assignment()
        self.take_over(assigned)
        lost, self.fresh = self.fresh, {}
        self.retract_lost(lost)
        self.resync = False
        log.info("partitions rebuilt after a Kafka failure", partitions=sorted(assigned))
