"""Fixtures for sidecar tests: the emulator in-process and a fresh set of topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sidecar_harness import Topics

from connector.client import RequestPublisher
from connector.emulator import EmulatorConfig, EmulatorServer


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Fast lifecycle so a job ends within a second or two."""
    return EmulatorConfig(queue_delay_s=0.1, processing_delay_s=0.3, per_request_delay_s=0.0)


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[EmulatorServer]:
    """A Gemini Batch API emulator on a free port, stopped after the test."""
    with EmulatorServer(emulator_config, host="127.0.0.1", port=0) as srv:
        yield srv


@pytest.fixture
def topics(topic_factory: Callable[..., str], group_factory: Callable[[], str]) -> Topics:
    """Request topic with 2 partitions (so co-partitioning is exercised), results, DLQ."""
    return Topics(
        requests=topic_factory(partitions=2),
        results=topic_factory(partitions=2),
        dlq=topic_factory(partitions=2),
        group=group_factory(),
    )


@pytest.fixture
def publisher(kafka_bootstrap: str, topics: Topics) -> Iterator[RequestPublisher]:
    pub = RequestPublisher(kafka_bootstrap, topics.requests)
    try:
        yield pub
    finally:
        pub.close()
