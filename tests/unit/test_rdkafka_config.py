"""CONNECTOR_KAFKA_* settings (kafka-python's names) mapped to librdkafka's, per client role.

Pure mapping, no broker: `adapters.rdkafka.rd_config` and `producer_config`.
"""

from __future__ import annotations

import pytest

pytest.importorskip("confluent_kafka")

from connector.adapters.rdkafka import (
    CONSUMER,
    PRODUCER,
    producer_config,
    rd_config,
)
from connector.errors import ConfigError


def test_the_metadata_refresh_that_finds_new_partitions_is_librdkafkas_refresh_interval() -> None:
    """kafka-python's metadata_max_age_ms forces the refresh that discovers partitions added
    to the request topic; librdkafka's equivalent is topic.metadata.refresh.interval.ms
    (its metadata.max.age.ms only expires the cache). Mapped to the latter, the chaos run's
    grown partitions went unread on librdkafka for its whole phase."""
    for role in (CONSUMER, PRODUCER):
        cfg = rd_config("b:9092", {"metadata_max_age_ms": 5000}, role)
        assert cfg["topic.metadata.refresh.interval.ms"] == 5000
        assert "metadata.max.age.ms" not in cfg


def test_settings_go_only_to_the_clients_that_take_them_and_unknown_ones_are_refused() -> None:
    extra = {"session_timeout_ms": 6000, "linger_ms": 5, "sasl_mechanism": "plain"}
    consumer = rd_config("b:9092", extra, CONSUMER)
    producer = rd_config("b:9092", extra, PRODUCER)
    assert consumer["session.timeout.ms"] == 6000
    assert "linger.ms" not in consumer
    assert producer["linger.ms"] == 5
    assert "session.timeout.ms" not in producer
    assert consumer["sasl.mechanism"] == producer["sasl.mechanism"] == "PLAIN"
    with pytest.raises(ConfigError, match="no librdkafka equivalent"):
        rd_config("b:9092", {"max_poll_records": 10}, CONSUMER)


def test_the_producer_keeps_idempotence_acks_and_javas_placement() -> None:
    cfg = producer_config("b:9092", {"linger_ms": 50})
    assert cfg["enable.idempotence"] is True
    assert cfg["acks"] == "all"
    assert cfg["partitioner"] == "murmur2_random"
    assert cfg["linger.ms"] == 50
