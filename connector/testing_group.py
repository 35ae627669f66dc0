"""Faithful Kafka doubles where the sidecar's guarantees depend on them (see connector.testing).

`connector.testing`'s `ScriptedConsumer` lets a test script rebalances by hand; these model
what the broker decides, so a simulator can explore interleavings nobody scripted:

- `MemoryCluster`: one `MemoryKafka` plus what a broker adds around it: outages (every call
  raises `BrokerUnavailable` while `down`), a consumer group, and transactional-id epochs.
- `MemoryGroup`: a consumer group coordinator with member ids and generations. Joins,
  leaves, session timeouts and partitions added all rebalance (eager protocol, range
  assignor, as kafka-python does); an offset commit or a transactional offset commit from a
  stale generation or an expelled member is refused, as KIP-447 refuses it.
- `GroupConsumer`: a `ConsumerPort` member of a `MemoryGroup`. It learns of rebalances only
  when it polls (a member expelled while frozen still believes it owns its partitions);
  `isolated` cuts it off from the coordinator alone (fetching works, commits fail).
- `ClusterProducer`: a `TransactionalProducerPort` whose transactional id has an epoch: a
  newer producer with the same id fences the older (its commits raise what the real adapter
  raises); `crash()` loses every send not yet acked, and the open transaction.
- `outage_guarded`: wraps a ledger, reader or control double so its calls fail while the
  cluster is down.

`tests/contract/` runs the same cases against these and the real adapters on a real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connector.core.ports import RebalanceEvent
from connector.core.records import Record
from connector.errors import BrokerUnavailable, CommitFailed, ConfigError, Fenced, ProduceFailed
from connector.testing import MemoryKafka, RecordingProducer

T = TypeVar("T")

__all__ = [
    "ClusterProducer",
    "GroupConsumer",
    "GroupMeta",
    "MemoryCluster",
    "MemoryGroup",
    "outage_guarded",
]


@dataclass(frozen=True, slots=True)
class GroupMeta:
    """What `send_offsets_to_transaction` carries: the member and the generation it knew."""

    member_id: str
    generation: int


@dataclass(slots=True)
class _Member:
    last_seen: float
    assigned: set[int] = field(default_factory=set)
    events: list[RebalanceEvent] = field(default_factory=list)
    """Rebalance callbacks not yet delivered (they run inside the member's next poll)."""
    generation: int = -1
    """The generation this member was last told of (delivered with its events)."""


class MemoryGroup:
    """A consumer group coordinator for one topic: members, generations, assignments."""

    def __init__(self, kafka: MemoryKafka, topic: str, session_timeout_s: float = 10.0) -> None:
        self.kafka, self.topic, self.session_timeout_s = kafka, topic, session_timeout_s
        self.members: dict[str, _Member] = {}
        self.generation = 0
        self.rebalances = 0
        self._next_id = 0

    def partitions(self) -> int:
        return self.kafka.partitions.get(self.topic, 1)

    def join(self, now: float) -> str:
        """A new member (a consumer's first poll, or a rejoin after it was expelled)."""
        self._next_id += 1
        member_id = f"member-{self._next_id}"
        self.members[member_id] = _Member(last_seen=now)
        self.rebalance()
        return member_id

    def leave(self, member_id: str) -> None:
        """A clean leave (consumer close): its partitions move at once."""
        if self.members.pop(member_id, None) is not None:
            self.rebalance()

    def expel(self, member_id: str) -> None:
        """The coordinator drops a member (session timeout, or max.poll.interval.ms passed);
        the member is told nothing until it polls again."""
        self.leave(member_id)

    def heartbeat(self, member_id: str, now: float) -> None:
        m = self.members.get(member_id)
        if m is not None:
            m.last_seen = now

    def expire(self, now: float) -> list[str]:
        """Expel every member not heard from for longer than the session timeout."""
        gone = [m for m, st in self.members.items() if now - st.last_seen > self.session_timeout_s]
        for m in gone:
            self.members.pop(m)
        if gone:
            self.rebalance()
        return gone

    def add_partitions(self, total: int) -> None:
        """The topic grew to `total` partitions: the group leader notices and rebalances."""
        if total > self.partitions():
            self.kafka.partitions[self.topic] = total
            self.rebalance()

    def rebalance(self) -> None:
        """Eager rebalance, range assignor: every member's partitions are revoked, then the
        new assignment is handed out under a new generation."""
        self.generation += 1
        self.rebalances += 1
        ids = sorted(self.members, key=lambda m: int(m.rsplit("-", 1)[1]))
        n = self.partitions()
        share: dict[str, set[int]] = {m: set() for m in ids}
        for i, m in enumerate(ids):
            lo, hi = n * i // len(ids), n * (i + 1) // len(ids)
            share[m] = set(range(lo, hi))
        for m in ids:
            st = self.members[m]
            st.events.append(("revoked", set(st.assigned)))
            st.assigned = share[m]
            st.events.append(("assigned", set(share[m])))
            st.generation = self.generation

    def valid(self, meta: GroupMeta) -> bool:
        """Whether the coordinator accepts offsets from `meta` (member known, generation now)."""
        return meta.member_id in self.members and meta.generation == self.generation

    def owner(self, partition: int) -> str | None:
        for m, st in self.members.items():
            if partition in st.assigned:
                return m
        return None


class MemoryCluster:
    """A broker around `MemoryKafka`: outages, one consumer group, transactional epochs."""

    def __init__(self, kafka: MemoryKafka, topic: str, session_timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.group = MemoryGroup(kafka, topic, session_timeout_s)
        self.down = False
        """While true every call of the doubles raises `BrokerUnavailable` (produce: its ack
        fails)."""
        self.epochs: dict[str, int] = {}
        self.calls_refused = 0

    def check(self, what: str = "call") -> None:
        if self.down:
            self.calls_refused += 1
            raise BrokerUnavailable(f"{what}: no broker answered (simulated outage)")

    def init_transactions(self, transactional_id: str) -> int:
        """A producer with `transactional_id` starts: its epoch fences every earlier one."""
        self.check("init_transactions")
        epoch = self.epochs.get(transactional_id, -1) + 1
        self.epochs[transactional_id] = epoch
        return epoch


class GroupConsumer:
    """A `ConsumerPort` member of the cluster's group; learns of rebalances when it polls."""

    def __init__(
        self,
        cluster: MemoryCluster,
        topic: str,
        clock: Any = None,
        max_records: int = 500,
    ) -> None:
        self.cluster, self.topic, self.max_records = cluster, topic, max_records
        self.clock = clock or (lambda: 0.0)
        self.member_id: str | None = None
        self.generation = -1
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.positions: dict[int, int] = {}
        self.events: list[RebalanceEvent] = []
        self.commits: list[dict[int, int]] = []
        self.refused = 0
        """Commits refused for a stale generation."""
        self.isolated = False
        """Cut off from the group coordinator only (a partial network partition): fetches
        still work, so poll returns records of the assignment it last knew and learns of no
        rebalance; no heartbeat gets through; commits fail."""
        self.closed = False

    @property
    def group(self) -> MemoryGroup:
        return self.cluster.group

    def _sync(self) -> None:
        """What kafka-python's poll does before fetching: rejoin if expelled, run callbacks."""
        group = self.group
        if self.member_id is not None and self.member_id not in group.members:
            # Expelled while away: its partitions are lost (reported as revoked), then it
            # rejoins under a new member id.
            self.events.append(("revoked", set(self.assigned)))
            self.assigned = set()
            self.member_id = None
        if self.member_id is None:
            self.member_id = group.join(self.clock())
        m = group.members[self.member_id]
        m.last_seen = self.clock()
        for kind, parts in m.events:
            if kind == "revoked":
                self.assigned -= parts
            else:
                self.assigned |= parts
                for p in parts:
                    self.positions[p] = self._committed(p)
            self.events.append((kind, set(parts)))
        m.events.clear()
        self.generation = m.generation

    def _committed(self, p: int) -> int:
        return self.cluster.kafka.committed.get((self.topic, p), 0)

    def poll(self, timeout_s: float) -> list[Record]:
        self.cluster.check("poll")
        if not self.isolated:
            self._sync()
        kafka = self.cluster.kafka
        out: list[Record] = []
        for p in sorted(self.assigned - self.paused):
            log = kafka.logs.get((self.topic, p), [])
            pos = max(self.positions.get(p, 0), kafka.log_start.get((self.topic, p), 0))
            take = log[pos : pos + self.max_records - len(out)]
            out.extend(take)
            self.positions[p] = pos + len(take)
            if len(out) >= self.max_records:
                break
        return out

    def rebalance_events(self) -> list[RebalanceEvent]:
        events, self.events = self.events, []
        return events

    def meta(self) -> GroupMeta:
        return GroupMeta(self.member_id or "", self.generation)

    def commit(self, offsets: Mapping[int, int]) -> None:
        if not offsets:
            return
        self.cluster.check("commit")
        if self.isolated:
            raise CommitFailed("offset commit failed: the group coordinator is not available")
        if not self.group.valid(self.meta()):
            self.refused += 1
            raise CommitFailed(
                f"offset commit refused: generation {self.generation} of {self.member_id} "
                f"is stale (group at {self.group.generation})"
            )
        self.commits.append(dict(offsets))
        for p, o in offsets.items():
            self.cluster.kafka.committed[(self.topic, p)] = o

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        self.cluster.check("rewind")
        starts = {p: self._committed(p) for p in partitions}
        kafka = self.cluster.kafka
        for p, o in starts.items():
            self.positions[p] = max(o, kafka.log_start.get((self.topic, p), 0))
        return starts

    def assignment(self) -> set[int]:
        """What this member believes it owns (stale until its next poll, as in kafka-python)."""
        return set(self.assigned)

    def transaction_offsets(self, offsets: Mapping[int, int]) -> tuple[object, object]:
        if self.member_id is None:
            raise Fenced("not a member of the group: dropped, and not rejoined yet")
        return dict(offsets), self.meta()

    def pause(self, partitions: Iterable[int]) -> None:
        self.paused |= set(partitions)

    def resume_all(self) -> None:
        self.paused.clear()

    def resume(self, partitions: Iterable[int]) -> None:
        self.paused -= set(partitions)

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset

    def close(self) -> None:
        """A clean leave: the group rebalances now, not after the session timeout."""
        if self.member_id is not None and not self.closed:
            self.group.leave(self.member_id)
        self.closed = True
        self.assigned.clear()


class ClusterProducer(RecordingProducer):
    """A `RecordingProducer` on a `MemoryCluster`: outages fail acks, epochs fence, a crash
    loses what was not acked."""

    def __init__(self, cluster: MemoryCluster, transactional_id: str | None = None) -> None:
        super().__init__(cluster.kafka, transactional_id)
        self.cluster = cluster
        self.epoch = cluster.init_transactions(transactional_id) if transactional_id else -1
        self.fenced = 0
        """Transactions refused for a stale generation."""
        self.hook: Callable[[str], None] | None = None
        """Called with the method's name at the start of `flush_and_check` and
        `commit_transaction`: where a simulator lets the world move on mid-pass."""
        self._stale = False
        """Fenced by a newer epoch: renewed (a new epoch, fencing the other) at next use."""
        self._fenced_again = False
        """Fenced once already: a second fencing means a shared id (the adapters: within
        a minute; this double has no clock, and a simulated process lives less)."""

    def _fresh(self) -> None:
        if self._stale and self.transactional_id:
            self.epoch = self.cluster.init_transactions(self.transactional_id)
            self._stale = False

    def begin_transaction(self) -> None:
        self._fresh()
        super().begin_transaction()

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self._fresh()
        return super().send(*args, **kwargs)

    def fenced_by_epoch(self) -> bool:
        return bool(self.transactional_id) and (
            self.cluster.epochs.get(self.transactional_id, -1) != self.epoch
        )

    def flush_and_check(self, sent: Sequence[Any], timeout_s: float = 60.0) -> None:
        if self.hook is not None and self.pending:
            self.hook("flush_and_check")
        if self.cluster.down and self.pending:
            for h in self.pending:
                h.done, h.exc = True, BrokerUnavailable("no broker answered (simulated outage)")
            self.pending = []
        super().flush_and_check(sent, timeout_s)

    def commit_transaction(
        self, sent: Sequence[Any], offsets: Mapping[int, int], consumer: Any
    ) -> None:
        assert self.transactional_id, "not a transactional producer"
        if self.hook is not None:
            self.hook("commit_transaction")
        self._fresh()
        if self.fenced_by_epoch():
            # As the real adapters report it (tests/contract): `Fenced`, and the producer is
            # renewed at its next use; fenced a second time, the id is shared: `ConfigError`.
            sends, self.pending, self.in_transaction = self.pending or self.in_transaction, [], []
            for h in sends:
                h.done, h.exc = True, ProduceFailed("ProducerFencedError")
            self._stale = True
            if self._fenced_again:
                raise ConfigError(
                    f"transactional.id {self.transactional_id!r} is used by another producer"
                )
            self._fenced_again = True
            raise Fenced("producer fenced (transaction timed out, or the id was taken)")
        try:
            self.cluster.check("commit_transaction")
            self.flush_and_check(sent)
        except (ProduceFailed, BrokerUnavailable) as exc:
            self._abort()
            raise ProduceFailed(f"transaction failed and was aborted: {exc!r}") from exc
        if offsets and getattr(consumer, "isolated", False):
            self._abort()
            raise BrokerUnavailable("send_offsets_to_transaction: no group coordinator")
        if offsets:
            tps, meta = consumer.transaction_offsets(offsets)
            group = self.cluster.group
            if not isinstance(meta, GroupMeta) or not group.valid(meta):
                self.fenced += 1
                self._abort()
                raise Fenced(f"transaction refused, group generation is stale: {meta!r}")
            for p, o in tps.items():
                self.kafka.committed[(consumer.topic, p)] = o
        for h in self.in_transaction:
            h.record = self.kafka.append(h.topic, h.value, h.key, h.headers, h.partition)
        self.in_transaction = []
        self.commits += 1

    def crash(self) -> None:
        """The process dies: sends not acked and the open transaction are lost."""
        self.pending = []
        self.in_transaction = []


class _Guarded:
    """Forwards calls to `target`, checking the cluster is up before those in `methods`."""

    def __init__(self, target: Any, cluster: MemoryCluster, methods: frozenset[str]) -> None:
        self._target, self._cluster, self._methods = target, cluster, methods

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name not in self._methods:
            return attr
        cluster = self._cluster

        def call(*args: Any, **kwargs: Any) -> Any:
            cluster.check(name)
            return attr(*args, **kwargs)

        return call


def outage_guarded(target: T, cluster: MemoryCluster, *methods: str) -> T:
    """`target` (a ledger, reader or control double) whose `methods` fail during an outage
    (the reads: sends fail at their ack, as with the real producer)."""
    guarded: T = _Guarded(target, cluster, frozenset(methods))  # type: ignore[assignment]
    return guarded
