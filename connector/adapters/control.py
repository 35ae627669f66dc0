"""The control topic over kafka-python: operator commands in, their tombstones out.

Every replica reads the whole (compacted, one-partition) topic with a group-less consumer:
the first poll reads from the beginning to the end offset it finds, so the commands still
pending are known before any request partition is recovered; every later poll returns at
once with what arrived since. Commands are written by `connector cancel` (`publish`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from connector.adapters.kafka import Admin, Producer, Sent, _record, client_config
from connector.config import Settings
from connector.core import control
from connector.core.records import Record
from connector.errors import BrokerUnavailable

log = structlog.get_logger(__name__)

CONTROL_CONFIGS = {"cleanup.policy": "compact"}
CATCH_UP_TIMEOUT_S = 30.0


def ensure_control_topic(admin: Admin, topic: str) -> int:
    """Create the control topic if missing (compacted, one partition: commands are few)."""
    return admin.ensure_topic(topic, 1, CONTROL_CONFIGS)


class ControlTopic:
    """A `ControlPort`: reads every partition of the control topic, retires commands."""

    def __init__(
        self, topic: str, producer: Producer, bootstrap: str, extra: Mapping[str, Any]
    ) -> None:
        self.topic = topic
        self._producer = producer
        cfg = client_config(KafkaConsumer, bootstrap, extra, "control")
        # kafka-python's errors propagate here: the runner retries the connect.
        self._consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **cfg)
        parts = self._consumer.partitions_for_topic(topic) or {0}
        self._tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)
        self._caught_up = False

    def poll(self) -> list[Record]:
        try:
            if not self._caught_up:
                return self._catch_up()
            return self._take(0)
        except KafkaError as exc:
            raise BrokerUnavailable(f"reading control topic {self.topic!r}: {exc!r}") from exc

    def _take(self, timeout_ms: int) -> list[Record]:
        got = self._consumer.poll(timeout_ms=timeout_ms)
        return [_record(r) for tp in self._tps for r in got.get(tp, [])]

    def _catch_up(self) -> list[Record]:
        end = self._consumer.end_offsets(self._tps)
        out: list[Record] = []
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while any(self._consumer.position(tp) < end[tp] for tp in self._tps):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"timed out reading control topic {self.topic!r}")
            out.extend(self._take(200))
        self._caught_up = True
        return out

    def retire(self, key: str) -> Sent:
        return self._producer.send(self.topic, None, key=key.encode(), partition=0)

    def close(self) -> None:
        self._consumer.close()


def control_topic(admin: Admin, s: Settings) -> str:
    """The control topic the sidecar of these settings reads: `s.control`, named after the
    ledger the sidecar settles on at start (an earlier release's `<group>.ledger` is kept)."""
    if (
        not s.control_topic
        and not s.ledger_topic
        and admin.partitions(s.ledger) is None
        and admin.partitions(s.legacy_ledger) is not None
    ):
        return replace(s, ledger_topic=s.legacy_ledger).control
    return s.control


def publish(
    bootstrap: str, extra: Mapping[str, Any], settings: Settings, cmd: control.Command
) -> tuple[str, int]:
    """Write one command to the deployment's control topic (created if missing); returns
    the topic and the command's offset."""
    admin = Admin(bootstrap, extra)
    try:
        topic = control_topic(admin, settings)
        ensure_control_topic(admin, topic)
    finally:
        admin.close()
    producer = Producer(bootstrap, extra)
    try:
        sent = producer.send(topic, control.encode(cmd), key=cmd.key.encode(), partition=0)
        producer.flush_and_check([sent])
        return topic, int(sent.future.value.offset)
    finally:
        producer.close()
