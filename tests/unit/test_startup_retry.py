"""`connect_with_retry`: the sidecar may start before Kafka, but bad settings fail at once."""

from __future__ import annotations

import threading

import pytest
from kafka.errors import KafkaConfigurationError, KafkaTimeoutError

from connector.adapters.kafka import connect_with_retry
from connector.errors import BrokerUnavailable, ConfigError


def test_retries_until_the_broker_answers() -> None:
    """Transient Kafka errors are retried; the first success is returned."""
    calls = []

    def make() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaTimeoutError("no broker yet")
        return "client"

    assert connect_with_retry(make, "test", timeout_s=30, stop=threading.Event()) == "client"
    assert len(calls) == 3


def test_gives_up_with_a_clear_error_after_the_timeout() -> None:
    """Past the start-up timeout the error names what could not connect."""

    def make() -> str:
        raise KafkaTimeoutError("still nothing")

    with pytest.raises(BrokerUnavailable, match="Kafka not reachable for consumer"):
        connect_with_retry(make, "consumer", timeout_s=0.2)


def test_configuration_errors_are_not_retried() -> None:
    """A wrong setting will not fix itself: fail on the first attempt."""
    calls = []

    def make() -> str:
        calls.append(1)
        raise KafkaConfigurationError("Unrecognized configs: {'nope'}")

    with pytest.raises(ConfigError, match="invalid Kafka settings"):
        connect_with_retry(make, "producer", timeout_s=30)
    assert len(calls) == 1


def test_stop_interrupts_the_wait() -> None:
    """A SIGTERM during start-up ends the retry loop instead of waiting out the timeout."""
    stop = threading.Event()
    stop.set()

    def make() -> str:
        raise KafkaTimeoutError("no broker")

    with pytest.raises(BrokerUnavailable):
        connect_with_retry(make, "admin", timeout_s=300, stop=stop)
