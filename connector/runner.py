"""The sidecar's loop: consume → batch → record intent → commit → submit → track → produce.

The runner only wires and orders. Start-up (topics, limits, registry, clients) is
`connector.startup`; the partition lifecycle is `stages.ownership`; each part of a pass
is a step (`stages.step`) run in the order `attach` lists; decisions live in the pure
core and the work with Gemini in the submitter and the tracker. One thread owns the
consumer and drives everything, so no state is shared.

Ordering invariants (docs/design.md has the crash table):
1. An offset is committed only after its request is in an acked INTENT or has an
   acked terminal record (dead letter or error result).
2. A job is created only after its INTENT is acked; a recovered INTENT is looked up
   by display name first and adopted if it exists, so no job is created twice.
3. A job's tombstone is written only after its results (or successor INTENTs) are acked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog

from connector.adapters.access import access_denied
from connector.adapters.heap import HeapTrimmer
from connector.adapters.kafka import with_client_ids
from connector.config import Settings
from connector.core import policy
from connector.core.batcher import Batcher, BatchLimits
from connector.core.codec import Codec
from connector.core.formats import Format, RequestDecoder, ResultEncoder
from connector.core.ledger_topic import entry_budget
from connector.core.partitions import Partitions, Stats
from connector.core.passtime import PassTimes
from connector.core.ports import GeminiPort, Ports, TransactionalProducerPort
from connector.core.quota import Budget
from connector.core.records import EntryState
from connector.errors import Fenced, KafkaError
from connector.metrics import Telemetry
from connector.stages.context import Context
from connector.stages.control import Controller
from connector.stages.flow import Flow, poll_timeout
from connector.stages.intake import Intake, IntakeStep
from connector.stages.ownership import Ownership
from connector.stages.sidelog import SideLog
from connector.stages.sink import Limits, Sink
from connector.stages.spool import SpoolGate
from connector.stages.step import Step
from connector.stages.steps import ControlStep, PruneStep, SubmitStep, TrackStep
from connector.stages.submitter import Submitter
from connector.stages.tracker import Tracker
from connector.stages.unit import CommitStep, PassUnit
from connector.startup import Startup, serve_health, transactional_id

__all__ = ["Ports", "Sidecar", "Snapshot", "transactional_id"]

log = structlog.get_logger("connector")

KAFKA_BACKOFF_MAX_S = 30.0
"""Longest wait between passes while Kafka keeps failing."""


SLOW_PASS_S = 5.0
"""A pass whose work took this long, and twice the pass budget, is logged with where the
time went (intake, commit, submit, track): what an operator needs to see why /healthz or
the group is unhappy. A pass at its budget plus one call is normal under load."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the loop publishes after each pass; other threads read only this."""

    status: dict[str, Any] = field(default_factory=dict)
    last_pass: float = 0.0
    view: Any = None
    """`connector.core.observe.View`: jobs, partitions and quota for status pages and metrics."""


class Sidecar:
    """One replica of the sidecar. `run()` blocks; `stop()` asks it to drain and return."""

    def __init__(
        self,
        settings: Settings,
        gemini: GeminiPort,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.s = settings
        self.metrics = Telemetry(settings, clock=clock, wall_ms=wall_ms)
        self.gemini = self.metrics.wrap_gemini(gemini)
        self.codec = codec or Codec()
        self.clock = clock
        self.wall_ms = wall_ms
        self.stats = Stats()
        self._stop = threading.Event()
        self.batcher = Batcher(
            BatchLimits(
                max_requests=settings.batch_max_requests,
                max_bytes=settings.batch_max_bytes,
                inline_max_bytes=settings.batch_inline_max_bytes,
                max_wait_s=settings.batch_max_wait_s,
                max_tokens=settings.token_budget,
            )
        )
        self.retry = policy.RetryPolicy(
            max_failed_retries=settings.max_failed_retries,
            max_attempts=settings.max_attempts,
            poll_initial_s=settings.poll_initial_s,
            poll_max_s=max(settings.poll_max_s, settings.poll_initial_s),
        )
        self.project_budget = Budget(
            max_jobs=settings.max_jobs, default_tokens=settings.token_budget
        )
        self.owned = Partitions()
        self.pass_times = PassTimes()
        """Work time of each pass, from the consumer poll returning to the publish."""
        self.pass_work_s = 0.0
        self.heap = HeapTrimmer()
        """Gives a burst's freed memory back to the OS once the loop is idle again."""
        self.last_pass = clock()
        self.snapshot = Snapshot(self._status(), self.last_pass)
        self.metrics.collector(lambda: self.snapshot)
        self.running = False
        self._extra = with_client_ids(settings.kafka_extra, settings.group_id)
        """Kafka settings of every client: CONNECTOR_KAFKA_*, overrides, client.id prefix."""
        self._kafka_failures = 0
        self.limits = Limits()
        """Largest result and dead letter the output topics take; read from them at start."""

    def stop(self) -> None:
        """Ask the loop to drain and return; safe from any thread or signal handler."""
        self._stop.set()

    # -- lifecycle ---------------------------------------------------------------------

    def alive(self) -> bool:
        """The loop completed a pass recently (for a liveness probe)."""
        return self.clock() - self.snapshot.last_pass < self.s.liveness_timeout_s

    def ready(self) -> bool:
        """Running, and Gemini accepts the API key: a rejected (rotated, revoked) key is an
        outage, reported here so /readyz and the status say so, while jobs wait for it."""
        return self.running and not self.snapshot.status.get("provider_auth_failing", False)

    def run(self) -> None:
        s = self.s
        log.info("starting", endpoint=s.endpoint, settings=s.describe())
        health = serve_health(self)
        try:
            self._start()
        finally:
            self.running = False
            if health is not None:
                health.stop()

    def _start(self) -> None:
        """Start-up (`connector.startup`), then the loop until `stop()`, then close."""
        boot = Startup(self.s, self.codec, self.clock, self._stop)
        ports = boot.connect()
        self.s, self.limits, self._extra = boot.s, boot.limits, boot.extra
        self.attach(ports)
        log.info("running", request_topic=self.s.request_topic, partitions=ports.total_partitions)
        self.running = True
        try:
            self.loop()
        finally:
            boot.close(self.ctx.reader)
            if self.ctx.sidelog is not None:
                self.ctx.sidelog.close()
            log.info("stopped", **self.status())

    def attach(self, ports: Ports) -> None:
        """Wire the stages to `ports`; `run()` passes the real adapters, tests pass doubles."""
        s = self.s
        ports = self.metrics.wrap_ports(ports)
        self.ports = ports
        self.consumer = ports.consumer
        budget = entry_budget(ports.ledger_max_message_bytes, s.request_topic)
        self.batcher = Batcher(replace(self.batcher.limits, max_entry_bytes=max(1, budget)))
        encoder = ResultEncoder(Format(s.result_format), self.codec, ports.result_schema_id)
        sink = Sink(
            s,
            ports.producer,
            self.codec,
            self.stats,
            encoder=encoder,
            obs=self.metrics,
            limits=self.limits,
        )
        self.ctx = Context(
            settings=s,
            gemini=self.gemini,
            codec=self.codec,
            producer=ports.producer,
            ledger=ports.ledger,
            reader=ports.reader,
            sink=sink,
            retry=self.retry,
            stats=self.stats,
            clock=self.clock,
            wall_ms=self.wall_ms,
            owned=self.owned,
            obs=self.metrics,
            txn=ports.txn,
            consumer=ports.consumer,
            background=ports.background,
            reads=ports.reads,
            spool=SpoolGate(s.spool_dir, s.spool_reserve_bytes, self.stats),
        )
        self.ctx.sidelog = SideLog(lambda: self.ctx.spool.open("gbc-side-"))
        self.intake = Intake(
            s,
            self.codec,
            self.batcher,
            self.owned,
            sink,
            ports.ledger,
            self.stats,
            self.clock,
            self.wall_ms,
            decoder=RequestDecoder(self.codec, ports.schema_by_id),
            sidelog=self.ctx.sidelog,
        )
        self.tracker = Tracker(self.ctx)
        self.submitter = Submitter(self.ctx, self.tracker)
        self.control = Controller(self.ctx, self.tracker, ports.control) if ports.control else None
        self.unit = PassUnit(sink, ports.consumer, self.owned, self._eos_txn())
        self.intake_step = IntakeStep(
            self.intake,
            ports.consumer,
            self.unit,
            rand=lambda: self.ctx.rand.random(),  # noqa: PLW0108 (tests swap ctx.rand)
        )
        self.flow = Flow(s, ports.consumer, self.owned, self.intake_step.held)
        self.ownership = Ownership(
            s,
            self.ctx,
            ports.consumer,
            self.batcher,
            self.stats,
            self.clock,
            self.project_budget,
            ports.total_partitions,
            grow_ledger=ports.grow_ledger,
            resumed=self.flow.resume,
        )
        # The pass, in order; a `Fenced` from any of them ends the pass's steps.
        self.steps: list[Step] = [
            self.intake_step,
            CommitStep(self.unit),
            *([ControlStep(self.control)] if self.control is not None else []),
            PruneStep(self.tracker),
            SubmitStep(self.submitter, lambda: self.ownership.budget),
            TrackStep(self.tracker, self._stop.is_set),
        ]
        self.ownership.steps = [*self.steps, self.flow]

    def loop(self) -> None:
        """Pass after pass until `stop()`, then drain.

        A Kafka failure (broker down, an unacked send) never ends the process: the pass's
        in-memory state is dropped, the loop backs off, and the owned partitions are rebuilt
        from the ledger and the committed offsets once Kafka answers again, exactly as a new
        owner would. No pass completes meanwhile, so /healthz fails after the liveness timeout.
        """
        last_status = self.clock()
        while not self._stop.is_set():
            delay = self.guarded_step()
            if delay is not None:
                self._stop.wait(delay)
                continue
            if self.clock() - last_status >= self.s.status_interval_s:
                last_status = self.clock()
                log.info("status", **self.status())
        self._drain()

    def guarded_step(self) -> float | None:
        """One pass; on a Kafka failure, forget the pass and return how long to back off."""
        try:
            if self.ownership.resync:
                self.ownership.rebuild_partitions()
            self.step()
        except KafkaError as exc:
            self.unit.abort()  # the pass's uncommitted sends must never ride a later commit
            denied = access_denied(exc, self._extra, "running")
            if denied is not None:
                raise denied from exc  # a missing ACL or revoked user: waiting will not help
            self._kafka_failures += 1
            delay: float = min(KAFKA_BACKOFF_MAX_S, 0.5 * 2.0 ** min(self._kafka_failures, 10))
            self.stats.kafka_failures += 1
            log.error(
                "kafka failed; backing off, then rebuilding partitions from the ledger",
                error=str(exc),
                failures=self._kafka_failures,
                retry_in_s=delay,
            )
            self.ownership.forget_partitions()
            return delay
        self._kafka_failures = 0
        return None

    def status(self) -> dict[str, Any]:
        """The latest published status (safe from any thread: an immutable snapshot)."""
        return dict(self.snapshot.status)

    def _status(self) -> dict[str, Any]:
        return {
            "partitions": sorted(self.owned),
            "open_requests": len(self.batcher),
            "intents": self.owned.count(EntryState.INTENT),
            "submitted": self.owned.count(EntryState.SUBMITTED),
            "done": self.owned.count(EntryState.DONE),
            "pass_s": self.pass_times.summary(),
            **asdict(self.stats),
        }

    def _publish(self) -> None:
        self.last_pass = self.clock()
        self.snapshot = Snapshot(self._status(), self.last_pass, self.metrics.view(self))

    # -- one pass ----------------------------------------------------------------------

    def step(self) -> None:
        """One pass: poll, let ownership apply rebalances, begin the pass's unit, run each
        step in order within the pass budget, flow control, publish.

        Submit and track start no new Gemini call once the pass budget is spent (what is
        left is still due next pass), so a pass ends well within max.poll.interval.ms and
        the group never drops a replica that is merely busy.
        """
        records = self.consumer.poll(poll_timeout(self.clock(), self.owned, self.batcher))
        started = self.clock()  # the pass's work starts here: waiting in poll is idle time
        records = self.ownership.apply(records)
        self.unit.begin(records)  # exactly-once: the transaction intake's sends go into
        deadline = started + self.s.pass_budget_s
        phases: dict[str, float] = {}
        try:
            for step in self.steps:
                mark = self.clock()
                step.run(mark, deadline)
                phases[step.name] = self.clock() - mark
        except Fenced as exc:
            self.ownership.fenced(exc)
        self.flow.run(self.clock(), deadline)
        self.pass_work_s = self.clock() - started
        self.pass_times.add(self.pass_work_s)
        if self.pass_work_s >= max(SLOW_PASS_S, 2 * self.s.pass_budget_s):
            log.warning(
                "slow loop pass",
                seconds=round(self.pass_work_s, 3),
                records=len(records),
                **{f"{k}_s": round(v, 3) for k, v in phases.items()},
            )
        st = self.stats
        activity = st.consumed + st.results_ok + st.results_error + st.jobs_created
        self.heap.after_pass(not records, activity, self.clock())
        self._publish()

    def _eos_txn(self) -> TransactionalProducerPort | None:
        return self.ports.txn if self.s.exactly_once else None

    # -- shutdown, and what tests reach ----------------------------------------------

    def _drain(self) -> None:
        """On stop: every step drains in order (open batches become INTENTs, their offsets
        commit, nothing new is created). Running jobs stay in the ledger for the next owner
        of their partition."""
        deadline = self.clock() + self.s.drain_timeout_s
        self.unit.open()
        try:
            for step in self.steps:
                step.drain(deadline)
        except Fenced as exc:
            self.ownership.fenced(exc)
        self._publish()
        log.info("drained", intents_recorded=self.intake_step.recorded)

    def _fenced(self, exc: Fenced) -> None:
        self.ownership.fenced(exc)

    def _rebuild_partitions(self) -> None:
        self.ownership.rebuild_partitions()

    @property
    def budget(self) -> Budget:
        """This replica's share of the project's quota (by the partitions it owns)."""
        return self.ownership.budget

    @property
    def total_partitions(self) -> int:
        return self.ownership.total_partitions

    @property
    def paused(self) -> bool:
        """Consumption paused by backpressure."""
        return self.flow.paused
