"""Small clients for the services around the sidecar: publish requests, read results.

Upstream services may use any Avro library (docs/contract.md has the wire format);
these are the Python shortcut, also used by the demo, the tests and the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from connector.core.codec import Codec
from connector.core.records import Kind, RequestEvent, ResultEvent

__all__ = ["RequestPublisher", "ResultReader"]


class RequestPublisher:
    """Publishes request events (Avro single-object encoding) with an idempotent producer."""

    def __init__(self, bootstrap: str, topic: str, **kafka: Any) -> None:
        self.topic = topic
        self._codec = Codec()
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            **kafka,
        )

    def publish(
        self,
        request_id: str,
        model: str,
        body: Mapping[str, Any] | str,
        kind: Kind | str = Kind.GENERATE,
        *,
        group: str = "",
        priority: int = 0,
        deadline_ms: int | None = None,
        metadata: Mapping[str, str] | None = None,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one request; the Kafka key defaults to the request id."""
        text = body if isinstance(body, str) else orjson.dumps(body).decode()
        event = RequestEvent(
            request_id=request_id,
            model=model,
            kind=Kind(kind),
            body=text,
            group=group,
            priority=priority,
            deadline_ms=deadline_ms,
            metadata=dict(metadata or {}),
            created_ms=int(time.time() * 1000),
        )
        self.publish_raw(self._codec.encode_request(event), key or request_id.encode(), partition)

    def publish_raw(self, value: bytes, key: bytes | None, partition: int | None = None) -> None:
        """Send bytes as they are (tests use it for records that are not requests at all)."""
        self._producer.send(self.topic, value=value, key=key, partition=partition)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close()


class ResultReader:
    """Reads result events from the results topic, from the beginning by default."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str | None = None,
        *,
        isolation_level: str = "read_uncommitted",
        **kafka: Any,
    ) -> None:
        """`isolation_level="read_committed"`: only results of committed transactions, so
        with a sidecar in exactly-once mode each result is seen once."""
        self._codec = Codec()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=group_id,
            auto_offset_reset="earliest",
            enable_auto_commit=group_id is not None,
            isolation_level=isolation_level,
            **kafka,
        )
        # Metadata before subscribe: avoids kafka-python 3.0.12's empty-assignment join race.
        self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe([topic])

    def poll(self, timeout_s: float = 1.0) -> list[tuple[bytes | None, ResultEvent]]:
        out: list[tuple[bytes | None, ResultEvent]] = []
        for records in self._consumer.poll(timeout_ms=int(timeout_s * 1000)).values():
            for r in records:
                out.append((r.key, self._codec.decode_result(r.value)))
        return out

    def close(self) -> None:
        self._consumer.close()
