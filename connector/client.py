"""Small clients for the services around the sidecar: publish requests, read results.

Upstream services may use any Avro library, a Confluent serializer or plain JSON
(docs/contract.md has the three wire formats); these are the Python shortcut, also used by
the demo, the tests and the benchmark. Both take the format: `single_object` (default),
`confluent` (needs `registry_url`) or `json`. The reader detects the format of each record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from connector.adapters.registry import SchemaRegistry, subject_for
from connector.core.codec import Codec
from connector.core.formats import (
    Format,
    confluent_frame,
    confluent_schema_id,
    detect,
)
from connector.core.records import (
    ErrorInfo,
    Kind,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.errors import DecodeError

__all__ = ["RequestPublisher", "ResultReader", "subject_for"]


def _result_from_json(d: dict[str, Any]) -> ResultEvent:
    err, usage = d.get("error"), d.get("usage")
    return ResultEvent(
        d["request_id"],
        ResultStatus(d["status"]),
        d["model"],
        Kind(d["kind"]),
        d.get("response_json"),
        None if err is None else ErrorInfo(err["code"], err["status"], err["message"]),
        d.get("metadata") or {},
        d.get("batch_job"),
        d.get("attempt", 0),
        None
        if usage is None
        else TokenUsage(usage["prompt_tokens"], usage["candidates_tokens"], usage["total_tokens"]),
        d.get("request_created_ms", 0),
        d.get("completed_ms", 0),
        d.get("source_partition", -1),
        d.get("source_offset", -1),
        d.get("cost_usd"),
    )


class RequestPublisher:
    """Publishes request events (Avro single-object encoding) with an idempotent producer."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        format: Format | str = Format.SINGLE_OBJECT,
        registry_url: str | None = None,
        **kafka: Any,
    ) -> None:
        self.topic = topic
        self.format = Format(format)
        self._codec = Codec()
        self._schema_id: int | None = None
        if self.format is Format.CONFLUENT:
            if not registry_url:
                raise ValueError("the confluent format needs registry_url")
            registry = SchemaRegistry(registry_url)
            schema = self._codec.current_schema("request")
            self._schema_id = registry.schema_id_for(topic, schema, auto_register=True)
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
        self.publish_raw(self.encode(event), key or request_id.encode(), partition)

    def encode(self, event: RequestEvent) -> bytes:
        """The request event in this publisher's format."""
        if self.format is Format.SINGLE_OBJECT:
            return self._codec.encode_request(event)
        if self.format is Format.JSON:
            return orjson.dumps(
                {
                    "request_id": event.request_id,
                    "model": event.model,
                    "kind": event.kind.value,
                    "body": orjson.loads(event.body),
                    "group": event.group,
                    "priority": event.priority,
                    "deadline_ms": event.deadline_ms,
                    "metadata": event.metadata,
                    "created_ms": event.created_ms,
                }
            )
        assert self._schema_id is not None
        body = self._codec.encode_request(event)[10:]  # the Avro body after C3 01 + fingerprint
        return confluent_frame(self._schema_id, body)

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
        registry_url: str | None = None,
        *,
        isolation_level: str = "read_uncommitted",
        **kafka: Any,
    ) -> None:
        """`isolation_level="read_committed"`: only results of committed transactions, so
        with a sidecar in exactly-once mode each result is seen once."""
        self._codec = Codec()
        self._registry = SchemaRegistry(registry_url) if registry_url else None
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
                out.append((r.key, self.decode(r.value)))
        return out

    def decode(self, data: bytes) -> ResultEvent:
        """A result in any of the three formats (the sidecar's CONNECTOR_RESULT_FORMAT)."""
        fmt = detect(data)
        if fmt is Format.JSON:
            try:
                return _result_from_json(orjson.loads(data))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DecodeError(f"not a JSON result event: {exc!r}") from exc
        if fmt is Format.CONFLUENT:
            if self._registry is None:
                raise DecodeError("a Confluent-framed result needs registry_url")
            schema = self._registry.schema_by_id(confluent_schema_id(data))
            return self._codec.decode_result_body(data[5:], schema)
        return self._codec.decode_result(data)

    def close(self) -> None:
        self._consumer.close()
