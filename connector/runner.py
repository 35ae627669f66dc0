"""The sidecar's loop: consume → batch → record intent → commit → submit → track → produce.

The runner wires and orders; decisions live in the pure core (batcher, watermark,
policy, quota, outcomes) and the work with Gemini in the submitter and the tracker.
One thread owns the consumer and drives everything, so no state is shared.

Ordering invariants (docs/design.md has the crash table):
1. An offset is committed only after its request is in an acked INTENT or has an
   acked terminal record (dead letter or error result).
2. A job is created only after its INTENT is acked; a recovered INTENT is looked up
   by display name first and adopted if it exists, so no job is created twice.
3. A job's tombstone is written only after its results (or successor INTENTs) are acked.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import structlog

from connector import endpoints
from connector.adapters import clients, codecs
from connector.adapters.access import access_denied
from connector.adapters.control import ControlTopic, ensure_control_topic
from connector.adapters.heap import HeapTrimmer
from connector.adapters.kafka import (
    Admin,
    Producer,
    RequestConsumer,
    TransactionalProducer,
    connect_with_retry,
    producer_max_request_size,
    with_client_ids,
)
from connector.adapters.ledger import Ledger
from connector.adapters.registry import SchemaRegistry
from connector.adapters.reread import RequestReader
from connector.adapters.security import kafka_client_extra
from connector.config import Settings, kafka_setting
from connector.core import policy
from connector.core.batcher import Batcher, BatchLimits
from connector.core.codec import Codec
from connector.core.formats import Format, RequestDecoder, ResultEncoder
from connector.core.ledger_topic import entry_budget
from connector.core.memory import payloads_to_drop, waiting
from connector.core.partitions import Partitions, PartitionState, Stats, Tracked
from connector.core.passtime import PassTimes
from connector.core.ports import (
    ConsumerPort,
    ControlPort,
    GeminiPort,
    LedgerPort,
    ProducerPort,
    RequestReaderPort,
    TransactionalProducerPort,
)
from connector.core.quota import Budget, share, should_pause
from connector.core.records import EntryState, LedgerEntry
from connector.core.recovery import passed_by, plan_recovery, to_retract
from connector.core.topics import plan_topics
from connector.core.watermark import Watermark
from connector.errors import ConfigError, Fenced, KafkaError, RegistryUnavailable
from connector.health import PROTECTED
from connector.metrics import Telemetry
from connector.stages import epochs
from connector.stages.checkpoint import Checkpoint
from connector.stages.context import Context
from connector.stages.control import Controller
from connector.stages.intake import Intake
from connector.stages.sink import Limits, Sink
from connector.stages.spool import SpoolGate
from connector.stages.submitter import Submitter
from connector.stages.tracker import Tracker

log = structlog.get_logger("connector")

KAFKA_BACKOFF_MAX_S = 30.0
"""Longest wait between passes while Kafka keeps failing."""


SLOW_PASS_S = 5.0
"""A pass whose work took this long, and twice the pass budget, is logged with where the
time went (intake, commit, submit, track): what an operator needs to see why /healthz or
the group is unhappy. A pass at its budget plus one call is normal under load."""


@dataclass(frozen=True, slots=True)
class Ports:
    """What the loop talks to: the real adapters in `run()`, doubles in unit tests."""

    consumer: ConsumerPort
    producer: ProducerPort
    ledger: LedgerPort
    reader: RequestReaderPort
    total_partitions: int = 1
    schema_by_id: Callable[[int], Any] | None = None
    """Confluent writer schemas by id (the schema registry), if one is configured."""
    result_schema_id: int | None = None
    """The registry id of the result schema, for CONNECTOR_RESULT_FORMAT=confluent."""
    ledger_max_message_bytes: int = 1_048_576
    """The ledger topic's max.message.bytes (or the producer's max_request_size if smaller):
    batches seal before their ledger entry could outgrow it."""
    grow_ledger: Callable[[], None] | None = None
    """Grow the ledger to the request topic's partitions (called when one appears)."""
    txn: TransactionalProducerPort | None = None
    """Transactional producer: claims before each create; in exactly-once mode, `producer`."""
    control: ControlPort | None = None
    """The control topic of operator commands (`connector cancel`); None: no commands."""
    background: Executor | None = None
    """Threads for long provider transfers (results downloads, input uploads); None: on the
    loop thread."""


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
        self.budget = self.project_budget
        self.total_partitions = 1
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
        self._paused = False
        self._held: dict[int, float] = {}
        """Partitions waiting for the schema registry, and when they try again."""
        self._held_tries: dict[int, int] = {}
        self._extra = with_client_ids(settings.kafka_extra, settings.group_id)
        """Kafka settings of every client: CONNECTOR_KAFKA_*, overrides, client.id prefix."""
        self._ledger_max_bytes = 1_048_576
        self._resync = False
        self._fresh: dict[int, dict[str, LedgerEntry]] = {}
        """Per partition forgotten after a Kafka failure: the INTENTs it would have retracted."""
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
        health = None
        if s.health_port:
            health = endpoints.serve(self)
            paths = ["/healthz", "/readyz", "/status", "/metrics", "/"]
            log.info(
                "health endpoints",
                host=s.health_host,
                port=health.port,
                paths=paths,
                token_required=sorted(PROTECTED) if s.health_token else [],
            )
        try:
            self._run()
        finally:
            self.running = False
            if health is not None:
                health.stop()

    def _run(self) -> None:
        s = self.s
        kc = clients.backend(s.kafka_client)
        log.info("kafka client", client=kc.name)
        self._extra = with_client_ids(kafka_client_extra(s), s.group_id)
        if kc.name == clients.KAFKA_PYTHON:  # librdkafka ships every codec itself
            self._extra = codecs.check(self._extra)
        admin: Admin = self._connect(lambda: kc.admin(s.bootstrap_servers, self._extra), "admin")
        try:
            total = self._prepare_topics(admin)
        except Exception as exc:
            denied = access_denied(exc, self._extra, "checking and creating topics")
            if denied is not None:
                raise denied from exc
            raise
        finally:
            admin.close()
        s = self.s  # _prepare_topics may have settled the ledger's name

        def grow_ledger() -> None:
            grower: Admin = self._connect(
                lambda: kc.admin(s.bootstrap_servers, self._extra), "admin"
            )
            try:
                n = grower.partitions(s.request_topic)
                if n is not None:
                    grower.ensure_ledger(s.ledger, n)
                    producer.await_partitions(s.ledger, n)
                    if txn is not producer:  # claims go through it: it must know them too
                        txn.await_partitions(s.ledger, n)
            finally:
                grower.close()

        producer_extra = dict(self._extra)
        if (
            kafka_setting(producer_extra, "producer", "batch_size") is None
            and self._ledger_max_bytes < 32_768
        ):
            # A record batch must fit max.message.bytes too: with a small ledger limit,
            # keep batches (16 KiB by default) well under it.
            producer_extra["batch_size"] = max(1, self._ledger_max_bytes // 2)
        txn_id = transactional_id(s)
        txn: TransactionalProducer = self._connect(
            lambda: kc.transactional_producer(s.bootstrap_servers, producer_extra, txn_id),
            "transactional producer",
            txn_id,
        )
        log.info(
            "transactional producer", transactional_id=txn_id, guarantee=s.processing_guarantee
        )
        producer: Producer = (
            txn
            if s.exactly_once
            else self._connect(lambda: kc.producer(s.bootstrap_servers, producer_extra), "producer")
        )
        consumer: RequestConsumer = self._connect(
            lambda: kc.request_consumer(
                s.request_topic, s.group_id, s.bootstrap_servers, self._extra, max_records=2000
            ),
            "consumer",
            s.group_id,
        )
        # A 2 GB results or input file takes minutes: downloads and uploads run here, the
        # loop keeps polling.
        background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gemini-transfer")
        schema_by_id, result_schema_id = self._registry()
        decoder = RequestDecoder(self.codec, schema_by_id)
        control: ControlTopic = self._connect(
            lambda: kc.control_topic(s.control, producer, s.bootstrap_servers, self._extra),
            "control topic reader",
        )
        self.attach(
            Ports(
                consumer=consumer,
                producer=producer,
                ledger=Ledger(
                    s.ledger,
                    self.codec,
                    producer,
                    s.bootstrap_servers,
                    self._extra,
                    read=kc.read_partition,
                ),
                reader=RequestReader(
                    s.request_topic,
                    decoder.decode,
                    s.bootstrap_servers,
                    self._extra,
                    open_reader=kc.partition_reader,
                ),
                total_partitions=total,
                schema_by_id=schema_by_id,
                result_schema_id=result_schema_id,
                ledger_max_message_bytes=self._ledger_max_bytes,
                grow_ledger=grow_ledger,
                txn=txn,
                control=control,
                background=background,
            )
        )
        log.info("running", request_topic=s.request_topic, partitions=total)
        self.running = True
        try:
            self.loop()
        finally:
            background.shutdown(wait=False, cancel_futures=True)
            self.ctx.reader.retain(())  # closes the kept-open re-read consumers
            control.close()
            consumer.close()
            producer.close()
            if txn is not producer:
                txn.close()
            log.info("stopped", **self.status())

    def _registry(self) -> tuple[Callable[[int], Any] | None, int | None]:
        """The schema registry's lookups, if configured; the result schema id if results
        go out Confluent-framed (registered or looked up now, retried while it is down)."""
        s = self.s
        if not s.schema_registry_url:
            return None, None
        registry = SchemaRegistry(
            s.schema_registry_url,
            s.secret("schema_registry_username"),
            s.secret("schema_registry_password"),
            bearer_token=s.secret("schema_registry_bearer_token"),
            ssl_cafile=s.schema_registry_ssl_cafile,
            ssl_certfile=s.schema_registry_ssl_certfile,
            ssl_keyfile=s.schema_registry_ssl_keyfile,
        )
        log.info("schema registry", url=registry.url, result_format=s.result_format)
        if s.result_format != Format.CONFLUENT:
            return registry.schema_by_id, None
        schema = self.codec.current_schema("result")
        deadline = self.clock() + s.startup_timeout_s
        delay = 0.5
        while True:
            try:
                return registry.schema_by_id, registry.schema_id_for(
                    s.result_topic, schema, s.schema_registry_auto_register
                )
            except RegistryUnavailable as exc:
                if self.clock() + delay > deadline or self._stop.is_set():
                    raise
                log.warning("schema registry not ready, retrying", error=str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def attach(self, ports: Ports) -> None:
        """Wire the stages to `ports`; `run()` passes the real adapters, tests pass doubles."""
        s = self.s
        ports = self.metrics.wrap_ports(ports)
        self.ports = ports
        self.consumer = ports.consumer
        self.total_partitions = ports.total_partitions
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
            spool=SpoolGate(s.spool_dir, s.spool_reserve_bytes, self.stats),
        )
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
        )
        self.tracker = Tracker(self.ctx)
        self.submitter = Submitter(self.ctx, self.tracker)
        self.control = Controller(self.ctx, self.tracker, ports.control) if ports.control else None

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
            if self._resync:
                self._rebuild_partitions()
            self.step()
        except KafkaError as exc:
            self._abort_open()  # the pass's uncommitted sends must never ride a later commit
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
            self._forget_partitions()
            return delay
        self._kafka_failures = 0
        return None

    def _abort_open(self) -> None:
        """Abort the open transaction of a failed pass (exactly-once); a failure to reach
        the broker for it is left to the broker's transaction timeout."""
        try:
            self.ctx.abort()
        except KafkaError as exc:
            log.warning("aborting the failed pass's transaction failed", error=str(exc))

    def _forget_partitions(self) -> None:
        """Drop what this pass may have left half done; `_rebuild_partitions` redoes it.

        Kafka is failing, so nothing is written here: the INTENTs a revocation would
        retract are remembered instead, and come back retractable when rebuilt (`_recover`).
        """
        self._let_go(list(self.owned), write=False)
        self._resync = True

    def _rebuild_partitions(self) -> None:
        """Recover every assigned partition from its ledger and committed offset: the same
        ownership path as an assignment (`_take_over`), so claims are fenced again."""
        assigned = self.consumer.assignment()
        self._take_over(assigned)
        lost, self._fresh = self._fresh, {}
        self._retract_lost(lost)
        self._resync = False
        log.info("partitions rebuilt after a Kafka failure", partitions=sorted(assigned))

    def _connect(self, make: Callable[[], Any], what: str, resource: str = "") -> Any:
        return connect_with_retry(
            make, what, self.s.startup_timeout_s, self._stop, self._extra, resource
        )

    def _prepare_topics(self, admin: Admin) -> int:
        """Check the data topics (refuse or create missing ones, as configured); create and
        check the ledger and control topics; warn on short retention."""
        s = self.s
        data = [s.request_topic, s.result_topic, s.dlq_topic]
        missing = admin.missing_topics(data)
        plan = plan_topics(
            missing,
            s.create_topics,
            s.topic_partitions,
            s.topic_replication,
            admin.brokers() if missing else 1,
        )
        if plan.error is not None:
            raise ConfigError(plan.error)
        for topic in plan.create:
            log.warning(
                "creating a missing topic (CONNECTOR_CREATE_TOPICS)",
                topic=topic,
                partitions=plan.partitions,
                replication=plan.replication,
            )
            admin.ensure_topic(topic, plan.partitions, replication_factor=plan.replication)
        n = admin.partitions(s.request_topic)
        if n is None:
            raise ConfigError(f"request topic {s.request_topic!r} not found")
        if (
            not s.ledger_topic
            and admin.partitions(s.ledger) is None
            and admin.partitions(s.legacy_ledger) is not None
        ):
            # An earlier release's default name: its live jobs must not be orphaned. Entries
            # name their request topic, so sharing it with another deployment is safe.
            log.warning(
                "keeping the ledger of an earlier release; set CONNECTOR_LEDGER_TOPIC to "
                "silence this",
                ledger=s.legacy_ledger,
                default=s.ledger,
            )
            self.s = s = replace(s, ledger_topic=s.legacy_ledger)
        ledger_max = admin.ensure_ledger(s.ledger, n)
        producer_max = producer_max_request_size(self._extra)
        self._ledger_max_bytes = min(ledger_max, producer_max)
        ensure_control_topic(admin, s.control)
        self._read_limits(admin)
        try:
            retention_h = int(admin.topic_config(s.request_topic).get("retention.ms", "-1")) / 3.6e6
        except ValueError:
            retention_h = -1
        if 0 <= retention_h < s.min_retention_h:
            log.warning(
                "request topic retention is short: jobs re-read requests by offset, so a job "
                "that outlives the retention yields DATA_LOSS error results",
                topic=s.request_topic,
                retention_hours=round(retention_h, 1),
                recommended_hours=s.min_retention_h,
            )
        return n

    def _read_limits(self, admin: Admin) -> None:
        """Size limits from the topics themselves, so settings cannot promise more.

        A record must fit both its topic's `max.message.bytes` and the producer's
        `max_request_size`. Results and dead letters are checked against these before they
        are sent; requests larger than the request or dead-letter topic takes are refused.
        """
        s = self.s
        max_request_size = producer_max_request_size(self._extra)
        topic_max = {
            t: admin.max_message_bytes(t) for t in (s.request_topic, s.result_topic, s.dlq_topic)
        }
        self.limits = Limits(
            result_bytes=min(topic_max[s.result_topic], max_request_size),
            dlq_bytes=min(topic_max[s.dlq_topic], max_request_size),
            result_partitions=admin.partitions(s.result_topic) or 0,
        )
        max_request_bytes = min(
            s.max_request_bytes, topic_max[s.request_topic], self.limits.dlq_bytes
        )
        if max_request_bytes != s.max_request_bytes:
            self.s = replace(s, max_request_bytes=max_request_bytes)
        log.info(
            "message size limits",
            max_request_bytes=max_request_bytes,
            configured_max_request_bytes=s.max_request_bytes,
            result_bytes=self.limits.result_bytes,
            dlq_bytes=self.limits.dlq_bytes,
            topics_max_message_bytes=topic_max,
            producer_max_request_size=max_request_size,
        )

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
        """One pass of the loop; every phase is bounded so polls stay frequent.

        Submit and track start no new Gemini call once the pass budget is spent (what is
        left is still due next pass), so a pass ends well within max.poll.interval.ms and
        the group never drops a replica that is merely busy.
        """
        records = self.consumer.poll(self._poll_timeout())
        started = self.clock()  # the pass's work starts here: waiting in poll is idle time
        rewound = self._apply_rebalance({r.partition for r in records})
        if rewound:
            # Fetched before the rewind: these come again from the committed offset.
            records = [r for r in records if r.partition not in rewound]
        now = self.clock()
        cp = Checkpoint()
        txn = self._eos_txn()
        if txn is not None:  # the pass's own unit: intake's sends commit with its offsets
            txn.begin_transaction()
        sealed = []
        self._release_held(now)
        for rec in records:
            if rec.partition in self._held:
                continue
            try:
                sealed.extend(self.intake.take(rec, now, cp))
            except RegistryUnavailable as exc:
                self._hold(rec.partition, rec.offset, now, exc)
        sealed.extend(self.batcher.due(now))
        self.intake.record_intents(sealed, cp)
        phases = {"intake": self.clock() - started}
        try:
            cp.commit(self.ctx.sink, self.consumer, self.owned, self._eos_txn())
            deadline = started + self.s.pass_budget_s
            if self.control is not None:
                # Before pruning, submitting and tracking: a targeted job is neither pruned,
                # created nor polled before the command is seen (see stages/control.py).
                self.control.poll()
                self.control.act(deadline)
            self.tracker.prune_done()
            mark = self.clock()
            phases["commit"] = mark - started - phases["intake"]
            self.submitter.submit_due(self.clock(), self.budget, deadline)
            phases["submit"] = self.clock() - mark
            mark = self.clock()
            self.tracker.track_due(self.clock(), self._stop.is_set(), deadline)
            phases["track"] = self.clock() - mark
        except Fenced as exc:
            self._fenced(exc)
        self._backpressure()
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

    def _hold(self, p: int, offset: int, now: float, exc: Exception) -> None:
        """The registry is out: read p again from `offset` later; nothing is dead-lettered."""
        tries = self._held_tries.get(p, 0) + 1
        self._held_tries[p] = tries
        self._held[p] = now + policy.failure_delay(tries, self.ctx.rand.random())
        self.consumer.seek(p, offset)
        self.consumer.pause([p])
        log.warning(
            "schema registry unavailable; partition waits",
            partition=p,
            offset=offset,
            error=str(exc),
            retry_in_s=round(self._held[p] - now, 1),
        )

    def _release_held(self, now: float) -> None:
        due = [p for p, t in self._held.items() if t <= now]
        for p in due:
            del self._held[p]
        if due:
            self.consumer.resume(due)
        for p in set(self._held_tries) - set(self._held) - set(due):
            self._held_tries.pop(p, None)

    def _eos_txn(self) -> TransactionalProducerPort | None:
        return self.ports.txn if self.s.exactly_once else None

    def _fenced(self, exc: Fenced) -> None:
        """The group refused a transaction: it moved on without this replica (a pass or a
        freeze outlived max.poll.interval.ms). Forget every partition, create nothing; the
        consumer rejoins on its next poll and the assignment it gets is recovered afresh."""
        dropped = sorted(self.ctx.owned)
        self._let_go(dropped)
        self.stats.fenced += 1
        log.warning(
            "fenced: this replica no longer owns its partitions; dropped them, created nothing",
            partitions=dropped,
            error=str(exc),
        )

    def _retract(self, partitions: Iterable[int]) -> None:
        """Take back the uncommitted, never-created INTENTs of partitions being lost.

        At-least-once only: in exactly-once mode such INTENTs were in a transaction that was
        aborted or committed together with their offsets. The new owner reads those requests
        again and batches them itself; see `recovery.to_retract` for why and what stays.
        (A new owner that loaded one of them looks it up only a server timeout later, so this
        tombstone, written right away, comes long before any create of theirs.)
        """
        ctx = self.ctx
        self._tombstone_intents(
            [
                e
                for p in partitions
                if (st := ctx.owned.get(p)) is not None
                for e in to_retract(st.jobs.values(), st.committed)
            ]
        )

    def _retract_lost(self, remembered: dict[int, dict[str, LedgerEntry]]) -> None:
        """Retract the INTENTs of partitions lost while Kafka was failing (forgotten, then not
        assigned any more): only those the ledger still holds exactly as this replica wrote
        them (a new owner that moved one on, adopted or created, keeps it)."""
        if self.s.exactly_once or not any(remembered.values()):
            return
        gone: list[LedgerEntry] = []
        for p, mine in remembered.items():
            if mine:
                live = self.ctx.ledger.load(p)
                gone.extend(e for e in mine.values() if live.get(e.job_id) == e)
        self._tombstone_intents(gone)

    def _tombstone_intents(self, gone: list[LedgerEntry]) -> None:
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

    def _poll_timeout(self) -> float:
        now = self.clock()
        wake = [now + 1.0, *(t.due for t in self.ctx.owned.tracked())]
        nd = self.batcher.next_due()
        if nd is not None:
            wake.append(nd)
        return min(1.0, max(0.0, min(wake) - now))

    # -- partitions --------------------------------------------------------------------

    def _apply_rebalance(self, fetched: set[int]) -> set[int]:
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
                self._let_go(partitions)
                # Dropped by an assignment or an outage before, not rebuilt since.
                self._retract_lost({p: self._fresh.pop(p) for p in partitions & set(self._fresh)})
                assigned -= partitions
                log.info("partitions revoked", partitions=sorted(partitions))
            else:
                # Assigned again without a revocation: recovered afresh, its fresh INTENTs
                # still this replica's own.
                self._let_go(partitions & set(owned), write=False)
                assigned |= partitions
                log.info("partitions assigned", partitions=sorted(partitions))
        stray = fetched - set(owned) - assigned
        if stray and (stray := stray & self.consumer.assignment()):
            log.warning(
                "records of a partition without state; recovering it", partitions=sorted(stray)
            )
            assigned |= stray
        if assigned:
            self._take_over(assigned)
        if changed:
            # kafka-python keeps the paused flag of partitions retained through a rebalance:
            # resume everything (but partitions waiting for the registry) and decide again.
            self.consumer.resume_all()
            if self._held:
                self.consumer.pause(self._held)
            self._paused = False
        return assigned

    # -- the one ownership path ----------------------------------------------------------

    def _take_over(self, partitions: set[int]) -> None:
        """The one way this replica takes partitions on: assigned, records of a partition
        without state, or rebuilt after a Kafka failure.

        Each is recovered from its ledger, then rewound: the watermark and the committed
        offset start at the group's committed offset. Every claim re-commits that offset in
        its transaction, so the group checks this replica still owns the partition before
        any create or delete (left unset, the claim would carry no offset and prove
        nothing: a replica dropped during an outage would create its stale jobs).
        """
        owned = self.ctx.owned
        self._ensure_ledger_partitions(partitions)
        for p in sorted(partitions):
            self._recover(p)
        passed: list[LedgerEntry] = []
        for p, start in self.consumer.rewind(partitions).items():
            owned[p].watermark = Watermark(start)
            owned[p].committed = start
            if not self.s.exactly_once:
                passed.extend(passed_by(list(owned[p].jobs.values()), start))
        if passed:  # another owner batched and committed those records itself
            for e in passed:
                owned.remove_job(e)
            self._tombstone_intents(passed)
        try:  # before any offset is committed (see `stages.epochs`)
            self._tombstone_intents(epochs.stamp(self.ctx, partitions & set(owned)))
        except Fenced as exc:  # the group moved on: every partition is lost, not only these
            self._fenced(exc)
        self.budget = share(self.project_budget, len(owned), self.total_partitions)

    def _let_go(self, partitions: Iterable[int], write: bool = True) -> None:
        """The one way partitions are let go: revoked, lost, fenced, or forgotten after a
        Kafka failure (`write` False: nothing can be written, so the INTENTs to retract are
        remembered and come back retractable if the partition is rebuilt)."""
        owned = self.ctx.owned
        gone = [p for p in partitions if p in owned]
        if write:
            self._retract(gone)
        else:
            self._fresh.update(
                (p, {e.job_id: e for e in to_retract(owned[p].jobs.values(), owned[p].committed)})
                for p in gone
            )
        for p in partitions:
            self.batcher.drop_partition(p)
            owned.pop(p, None)
            self._held.pop(p, None)
        self.budget = share(self.project_budget, len(owned), self.total_partitions)

    def _ensure_ledger_partitions(self, partitions: set[int]) -> None:
        """A request partition beyond those known at start (the topic grew): grow the ledger
        before its jobs are loaded or written there."""
        need = max(partitions, default=-1) + 1
        if need <= self.total_partitions:
            return
        log.warning("request topic grew", partitions=need, before=self.total_partitions)
        if self.ports.grow_ledger is not None:
            self.ports.grow_ledger()
        self.total_partitions = need

    def _recover(self, p: int) -> None:
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
        mine = self._fresh.pop(p, {})
        for r in plan.resume:
            fresh = mine.get(r.entry.job_id) == r.entry
            st.add(Tracked(r.entry, due=r.due, lookup=r.lookup, fresh=fresh))
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

    # -- flow control and shutdown -------------------------------------------------------

    def _shed_payloads(self) -> None:
        """Drop the payloads of the INTENTs created last once payloads pass their byte budget
        (they are re-read by offset at create): memory stays bounded while jobs wait."""
        drop = payloads_to_drop(self.ctx.owned.tracked(), self.s.max_payload_bytes)
        for t in drop:
            t.payload = None
        if drop:
            log.info(
                "dropped waiting jobs' requests from memory; they are re-read at create",
                jobs=len(drop),
                request_bytes=sum(t.size for t in drop),
            )

    def _backpressure(self) -> None:
        self._shed_payloads()
        waiting_jobs, waiting_bytes = waiting(self.ctx.owned.tracked())
        should = should_pause(
            waiting_jobs, self.s.max_waiting_intents, waiting_bytes, self.s.max_waiting_bytes
        )
        if should and not self._paused:
            self.consumer.pause(self.ctx.owned)
            self._paused = True
            log.warning(
                "paused consumption: too many jobs wait for quota",
                waiting=waiting_jobs,
                waiting_bytes=waiting_bytes,
            )
        elif not should and self._paused:
            self.consumer.resume_all()
            if self._held:  # partitions waiting for the schema registry stay paused
                self.consumer.pause(self._held)
            self._paused = False
            log.info("resumed consumption", waiting=waiting_jobs, waiting_bytes=waiting_bytes)

    def _drain(self) -> None:
        """On stop: record open batches as INTENTs so their offsets commit.

        Running jobs stay in the ledger for the next owner of their partition.
        """
        deadline = self.clock() + self.s.drain_timeout_s
        cp = Checkpoint()
        self.intake.record_intents(self.batcher.drain(), cp)
        recorded = sum(len(v) for v in cp.resolved.values())
        try:
            cp.commit(self.ctx.sink, self.consumer, self.owned, self._eos_txn())
            # Starts no upload and abandons those running: nothing is created after this.
            self.submitter.submit_due(self.clock(), self.budget, deadline, stopping=True)
        except Fenced as exc:
            self._fenced(exc)
        self._publish()
        log.info("drained", intents_recorded=recorded)


def transactional_id(s: Settings) -> str:
    """CONNECTOR_TRANSACTIONAL_ID, else `<group_id>.<hostname>.<8 random hex>`.

    One per replica: KIP-447 fences zombies by the consumer group's generation, so ids need
    not be per partition. A stable id (e.g. a StatefulSet pod name) lets a restart fence its
    previous incarnation and abort the transaction it left open at once; a random one leaves
    that transaction to transaction.timeout.ms, and two live replicas must never share one.
    """
    if s.transactional_id:
        return s.transactional_id
    return f"{s.group_id}.{socket.gethostname()}.{secrets.token_hex(4)}"
