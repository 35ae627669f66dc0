"""The simulated world: replicas (real `Sidecar`s) on the faithful Kafka doubles, the
in-process emulator, one manual clock, and the hooks through which faults reach a replica
in the middle of a pass."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.formats import RequestDecoder
from connector.core.records import EntryState
from connector.errors import ClaimExpired
from connector.runner import Ports, Sidecar
from connector.stages.sink import Limits
from connector.testing import (
    InProcessEmulator,
    ManualClock,
    MemoryControl,
    MemoryKafka,
    MemoryLedger,
    MemoryReader,
    emulated_gemini,
)
from connector.testing_group import ClusterProducer, GroupConsumer, MemoryCluster, outage_guarded


class _Routed(InProcessEmulator):
    """An emulator front whose back end can be swapped: building a google-genai client
    costs ~0.3 s (it loads the CA bundle), so one client serves every seed of a process."""

    def __init__(self) -> None:
        self.current: InProcessEmulator | None = None
        self.transport = httpx2.MockTransport(self._route)

    def _route(self, request: httpx2.Request) -> httpx2.Response:
        assert self.current is not None
        return self.current._handle(request)


_ROUTED = _Routed()
_GEMINI: list[Any] = []


def warm_gemini() -> None:
    """Build this process's client before any world exists: built inside a seed's first
    replica, it made that one seed run differently from its replay in a warm process."""
    if not _GEMINI:
        _GEMINI.append(emulated_gemini(_ROUTED)[0])


def shared_gemini(emulator: InProcessEmulator) -> Any:
    """The real adapter and SDK of this process, now talking to `emulator`."""
    warm_gemini()
    _ROUTED.current = emulator
    return _GEMINI[0]


def _job_id(display_name: str) -> str:
    return display_name.split(":", 1)[-1]


class Killed(BaseException):
    """Raised inside a replica's call to end its process there (not an `Exception`, so no
    handler of the sidecar catches it, as none survives a SIGKILL)."""


HOOKED = ("create", "get", "delete_job", "cancel", "download_to", "upload_jsonl", "delete_file")
"""Provider calls at which a fault may strike a replica mid-pass (before or after)."""
KAFKA_HOOKED = ("flush_and_check", "commit_transaction")
"""Kafka calls at which a fault may strike (before only: a kill there loses the sends)."""


class _HookedGemini:
    """The replica's provider port: every hooked call first (and after) asks the world."""

    def __init__(self, target: Any, world: World, replica: Replica) -> None:
        self._target, self._world, self._replica = target, world, replica

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in HOOKED:
            return attr
        world, replica = self._world, self._replica

        def call(*args: Any, **kwargs: Any) -> Any:
            world.hook(replica, name, "before", args)
            try:
                out = attr(*args, **kwargs)
            except ClaimExpired as exc:
                world.log(f"{replica.name} {name} not sent: {exc}")
                raise
            if name == "create":
                world.created[str(out)] = (replica.name, _job_id(str(args[2])), len(world.trace))
            world.hook(replica, name, "after")
            return out

        return call


class _TracedLedger:
    """The replica's ledger port: every write, claim, tombstone and load is noted in the
    trace (who wrote what, plain or transactional), the evidence a lost or twice-paid
    request needs."""

    def __init__(self, target: MemoryLedger, world: World, name: str) -> None:
        self._target, self._world, self._name = target, world, name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def _how(self, producer: Any) -> str:
        """ "txn": through a transactional producer (exactly-once, every write is)."""
        if producer is None or producer is self._target.producer:
            producer = self._target.producer
        return "txn" if getattr(producer, "transactional_id", "") else "plain"

    def _note(self, what: str, entry: Any, producer: Any = None) -> None:
        how = self._how(producer)
        self._world.log(
            f"{self._name} ledger {what} {entry.job_id} {entry.state.value} "
            f"offsets={list(entry.offsets)} ({how})"
        )

    def write(self, entry: Any, producer: Any = None) -> Any:
        self._note("write", entry, producer)
        return self._target.write(entry, producer)

    def claim(self, entry: Any, producer: Any, by: str) -> Any:
        self._note("claim", entry, producer)
        return self._target.claim(entry, producer, by)

    def tombstone(self, entry: Any, producer: Any = None) -> Any:
        how = self._how(producer)
        self._world.log(f"{self._name} ledger tombstone {entry.job_id} ({how})")
        return self._target.tombstone(entry, producer)

    def load(self, partition: int) -> Any:
        live = self._target.load(partition)
        self._world.log(
            f"{self._name} ledger load p{partition}: "
            + (
                ", ".join(
                    f"{k} {e.state.value} {list(e.offsets)}"
                    + (f" cursor {e.delivered.scanned}" if e.delivered is not None else "")
                    for k, e in live.items()
                )
                or "empty"
            )
        )
        return live


@dataclass
class Replica:
    name: str
    slot: int
    sidecar: Sidecar
    consumer: GroupConsumer
    producer: ClusterProducer
    txn: ClusterProducer
    up: bool = True
    backoff_until: float = 0.0
    armed: list[tuple[str, str, str]] = field(default_factory=list)
    """Faults waiting for this replica's next hooked call: (fault, call, when)."""


@dataclass
class World:
    settings: Settings
    clock: ManualClock
    kafka: MemoryKafka
    cluster: MemoryCluster
    emulator: InProcessEmulator
    rng: random.Random
    trace: list[str]
    codec: Codec = field(default_factory=Codec)
    replicas: list[Replica] = field(default_factory=list)
    result_bytes: int = 1_048_576
    incarnations: int = 0
    zombie_calls: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    """(replica, call, job id, its committed offset) of creates and deletes by non-owners."""
    deleted: set[str] = field(default_factory=set)
    """Display names of jobs a third party deleted at the provider (the 404 fault)."""
    created: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """Jobs created at the provider: `batches/ID` -> (replica, job id, trace length then)."""
    intents: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Job id -> (replica, trace length) of its INTENT's first write to reach the ledger."""
    kafka_failures: list[tuple[str, int]] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    """Offsets a replica held in a live entry but would batch again (not covered), noted
    after each pass: the state behind a re-batch, caught before it reaches the provider."""
    """(replica, trace length) of each pass that failed on Kafka: the replica forgets its
    partitions, then rebuilds them from the ledger."""
    acting: list[Replica] = field(default_factory=list)
    """The replica whose pass is running (innermost last: a freeze runs others' passes)."""
    in_hook: bool = False
    on_freeze: Callable[[World, Replica], None] | None = None
    on_rebalance: Callable[[World, Replica], None] | None = None
    after_pass: list[tuple[Replica, Callable[[], None]]] = field(default_factory=list)
    """What waits for a replica's pass to end (a rebalance it must rejoin to complete)."""

    def __post_init__(self) -> None:
        append = self.kafka.append

        def logged(topic: str, value: bytes | None, *a: Any, **kw: Any) -> Any:
            rec = append(topic, value, *a, **kw)
            key = a[0] if a else kw.get("key")
            if topic == self.settings.ledger and key is not None:
                self._ledger_landed(key.decode(), value)
            elif topic == self.settings.result_topic and value is not None:
                result = self.codec.decode_result(value)
                who = self.acting[-1].name if self.acting else "?"
                self.log(f"{who} result {result.request_id} {result.status.value} landed")
            return rec

        self.kafka.append = logged  # type: ignore[method-assign]

    def log(self, text: str) -> None:
        self.trace.append(f"t={self.clock.now - 1000:8.1f} {text}")

    def _ledger_landed(self, job_id: str, value: bytes | None) -> None:
        """Trace the ledger writes that tell who holds which requests: an INTENT's first
        write and the tombstone of an INTENT never created (a retraction or a give-way)."""
        who = self.acting[-1].name if self.acting else "?"
        if value is None:
            if job_id in self.intents and job_id not in {j for _, j, _ in self.created.values()}:
                self.log(f"{who} ledger: tombstones {job_id} (never created)")
            return
        entry = self.codec.decode_ledger(value)
        if entry.delivered is not None:
            self.log(f"{who} ledger: {job_id} landed with cursor {entry.delivered.scanned}")
        if entry.state is EntryState.INTENT and job_id not in self.intents:
            self.intents[job_id] = (who, len(self.trace))
            self.log(f"{who} ledger: INTENT {job_id} offsets {list(entry.offsets)}")

    # -- replicas ------------------------------------------------------------------------

    def start(self, slot: int) -> Replica:
        """A fresh process for `slot` (a StatefulSet pod: its transactional id is stable,
        so a restart fences its previous incarnation)."""
        self.incarnations += 1
        s = replace(self.settings, transactional_id=f"sim.{slot}")
        txn = ClusterProducer(self.cluster, transactional_id=s.transactional_id)
        producer = txn if s.exactly_once else ClusterProducer(self.cluster)
        consumer = GroupConsumer(self.cluster, s.request_topic, clock=self.clock)
        codec = self.codec
        ledger = MemoryLedger(self.kafka, s.ledger, producer, codec)
        reader = MemoryReader(
            self.kafka, s.request_topic, codec, RequestDecoder(codec, None).decode
        )
        control = MemoryControl(self.kafka, s.control, producer)
        gemini = shared_gemini(self.emulator)
        name = f"r{slot}.{self.incarnations}"
        traced = _TracedLedger(ledger, self, name)
        sidecar = Sidecar(s, gemini, codec=codec, clock=self.clock, wall_ms=self.clock.wall_ms)
        replica = Replica(name, slot, sidecar, consumer, producer, txn)
        sidecar.gemini = _HookedGemini(sidecar.gemini, self, replica)
        for port in {id(txn): txn, id(producer): producer}.values():
            port.hook = lambda call, r=replica: self.hook(r, call, "before")
        commit = txn.commit_transaction

        def traced_commit(sent: Any, offsets: Any, consumer: Any) -> None:
            """Notes each transaction that carries records: committed or aborted, with
            the offsets and the generation it was fenced with (the group's in brackets)."""
            n = len(txn.pending) + len(txn.in_transaction)
            gen = f"generation {consumer.generation} [{self.cluster.group.generation}]"
            what = f"{name} transaction of {n} records, offsets {dict(offsets)}, {gen}"
            try:
                commit(sent, offsets, consumer)
            except Exception as exc:
                if n:
                    self.log(f"{what}: aborted ({type(exc).__name__})")
                raise
            if n:
                self.log(f"{what}: committed")

        txn.commit_transaction = traced_commit  # type: ignore[method-assign]
        sidecar.limits = Limits(result_bytes=self.result_bytes)
        sidecar.attach(
            Ports(
                consumer,
                producer,
                outage_guarded(traced, self.cluster, "load"),
                outage_guarded(reader, self.cluster, "read"),
                total_partitions=self.kafka.partitions[s.request_topic],
                txn=txn,
                control=outage_guarded(control, self.cluster, "poll"),
            )
        )
        sidecar.ctx.rand = random.Random(self.rng.getrandbits(32))
        nonce_rng = random.Random(self.rng.getrandbits(32))
        sidecar.intake.nonce = lambda: f"{nonce_rng.getrandbits(32):08x}"
        self.replicas.append(replica)
        self.log(f"start {name}")
        return replica

    def member_name(self, member_id: str) -> str:
        for r in self.replicas:
            if r.consumer.member_id == member_id:
                return f"{r.name} ({member_id})"
        return member_id

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.up]

    def kill(self, r: Replica, where: str = "between passes") -> None:
        """SIGKILL: unacked sends and the open transaction are lost; the group keeps the
        member until its session times out."""
        r.up = False
        r.producer.crash()
        r.txn.crash()
        self.log(f"kill {r.name} {where}")

    def step(self, r: Replica) -> None:
        """One loop pass of `r`, as `Sidecar.loop` runs it (a back-off skips passes)."""
        if not r.up or self.clock.now < r.backoff_until:
            return
        try:
            self._pass(r)
        finally:
            waiting = [fn for who, fn in self.after_pass if who is r]
            self.after_pass = [(who, fn) for who, fn in self.after_pass if who is not r]
            for fn in waiting:
                fn()

    def _pass(self, r: Replica) -> None:
        refused, fenced = r.consumer.refused, r.txn.fenced
        self.acting.append(r)
        try:
            delay = r.sidecar.guarded_step()
        except Killed:
            return
        except Exception as exc:  # the process dies; the orchestrator restarts it
            self.log(f"crash {r.name}: {exc!r}")
            self.kill(r, "by its own exception")
            return
        finally:
            self.acting.pop()
            if r.consumer.refused > refused:
                self.log(f"{r.name}: offset commit refused (stale generation)")
            if r.txn.fenced > fenced:
                self.log(f"{r.name}: transaction fenced (stale generation)")
        self._check_covered(r)
        if delay is not None:
            r.backoff_until = self.clock.now + delay
            self.kafka_failures.append((r.name, len(self.trace)))
            self.log(f"{r.name}: Kafka failed; backs off {delay:.1f} s, then rebuilds")

    def _check_covered(self, r: Replica) -> None:
        """Every offset a live entry of `r` holds is covered: intake never batches it again
        (the short chaos run's re-batch after a take-over, 7009945)."""
        for p, st in r.sidecar.ctx.owned.items():
            held = {o for t in st.jobs.values() for o in t.entry.offsets}
            missing = sorted(o for o in held if o not in st.covered)
            if missing:
                note = f"{r.name} p{p}: offsets {missing[:8]} held by live entries, not covered"
                self.uncovered.append(note)
                self.log(note)

    def advance(self, seconds: float) -> None:
        """Time passes: live members heartbeat (kafka-python's heartbeat thread), dead ones
        time out."""
        for r in self.live():
            if (
                r.consumer.member_id is not None
                and not self.cluster.down
                and not r.consumer.isolated
            ):
                self.cluster.group.heartbeat(r.consumer.member_id, self.clock.now)
        self.clock.advance(seconds)
        self.emulator.advance_clock(seconds)
        if not self.cluster.down:
            for gone in self.cluster.group.expire(self.clock.now):
                self.log(f"group expels {self.member_name(gone)} (session timeout)")

    # -- faults inside a pass ------------------------------------------------------------

    def _check_owner(self, r: Replica, call: str, args: tuple[Any, ...]) -> None:
        """Note a create or delete by a replica the group no longer gives that partition:
        the evidence that tells findings A1 (after an outage) and A3 (a zombie) apart."""
        if call == "create":
            display = str(args[2]) if len(args) > 2 else ""
        else:
            jobs = self.emulator.service.jobs
            job = jobs._jobs.get(str(args[0]).removeprefix("batches/")) if args else None
            display = job.display_name if job is not None else ""
        job_id = display.split(":", 1)[-1]
        if not job_id.startswith("p"):
            return
        p = int(job_id[1:].split("-", 1)[0])
        group = self.cluster.group
        member = r.consumer.member_id
        if member is not None and group.owner(p) == member:
            self.log(f"{r.name} {call} {job_id}")
            return
        st = r.sidecar.ctx.owned.get(p)
        committed = st.committed if st is not None else None
        self.zombie_calls.append((r.name, call, job_id, committed))
        self.log(
            f"{r.name} calls {call} for {job_id} but the group gave p{p} away "
            f"(its committed offset there: {committed})"
        )

    def hook(self, r: Replica, call: str, when: str, args: tuple[Any, ...] = ()) -> None:
        self._strike(r, call, when)
        # After the fault: a create or delete that goes ahead after a freeze is checked
        # against the group as it is when the call reaches the provider.
        if when == "before" and call in ("create", "delete_job"):
            self._check_owner(r, call, args)

    def _strike(self, r: Replica, call: str, when: str) -> None:
        """Carry out the fault armed for this call of `r`, if any."""
        if self.in_hook or not r.armed:
            return
        fault, want_call, want_when = r.armed[0]
        if want_call not in ("any", call) or want_when != when:
            return
        r.armed.pop(0)
        if fault == "kill":
            self.kill(r, f"{when} {call}")
            raise Killed(r.name)
        if fault == "rebalance":
            self.log(f"rebalance while {r.name} is {when} {call}")
            self.in_hook = True
            try:
                if self.on_rebalance is not None:
                    self.on_rebalance(self, r)
            finally:
                self.in_hook = False
            return
        if fault == "freeze":
            self.log(f"freeze {r.name} {when} {call}")
            self.in_hook = True
            try:
                if self.on_freeze is not None:
                    self.on_freeze(self, r)
            finally:
                self.in_hook = False
            self.log(f"resume {r.name} (zombie until its next poll)")
