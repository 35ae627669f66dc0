"""Take-over epochs (at-least-once): how a new owner tells a stale replica's late INTENT from
one it loaded itself (`core.recovery.landed_late`, sim seed 876).

Exactly-once needs none of it: there an INTENT is written in a transaction with its offsets,
which the group refuses from a stale member, so it never lands late.
"""

from __future__ import annotations

from collections.abc import Collection

import structlog

from connector.core.records import LedgerEntry
from connector.core.recovery import plan_epoch
from connector.stages.context import Context

log = structlog.get_logger("connector")


def stamp(ctx: Context, partitions: Collection[int]) -> list[LedgerEntry]:
    """Give each partition just taken over its epoch, before any of its offsets is committed;
    return the late INTENTs taken out of `ctx.owned` (the caller tombstones them).

    One transaction fenced with the partitions' committed offsets (`prove_ownership`, like a
    claim): each partition's take-over marker and each INTENT it loaded, written again at
    the new epoch. So only a real owner re-stamps, and an INTENT a stale replica lands after
    this (its epoch is below the marker) is recognised by whoever recovers the partition
    next. `Fenced` propagates: the group moved on, nothing was written. The INTENTs this
    replica seals from then on carry the new epoch (`PartitionState.epoch`).
    """
    if ctx.settings.exactly_once or ctx.txn is None or ctx.consumer is None or not partitions:
        return []
    topic = ctx.settings.request_topic
    now_ms = ctx.wall_ms()
    sends = []
    late: list[LedgerEntry] = []
    restamped: list[LedgerEntry] = []
    epochs: dict[int, int] = {}
    for p in sorted(partitions):
        st = ctx.owned[p]
        plan = plan_epoch(
            [t.entry for t in st.jobs.values()], st.committed, ctx.ledger.marked(p, topic), now_ms
        )
        sends.append(ctx.ledger.mark(p, topic, plan.epoch, ctx.txn))
        sends.extend(ctx.ledger.write_stamped(e, plan.epoch, ctx.txn) for e in plan.restamp)
        late.extend(plan.retract)
        restamped.extend(plan.restamp)
        epochs[p] = plan.epoch
    ctx.prove_ownership(partitions, sends)
    for p, epoch in epochs.items():
        ctx.owned[p].epoch = epoch
    for e in restamped:
        ctx.owned[e.key.partition].jobs[e.job_id].entry = e
    for e in late:
        ctx.owned.remove_job(e)
    if late:
        log.warning(
            "INTENTs of a stale replica: their requests were batched by a later owner, or "
            "are held by a created job; retracting them instead of creating them",
            jobs=[e.job_id for e in late],
        )
    return late
