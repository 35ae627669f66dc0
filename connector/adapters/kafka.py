"""The one place that speaks kafka-python: clients, records, topics, rebalances.

kafka-python types stay in here; the runner sees `Record`, `Sent` and plain ints.
"""

from __future__ import annotations

import contextlib
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
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError

from connector.core.ports import SendHandle
from connector.core.records import Headers, Record
from connector.errors import (
    BrokerUnavailable,
    CommitFailed,
    ConfigError,
    LedgerError,
    ProduceFailed,
)

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
        return out

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
        an explicit seek and a watermark that starts exactly there rule that out.
        """
        tps = [TopicPartition(self.topic, p) for p in partitions]
        beginning = self._consumer.beginning_offsets(tps) if tps else {}
        starts: dict[int, int] = {}
        for tp in tps:
            committed = self._consumer.committed(tp)
            start = beginning[tp] if committed is None else max(committed, beginning[tp])
            self._consumer.seek(tp, start)
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

    def resume(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if tps:
            self._consumer.resume(*tps)

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def close(self) -> None:
        self._consumer.close()


@dataclass(slots=True)
class Sent:
    """A pending produce; `ok()` after a flush says whether the broker acked it."""

    future: Any

    def ok(self) -> bool:
        return bool(self.future.is_done and self.future.succeeded())

    def error(self) -> BaseException | None:
        return self.future.exception if self.future.is_done else None


PRODUCER_CONFIG: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "max_in_flight_requests_per_connection": 5,
    # Bigger batches: a job's results go out in one burst, and kafka-python's IO thread pays
    # per produce request (and competes with the loop thread for the GIL). Bare kafka-python,
    # result-size records, same run (bench/README.md): linger 20 ms / 256 KB sends ~1.3-2.5x
    # as many records/s as linger 5 ms / 16 KB. No added latency where it matters: every
    # ledger write and result burst ends in flush(), which sends at once regardless of linger.
    # gzip gained nothing on realistic (distinct) results; lz4/zstd need extra packages.
    "linger_ms": 20,
    "batch_size": 256 * 1024,
}
"""The sidecar producer's settings (bench/run.py measures bare kafka-python with the same)."""


class Producer:
    """One idempotent producer for results, dead letters and ledger entries."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self._producer = KafkaProducer(
            **PRODUCER_CONFIG, **client_config(KafkaProducer, bootstrap, extra)
        )

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Sent:
        fut = self._producer.send(
            topic, value=value, key=key, headers=headers or [], partition=partition
        )
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
    ledger never has to hold payloads.
    """
    consumer = KafkaConsumer(
        group_id=None, enable_auto_commit=False, **client_config(KafkaConsumer, bootstrap, extra)
    )
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        begin = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
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
        # Another replica may create it between the check and here: that is fine.
        with contextlib.suppress(TopicAlreadyExistsError):
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
        found = self.partitions(topic)
        if found is None:
            raise ConfigError(f"could not create topic {topic!r}")
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

    def topic_config(self, topic: str) -> dict[str, str]:
        res = self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        entries = res.get("topic", {}).get(topic, {}) if isinstance(res, dict) else {}
        return {k: str(v.get("value")) for k, v in entries.items() if isinstance(v, dict)}

    def close(self) -> None:
        self._admin.close()


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
