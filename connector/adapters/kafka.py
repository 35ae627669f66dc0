"""The one place that speaks kafka-python: clients, records, topics, rebalances.

kafka-python types stay in here; the runner sees `Record`, `Sent` and plain ints.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    KafkaConfigurationError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)

from connector.core.ports import SendHandle
from connector.core.records import Headers, Record
from connector.errors import (
    BrokerUnavailable,
    CommitFailed,
    ConfigError,
    LedgerError,
    ProduceFailed,
    RecordTooLarge,
)

PROBE_INTERVAL_S = 5.0
"""After this long without records, an idle poll checks that the broker still answers."""
PROBE_TIMEOUT_S = 5.0
OFFSETS_TIMEOUT_S = 10.0
"""Offset look-ups give up after this (kafka-python's default would block for minutes)."""
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default `max.message.bytes` (topic) / `message.max.bytes` (broker)."""
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def _produce_error(exc: BaseException) -> BaseException:
    """kafka-python's per-record size errors become `RecordTooLarge`; others stay as they are."""
    if isinstance(exc, _TOO_LARGE):
        return RecordTooLarge(f"record too large: {exc!r}")
    return exc


log = structlog.get_logger(__name__)


def _record(r: Any) -> Record:
    headers = [(k, v if v is not None else b"") for k, v in (r.headers or [])]
    return Record(r.topic, r.partition, r.offset, r.key, r.value, headers, r.timestamp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    """Queues partition changes; runs on kafka-python's IO thread, so it only records."""

    def __init__(self) -> None:
        self.events: deque[tuple[str, set[int]]] = deque()

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.events.append(("revoked", {tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.events.append(("assigned", {tp.partition for tp in assigned}))

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        self.events.append(("revoked", {tp.partition for tp in lost}))


# Any: kafka-python's client classes share DEFAULT_CONFIG but no common typed base.
_CLIENTS: tuple[Any, ...] = (KafkaConsumer, KafkaProducer, KafkaAdminClient)


def client_config(client: type[Any], bootstrap: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Pass-through settings that this kind of client understands (security, timeouts...).

    kafka-python rejects unknown keys, and consumer-only keys such as
    session_timeout_ms would break the producer, so each client gets its own subset.
    """
    unknown = [k for k in extra if not any(k in c.DEFAULT_CONFIG for c in _CLIENTS)]
    if unknown:
        raise ConfigError(f"unknown Kafka settings {sorted(unknown)} (from CONNECTOR_KAFKA_*)")
    cfg: dict[str, Any] = {k: v for k, v in extra.items() if k in client.DEFAULT_CONFIG}
    cfg["bootstrap_servers"] = bootstrap.split(",")
    return cfg


class RequestConsumer:
    """The consumer group member that reads request records; one owning thread."""

    def __init__(
        self, topic: str, group_id: str, bootstrap: str, extra: Mapping[str, Any], max_records: int
    ) -> None:
        self.topic = topic
        self._listener = _Listener()
        self._max_records = max_records
        self._confirmed = time.monotonic()
        self._consumer = KafkaConsumer(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            **client_config(KafkaConsumer, bootstrap, extra),
        )
        # kafka-python 3.0.12: a group join that completes before the topic's metadata is
        # known can leave the member with no partitions for good; load the metadata first.
        self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe([topic], listener=self._listener)

    def poll(self, timeout_s: float) -> list[Record]:
        try:
            batches = self._consumer.poll(
                timeout_ms=max(0, int(timeout_s * 1000)), max_records=self._max_records
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"poll failed: {exc!r}") from exc
        out: list[Record] = []
        for recs in batches.values():
            out.extend(_record(r) for r in recs)
        now = time.monotonic()
        if out:
            self._confirmed = now
        elif now - self._confirmed > PROBE_INTERVAL_S:
            self._probe()
            self._confirmed = time.monotonic()
        return out

    def _probe(self) -> None:
        """An idle poll says nothing of the broker (kafka-python just retries inside); ask it
        for one end offset, so an outage surfaces as BrokerUnavailable and the loop backs off."""
        tps = sorted(self._consumer.assignment())[:1]
        if not tps:
            return
        try:
            self._consumer.end_offsets(tps, timeout_ms=int(PROBE_TIMEOUT_S * 1000))
        except KafkaError as exc:
            raise BrokerUnavailable(f"broker not answering: {exc!r}") from exc

    def rebalance_events(self) -> list[tuple[str, set[int]]]:
        events = list(self._listener.events)
        self._listener.events.clear()
        return events

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit next-offsets per partition (blocking): only durable work is covered."""
        if not offsets:
            return
        try:
            self._consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise CommitFailed(f"offset commit refused: {exc!r}") from exc

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        """Seek to the committed offset (or the beginning) and return where each starts.

        kafka-python may keep its in-memory position for a partition that is revoked and
        assigned again in one rebalance, which would skip the records of dropped batches;
        an explicit seek and a watermark that starts exactly there rule that out. A committed
        offset below the log start (retention deleted records never read) is returned as
        is, so the first record read shows the gap and the loop reports it.
        """
        try:
            return self._rewind(partitions)
        except KafkaError as exc:
            raise BrokerUnavailable(f"rewind failed: {exc!r}") from exc

    def _rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        timeout_ms = int(OFFSETS_TIMEOUT_S * 1000)
        beginning = self._consumer.beginning_offsets(tps, timeout_ms) if tps else {}
        starts: dict[int, int] = {}
        for tp in tps:
            committed = self._consumer.committed(tp, timeout_ms=timeout_ms)
            start = beginning[tp] if committed is None else committed
            self._consumer.seek(tp, max(start, beginning[tp]))
            starts[tp.partition] = start
        return starts

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()}

    def pause(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if tps:
            self._consumer.pause(*tps)

    def resume_all(self) -> None:
        paused = list(self._consumer.paused())
        if paused:
            self._consumer.resume(*paused)

    def close(self) -> None:
        self._consumer.close()


@dataclass(slots=True)
class Sent:
    """A pending produce; `ok()` after a flush says whether the broker acked it."""

    future: Any
    failed: BaseException | None = None
    """Set when `send` itself refused the record (e.g. over `max_request_size`)."""

    def ok(self) -> bool:
        if self.failed is not None:
            return False
        return bool(self.future.is_done and self.future.succeeded())

    def error(self) -> BaseException | None:
        if self.failed is not None:
            return self.failed
        if not self.future.is_done or self.future.exception is None:
            return None
        return _produce_error(self.future.exception)


class Producer:
    """One idempotent producer for results, dead letters and ledger entries."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self.max_request_size = producer_max_request_size(extra)
        self._producer = KafkaProducer(
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=5,
            **client_config(KafkaProducer, bootstrap, extra),
        )

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Sent:
        try:
            fut = self._producer.send(
                topic, value=value, key=key, headers=headers or [], partition=partition
            )
        except KafkaError as exc:  # refused before sending, e.g. over max_request_size
            return Sent(None, _produce_error(exc))
        return Sent(fut)

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None:
        """Block until every send is acked; raise if any failed (nothing may pass unacked)."""
        if not sent:
            return
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise ProduceFailed(f"flush failed: {exc!r}") from exc
        for s in sent:
            if not s.ok():
                raise ProduceFailed(f"produce failed: {s.error()!r}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)


def read_partition(
    topic: str,
    partition: int,
    bootstrap: str,
    extra: Mapping[str, Any],
    start: int | None = None,
    stop: int | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Read [start, min(stop, end)) of one partition with a group-less consumer.

    Used to rebuild the ledger and to re-read request payloads by offset, so the
    ledger never has to hold payloads. kafka-python's errors become `BrokerUnavailable`.
    """
    try:
        return _read_partition(topic, partition, bootstrap, extra, start, stop, timeout_s)
    except KafkaError as exc:
        raise BrokerUnavailable(f"reading {topic}[{partition}] failed: {exc!r}") from exc


def _read_partition(
    topic: str,
    partition: int,
    bootstrap: str,
    extra: Mapping[str, Any],
    start: int | None,
    stop: int | None,
    timeout_s: float,
) -> list[Record]:
    consumer = KafkaConsumer(
        group_id=None, enable_auto_commit=False, **client_config(KafkaConsumer, bootstrap, extra)
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        timeout_ms = int(min(timeout_s, OFFSETS_TIMEOUT_S) * 1000)
        begin = consumer.beginning_offsets([tp], timeout_ms)[tp]
        end = consumer.end_offsets([tp], timeout_ms)[tp]
        first = begin if start is None else max(start, begin)
        last = end if stop is None else min(stop, end)
        out: list[Record] = []
        if first >= last:
            return out
        consumer.seek(tp, first)
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < last:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"timed out reading {topic}[{partition}] {first}..{last}")
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(_record(r) for r in recs if r.offset < last)
        return out
    finally:
        consumer.close()


class Admin:
    """Topic checks and creation at start-up."""

    visible_timeout_s = 30.0
    """How long a created (or concurrently created) topic may take to show in metadata."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self._admin = KafkaAdminClient(**client_config(KafkaAdminClient, bootstrap, extra))

    def partitions(self, topic: str) -> int | None:
        try:
            desc = self._admin.describe_topics([topic])
        except KafkaError:
            return None
        for t in desc:
            if topic in (t.get("topic"), t.get("name")) and not t.get("error_code"):
                return len(t.get("partitions") or []) or None
        return None

    def ensure_topic(
        self, topic: str, partitions: int, configs: Mapping[str, str] | None = None
    ) -> int:
        """Create the topic if missing; return its partition count."""
        existing = self.partitions(topic)
        if existing is not None:
            return existing
        try:
            self._admin.create_topics(
                {
                    topic: {
                        "num_partitions": partitions,
                        "replication_factor": -1,
                        "configs": dict(configs or {}),
                    }
                },
                wait_for_metadata=True,
            )
        except TopicAlreadyExistsError:
            # Replicas starting together race to create it; the loser's metadata may not
            # show the topic (with leaders) for a moment yet: wait for it below.
            log.info("topic created by another client meanwhile", topic=topic)
        except KafkaTimeoutError:
            log.info("topic not visible yet after create; waiting", topic=topic)
        deadline = time.monotonic() + self.visible_timeout_s
        while (found := self.partitions(topic)) is None:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"could not create topic {topic!r}: still not visible after "
                    f"{self.visible_timeout_s:.0f}s"
                )
            time.sleep(0.2)
        return found

    def ensure_ledger(self, topic: str, partitions: int) -> None:
        """The ledger must be compacted and co-partitioned with the request topic."""
        n = self.ensure_topic(topic, partitions, {"cleanup.policy": "compact"})
        if n != partitions:
            raise LedgerError(
                f"ledger topic {topic!r} has {n} partitions but the request topic has "
                f"{partitions}; they must match (partition p's jobs live in ledger partition p)"
            )
        policy = self.topic_config(topic).get("cleanup.policy", "")
        if "compact" not in policy:
            raise LedgerError(
                f"ledger topic {topic!r} must have cleanup.policy=compact, has {policy!r}"
            )

    def max_message_bytes(self, topic: str) -> int:
        """The topic's `max.message.bytes` (its effective value, broker default included)."""
        try:
            return int(self.topic_config(topic).get("max.message.bytes", ""))
        except ValueError:
            return DEFAULT_MAX_MESSAGE_BYTES

    def topic_config(self, topic: str) -> dict[str, str]:
        res = self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        entries = res.get("topic", {}).get(topic, {}) if isinstance(res, dict) else {}
        return {k: str(v.get("value")) for k, v in entries.items() if isinstance(v, dict)}

    def close(self) -> None:
        self._admin.close()


def producer_max_request_size(extra: Mapping[str, Any]) -> int:
    """The producer's `max_request_size` (CONNECTOR_KAFKA_MAX_REQUEST_SIZE or the default)."""
    return int(extra.get("max_request_size", KafkaProducer.DEFAULT_CONFIG["max_request_size"]))


def connect_with_retry(
    make: Any, what: str, timeout_s: float, stop: threading.Event | None = None
) -> Any:
    """Call `make()` until the broker answers: the sidecar may start before Kafka."""
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        try:
            return make()
        except KafkaConfigurationError as exc:
            raise ConfigError(f"invalid Kafka settings for {what}: {exc}") from exc
        except (KafkaError, OSError) as exc:
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise BrokerUnavailable(
                    f"Kafka not reachable for {what} after {timeout_s:.0f}s: {exc}"
                ) from exc
            log.warning("kafka not ready, retrying", what=what, error=str(exc), retry_in_s=delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, 10.0)
