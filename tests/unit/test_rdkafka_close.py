"""Closing the librdkafka group consumer is bounded: a close that never returns (seen once
for a member the group had expelled) must not hold the sidecar's stop, or CI, forever."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("confluent_kafka")

from connector.adapters import rdkafka


class HangingConsumer:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def close(self) -> None:
        self.entered.set()
        self.release.wait(30)


def test_a_close_that_hangs_is_left_behind_after_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rdkafka, "CLOSE_TIMEOUT_S", 0.2)
    c = object.__new__(rdkafka.RequestConsumer)
    hanging = HangingConsumer()
    c._consumer = hanging  # type: ignore[attr-defined]
    began = time.monotonic()
    try:
        c.close()
        assert hanging.entered.is_set()
        assert time.monotonic() - began < 10
    finally:
        hanging.release.set()


def test_a_close_that_fails_does_not_raise() -> None:
    class Failing:
        def close(self) -> None:
            raise RuntimeError("already closed")

    c = object.__new__(rdkafka.RequestConsumer)
    c._consumer = Failing()  # type: ignore[attr-defined]
    c.close()
