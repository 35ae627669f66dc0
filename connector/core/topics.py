"""Whether the sidecar may create its data topics, and how (pure).

The request, result and dead-letter topics belong to the platform: a missing one is most
often a typo, and creating it with broker defaults would leave the sidecar waiting forever
on an empty topic. So a missing one stops the start, naming it, unless
CONNECTOR_CREATE_TOPICS asks for creation with explicit partitions and replication. (The
ledger and control topics are the sidecar's own and are always managed by it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TopicPlan", "plan_topics"]


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What to do about missing data topics: create these, or refuse with `error`."""

    create: tuple[str, ...] = ()
    partitions: int = 0
    replication: int = 0
    error: str | None = None


def plan_topics(
    missing: Sequence[str], create: bool, partitions: int, replication: int, brokers: int
) -> TopicPlan:
    """`replication` 0 means min(3, brokers), as the ledger gets; more than the cluster's
    live brokers is refused here rather than by the broker's terser error."""
    if not missing:
        return TopicPlan()
    names = ", ".join(repr(t) for t in missing)
    if not create:
        return TopicPlan(
            error=f"topic{'s' if len(missing) > 1 else ''} {names} not found: create "
            f"{'them' if len(missing) > 1 else 'it'} (or fix the name), or set "
            "CONNECTOR_CREATE_TOPICS=true to have the sidecar create missing topics with "
            "CONNECTOR_TOPIC_PARTITIONS partitions and CONNECTOR_TOPIC_REPLICATION replicas"
        )
    rf = replication or max(1, min(3, brokers))
    if rf > brokers:
        return TopicPlan(
            error=f"CONNECTOR_TOPIC_REPLICATION={replication} but the cluster has {brokers} "
            f"live broker{'s' if brokers != 1 else ''}: cannot create {names}"
        )
    return TopicPlan(create=tuple(missing), partitions=partitions, replication=rf)
