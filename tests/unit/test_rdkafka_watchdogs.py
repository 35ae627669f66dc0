"""librdkafka calls that may never return are bounded: closing the group consumer (seen once
for a member the group had expelled), a synchronous offset commit, and the transactional
calls, so none holds the sidecar's loop, its stop, or CI, forever."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("confluent_kafka")

from connector.adapters import rdkafka
from connector.errors import CommitFailed, TransactionInDoubt


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


# -- librdkafka calls that do not keep their own timeout run under a watchdog ------------------


class Stuck:
    """A librdkafka handle whose named calls never return (until released)."""

    def __init__(self, *stuck: str) -> None:
        self.stuck = set(stuck)
        self.release = threading.Event()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> None:
            self.calls.append(name)
            if name in self.stuck:
                self.release.wait(30)

        return call


class Member:
    def transaction_offsets(self, offsets: dict[int, int]) -> tuple[object, object]:
        return [("t", p, o) for p, o in offsets.items()], "group-metadata"


def txn_producer(handle: Stuck) -> rdkafka.TransactionalProducer:
    p = object.__new__(rdkafka.TransactionalProducer)
    p._producer = handle  # type: ignore[attr-defined]
    p._timeout_s = 0.1  # type: ignore[attr-defined]
    p._open = True  # type: ignore[attr-defined]
    p._sends = 0  # type: ignore[attr-defined]
    p._stale = False  # type: ignore[attr-defined]
    p._fenced_at = None  # type: ignore[attr-defined]
    p._transactional_id = "tx"  # type: ignore[attr-defined]
    return p


@pytest.mark.parametrize("stuck", ["send_offsets_to_transaction", "commit_transaction"])
def test_a_transaction_call_that_never_returns_is_in_doubt_and_the_producer_renewed(
    monkeypatch: pytest.MonkeyPatch, stuck: str
) -> None:
    monkeypatch.setattr(rdkafka, "WATCHDOG_MARGIN_S", 0.2)
    handle = Stuck(stuck)
    p = txn_producer(handle)
    try:
        with pytest.raises(TransactionInDoubt, match=stuck):
            p.commit_transaction([], {0: 5}, Member())
        assert stuck in handle.calls
        # The producer is not used again: its next use makes a fresh one (whose init fences
        # this one's epoch and aborts what it left open).
        assert p._stale  # type: ignore[attr-defined]
        assert not p._open  # type: ignore[attr-defined]
    finally:
        handle.release.set()


def test_an_abort_that_never_returns_is_in_doubt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rdkafka, "WATCHDOG_MARGIN_S", 0.2)
    handle = Stuck("abort_transaction")
    p = txn_producer(handle)
    try:
        with pytest.raises(TransactionInDoubt):
            p.abort_transaction()
        assert p._stale  # type: ignore[attr-defined]
    finally:
        handle.release.set()


def test_an_offset_commit_that_never_returns_is_a_failed_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next pass commits the same offsets again; the loop never waits without end."""
    monkeypatch.setattr(rdkafka, "OFFSETS_TIMEOUT_S", 0.1)
    monkeypatch.setattr(rdkafka, "WATCHDOG_MARGIN_S", 0.1)
    handle = Stuck("commit")
    c = object.__new__(rdkafka.RequestConsumer)
    c._consumer = handle  # type: ignore[attr-defined]
    c.topic = "requests"
    try:
        with pytest.raises(CommitFailed, match="did not complete"):
            c.commit({0: 3})
        assert handle.calls == ["commit"]
    finally:
        handle.release.set()


# -- the close gives the assignment up first (librdkafka#4884) ----------------------------------


class Revoking:
    """A group member whose revocation is served by its `k`-th poll after `unsubscribe`."""

    def __init__(self, k: int | None) -> None:
        self.k = k
        self.calls: list[str] = []
        self._assigned = True

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")

    def assignment(self) -> list[object]:
        return [object()] if self._assigned else []

    def consume(self, n: int, timeout: float) -> list[object]:
        self.calls.append("consume")
        if self.k is not None and self.calls.count("consume") >= self.k:
            self._assigned = False
        return []

    def close(self) -> None:
        assert not self._assigned or self.k is None, "closed with a revocation to serve"
        self.calls.append("close")


def _consumer(inner: object) -> rdkafka.RequestConsumer:
    c = object.__new__(rdkafka.RequestConsumer)
    c._consumer = inner  # type: ignore[attr-defined]
    c._max_records = 10  # type: ignore[attr-defined]
    return c


def test_the_close_serves_the_revocation_by_polls_before_it_closes() -> None:
    """A revocation left for the close to serve makes librdkafka call rd_kafka_assign from
    inside the close, holding the GIL: a freeze no watchdog can end."""
    inner = Revoking(k=3)
    _consumer(inner).close()
    assert inner.calls == ["unsubscribe", "consume", "consume", "consume", "close"]


def test_a_revocation_never_served_delays_the_close_by_its_bound_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rdkafka, "RELEASE_TIMEOUT_S", 0.05)
    inner = Revoking(k=None)
    began = time.monotonic()
    _consumer(inner).close()
    assert inner.calls[-1] == "close"
    assert time.monotonic() - began < 5
