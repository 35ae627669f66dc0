"""Which Kafka client the sidecar runs on: kafka-python (default) or confluent-kafka.

`backend(name)` returns the constructors of every Kafka adapter for that client, so the
runner wires one set or the other and nothing else knows which. confluent-kafka is only
imported when chosen (it is the optional extra `librdkafka`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KAFKA_PYTHON = "kafka-python"
CONFLUENT_KAFKA = "confluent-kafka"
CLIENTS = (KAFKA_PYTHON, CONFLUENT_KAFKA)


@dataclass(frozen=True)
class Backend:
    """The adapter constructors of one Kafka client (same signatures for both)."""

    name: str
    admin: Callable[..., Any]
    producer: Callable[..., Any]
    transactional_producer: Callable[..., Any]
    request_consumer: Callable[..., Any]
    control_topic: Callable[..., Any]
    read_partition: Callable[..., Any]
    partition_reader: Callable[..., Any]
    """(topic, partition, bootstrap, extra, stall_timeout_s, clock) → a re-read reader."""
    producer_max_request_size: Callable[..., int]


def backend(name: str) -> Backend:
    """The adapters of client `name` (one of CLIENTS)."""
    if name == KAFKA_PYTHON:
        from connector.adapters import control, kafka, reread  # noqa: PLC0415

        return Backend(
            name,
            kafka.Admin,
            kafka.Producer,
            kafka.TransactionalProducer,
            kafka.RequestConsumer,
            control.ControlTopic,
            kafka.read_partition,
            reread.PartitionReader,
            kafka.producer_max_request_size,
        )
    if name == CONFLUENT_KAFKA:
        from connector.adapters import rdkafka, reread  # noqa: PLC0415  # optional extra

        def partition_reader(*args: Any) -> rdkafka.PartitionReader:
            return rdkafka.PartitionReader(*args, fetch_bytes=reread.FETCH_BYTES)

        return Backend(
            name,
            rdkafka.Admin,
            rdkafka.Producer,
            rdkafka.TransactionalProducer,
            rdkafka.RequestConsumer,
            rdkafka.ControlTopic,
            rdkafka.read_partition,
            partition_reader,
            rdkafka.producer_max_request_size,
        )
    from connector.errors import ConfigError  # noqa: PLC0415

    raise ConfigError(f"CONNECTOR_KAFKA_CLIENT must be one of {', '.join(CLIENTS)}, got {name!r}")
