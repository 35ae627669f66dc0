"""Start-up wiring: topics, size limits, the schema registry, the Kafka clients, `Ports`.

`Sidecar.run()` asks `Startup.connect` for the real `Ports`: it checks and creates the
topics, reads the limits they impose and connects every client (retrying until
CONNECTOR_STARTUP_TIMEOUT_S); the runner attaches them, runs the loop, then `close`.
Kept apart from the runner so the runner only wires and orders the loop's steps.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog

from connector import endpoints
from connector.adapters import clients, codecs
from connector.adapters.access import access_denied
from connector.adapters.control import ControlTopic, ensure_control_topic
from connector.adapters.hanging import HangingTransactions
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
from connector.core.codec import Codec
from connector.core.formats import Format, RequestDecoder
from connector.core.ports import Ports, RequestReaderPort
from connector.core.topics import plan_topics
from connector.errors import ConfigError, RegistryUnavailable
from connector.health import PROTECTED, HealthServer
from connector.stages.sink import Limits

log = structlog.get_logger("connector")


def serve_health(sidecar: Any) -> HealthServer | None:
    """Serve /healthz, /readyz, /status and /metrics off `sidecar`, if a port is set."""
    s = sidecar.s
    if not s.health_port:
        return None
    health = endpoints.serve(sidecar)
    paths = ["/healthz", "/readyz", "/status", "/metrics", "/"]
    log.info(
        "health endpoints",
        host=s.health_host,
        port=health.port,
        paths=paths,
        token_required=sorted(PROTECTED) if s.health_token else [],
    )
    return health


class Startup:
    """Everything `Sidecar.run()` needs before the loop: settings as the topics settle them
    (the ledger's name, the largest request), the limits they impose, the client settings,
    the real `Ports`, and how to close them after."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.s = settings
        self.codec = codec
        self.clock = clock
        self._stop = stop or threading.Event()
        self.extra = with_client_ids(settings.kafka_extra, settings.group_id)
        """Kafka settings of every client: CONNECTOR_KAFKA_*, overrides, client.id prefix."""
        self.ledger_max_bytes = 1_048_576
        self.limits = Limits()
        """Largest result and dead letter the output topics take; read from them here."""
        self._background: ThreadPoolExecutor | None = None
        self._reads: ThreadPoolExecutor | None = None
        self._clients: list[Callable[[], None]] = []

    def connect(self) -> Ports:
        """Check the topics, read their limits, connect every client: the real `Ports`."""
        s = self.s
        kc = clients.backend(s.kafka_client)
        log.info("kafka client", client=kc.name)
        self.extra = with_client_ids(kafka_client_extra(s), s.group_id)
        if kc.name == clients.KAFKA_PYTHON:  # librdkafka ships every codec itself
            self.extra = codecs.check(self.extra)
        admin: Admin = self._connect(lambda: kc.admin(s.bootstrap_servers, self.extra), "admin")
        try:
            total = self.prepare_topics(admin)
        except Exception as exc:
            denied = access_denied(exc, self.extra, "checking and creating topics")
            if denied is not None:
                raise denied from exc
            raise
        finally:
            admin.close()
        s = self.s  # prepare_topics may have settled the ledger's name

        def grow_ledger() -> None:
            grower: Admin = self._connect(
                lambda: kc.admin(s.bootstrap_servers, self.extra), "admin"
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

        producer_extra = dict(self.extra)
        if (
            kafka_setting(producer_extra, "producer", "batch_size") is None
            and self.ledger_max_bytes < 32_768
        ):
            # A record batch must fit max.message.bytes too: with a small ledger limit,
            # keep batches (16 KiB by default) well under it.
            producer_extra["batch_size"] = max(1, self.ledger_max_bytes // 2)
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
                s.request_topic, s.group_id, s.bootstrap_servers, self.extra, max_records=2000
            ),
            "consumer",
            s.group_id,
        )
        # A 2 GB results or input file takes minutes: downloads and uploads run here, the
        # loop keeps polling.
        background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gemini-transfer")
        # Reading a finished inline job (5,000 responses in one JSON body) takes seconds: the
        # loop picks the answer up in a later pass instead of waiting on it.
        reads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gemini-read")
        schema_by_id, result_schema_id = self.registry()
        decoder = RequestDecoder(self.codec, schema_by_id)
        control: ControlTopic = self._connect(
            lambda: kc.control_topic(s.control, producer, s.bootstrap_servers, self.extra),
            "control topic reader",
        )
        self._background = background
        self._reads = reads
        self._clients = [control.close, consumer.close, producer.close]
        if txn is not producer:
            self._clients.append(txn.close)
        return Ports(
            consumer=consumer,
            producer=producer,
            ledger=Ledger(
                s.ledger,
                self.codec,
                producer,
                s.bootstrap_servers,
                self.extra,
                read=kc.read_partition,
                hanging=HangingTransactions(
                    s.bootstrap_servers, self.extra, s.hanging_transaction_after_s
                ).abort,
            ),
            reader=RequestReader(
                s.request_topic,
                decoder.decode,
                s.bootstrap_servers,
                self.extra,
                open_reader=kc.partition_reader,
            ),
            total_partitions=total,
            schema_by_id=schema_by_id,
            result_schema_id=result_schema_id,
            ledger_max_message_bytes=self.ledger_max_bytes,
            grow_ledger=grow_ledger,
            txn=txn,
            control=control,
            background=background,
            reads=reads,
        )

    def close(self, reader: RequestReaderPort) -> None:
        """After the loop: stop the transfers, close the re-read consumers (`reader`, as the
        loop wrapped it), then every client."""
        for pool in (self._background, self._reads):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        reader.retain(())  # closes the kept-open re-read consumers
        for close in self._clients:
            close()

    def registry(self) -> tuple[Callable[[int], Any] | None, int | None]:
        """The schema registry's lookups, if configured; the result schema id if results
        go out Confluent-framed (registered or looked up now, retried while it is down)."""
        s = self.s
        if not s.schema_registry_url:
            return None, None
        reg = SchemaRegistry(
            s.schema_registry_url,
            s.secret("schema_registry_username"),
            s.secret("schema_registry_password"),
            bearer_token=s.secret("schema_registry_bearer_token"),
            ssl_cafile=s.schema_registry_ssl_cafile,
            ssl_certfile=s.schema_registry_ssl_certfile,
            ssl_keyfile=s.schema_registry_ssl_keyfile,
        )
        log.info("schema registry", url=reg.url, result_format=s.result_format)
        if s.result_format != Format.CONFLUENT:
            return reg.schema_by_id, None
        schema = self.codec.current_schema("result")
        deadline = self.clock() + s.startup_timeout_s
        delay = 0.5
        while True:
            try:
                return reg.schema_by_id, reg.schema_id_for(
                    s.result_topic, schema, s.schema_registry_auto_register
                )
            except RegistryUnavailable as exc:
                if self.clock() + delay > deadline or self._stop.is_set():
                    raise
                log.warning("schema registry not ready, retrying", error=str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _connect(self, make: Callable[[], Any], what: str, resource: str = "") -> Any:
        return connect_with_retry(
            make, what, self.s.startup_timeout_s, self._stop, self.extra, resource
        )

    def prepare_topics(self, admin: Admin) -> int:
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
        producer_max = producer_max_request_size(self.extra)
        self.ledger_max_bytes = min(ledger_max, producer_max)
        ensure_control_topic(admin, s.control)
        self.read_limits(admin)
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

    def read_limits(self, admin: Admin) -> None:
        """Size limits from the topics themselves, so settings cannot promise more.

        A record must fit both its topic's `max.message.bytes` and the producer's
        `max_request_size`. Results and dead letters are checked against these before they
        are sent; requests larger than the request or dead-letter topic takes are refused.
        """
        s = self.s
        max_request_size = producer_max_request_size(self.extra)
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
