"""The transactional producer's failure handling, on a stand-in for kafka-python's client
(the broker's side is in tests/integration/test_transactions_broker.py): a stuck commit
ends the process, producer fencing is `Fenced`, and a unit's leftovers are aborted."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kafka.errors import ProducerFencedError

from connector.adapters.kafka import TransactionalProducer
from connector.errors import ConfigError, Fenced, TransactionInDoubt


class _Client:
    """What `TransactionalProducer` calls on kafka-python's producer."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.commit_error: BaseException | None = None
        self.block = threading.Event()
        self.hang = False

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send(self, topic: str, **kwargs: Any) -> Any:
        self.calls.append("send")
        return _Done()

    def flush(self, timeout: float | None = None) -> None:
        self.calls.append("flush")

    def commit_transaction(self) -> None:
        self.calls.append("commit")
        if self.hang:
            self.block.wait(5)
        if self.commit_error is not None:
            raise self.commit_error

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


class _Done:
    is_done = True
    exception = None

    def succeeded(self) -> bool:
        return True


def _producer(monkeypatch: pytest.MonkeyPatch, timeout_s: float = 5.0) -> tuple[Any, list[Any]]:
    made: list[_Client] = []

    def make(self: TransactionalProducer) -> _Client:
        made.append(_Client())
        return made[-1]

    monkeypatch.setattr(TransactionalProducer, "_make", make)
    p = TransactionalProducer("localhost:1", {}, "txn-1", timeout_s=timeout_s)
    return p, made


def test_a_commit_that_outlives_its_watchdog_ends_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A5: the watchdog's timeout is not a Kafka error the loop backs off from: the outcome
    is unknown, so `TransactionInDoubt` (a BaseException) passes every per-job handler."""
    p, made = _producer(monkeypatch, timeout_s=0.05)
    made[0].hang = True
    sent = [p.send("t", b"v")]
    with pytest.raises(TransactionInDoubt):
        p.commit_transaction(sent, {}, consumer=None)
    made[0].block.set()
    assert not issubclass(TransactionInDoubt, Exception)


def test_a_fenced_producer_is_fenced_and_replaced_then_a_config_error_if_it_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A10: a transaction past transaction.timeout.ms gets the producer fenced: `Fenced`
    (the loop drops its partitions) and a fresh producer takes the id over. Fenced again
    at once, with no commit in between: another live producer has the id. Renewed at its
    next use, not at once: a replacement that took the id is not fenced back before it was
    even used."""
    p, made = _producer(monkeypatch)
    made[0].commit_error = ProducerFencedError()
    with pytest.raises(Fenced):
        p.commit_transaction([p.send("t", b"v")], {}, consumer=None)
    assert "close" in made[0].calls
    assert len(made) == 1
    p.begin_transaction()
    assert len(made) == 2
    made[1].commit_error = ProducerFencedError()
    with pytest.raises(ConfigError):
        p.commit_transaction([p.send("t", b"v")], {}, consumer=None)


def test_begin_aborts_what_a_failed_unit_left_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A5: sends of a unit that failed before its commit never ride the next commit."""
    p, made = _producer(monkeypatch)
    p.send("t", b"stray")
    p.begin_transaction()
    assert made[0].calls == ["begin", "send", "abort", "begin"]
    p.commit_transaction([p.send("t", b"v")], {}, consumer=None)
    assert made[0].calls[-3:] == ["send", "flush", "commit"]


def test_a_producer_that_cannot_be_renewed_yet_is_renewed_at_its_next_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker is down as the fenced producer is replaced (at its next use): a Kafka
    failure the loop backs off from (not a fatal error), and the next unit renews it."""
    from kafka.errors import KafkaTimeoutError

    from connector.errors import BrokerUnavailable

    made: list[_Client] = []
    fail = [False]

    def make(self: TransactionalProducer) -> _Client:
        if fail[0]:
            fail[0] = False
            raise KafkaTimeoutError("no broker")
        made.append(_Client())
        return made[-1]

    monkeypatch.setattr(TransactionalProducer, "_make", make)
    p = TransactionalProducer("localhost:1", {}, "txn-1")
    made[0].commit_error = ProducerFencedError()
    with pytest.raises(Fenced):
        p.commit_transaction([p.send("t", b"v")], {}, consumer=None)
    fail[0] = True
    with pytest.raises(BrokerUnavailable):
        p.begin_transaction()
    p.begin_transaction()
    assert len(made) == 2
    p.commit_transaction([p.send("t", b"v")], {}, consumer=None)
    assert made[1].calls[-1] == "commit"
