"""`connector dlq replay`: re-publish dead letters to the request topic after a fix.

Reads the dead-letter topic from its beginning to its current end (a group-less reader, so a
replay never moves any consumer group), keeps the records the filter matches, and sends each
one's original key and value to the request topic with its provenance (`core/dlq.py`). A dry
run prints what would be sent and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.adapters.kafka import Admin, Producer, read_partition
from connector.core.dlq import DlqFilter, provenance, replay_headers
from connector.core.ports import SendHandle
from connector.errors import ConfigError

__all__ = ["ReplaySummary", "replay_dead_letters"]


@dataclass(slots=True)
class ReplaySummary:
    scanned: int = 0
    matched: int = 0
    replayed: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)


def replay_dead_letters(
    bootstrap: str,
    kafka_extra: Mapping[str, Any],
    dlq_topic: str,
    request_topic: str,
    flt: DlqFilter,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
) -> ReplaySummary:
    admin = Admin(bootstrap, kafka_extra)
    try:
        partitions = admin.partitions(dlq_topic)
        if partitions is None:
            raise ConfigError(f"dead-letter topic {dlq_topic!r} does not exist")
        if admin.partitions(request_topic) is None:
            raise ConfigError(f"request topic {request_topic!r} does not exist")
    finally:
        admin.close()
    summary = ReplaySummary()
    producer = None if dry_run else Producer(bootstrap, kafka_extra)
    try:
        for p in range(partitions):
            sent: list[SendHandle] = []
            for rec in read_partition(dlq_topic, p, bootstrap, kafka_extra):
                summary.scanned += 1
                if not flt.matches(rec):
                    continue
                summary.matched += 1
                headers = replay_headers(rec)
                stage = dict(headers).get("connector.replay.reason", b"").decode().split(":")[0]
                summary.by_stage[stage] = summary.by_stage.get(stage, 0) + 1
                key = rec.key.decode(errors="replace") if rec.key is not None else "-"
                verb = "would replay" if dry_run else "replay"
                out(
                    f"{verb} {rec.topic}/{rec.partition}@{rec.offset} key={key} "
                    f"original={provenance(rec)} stage={stage}"
                )
                if producer is not None:
                    sent.append(producer.send(request_topic, rec.value, rec.key, headers))
            if producer is not None:
                producer.flush_and_check(sent)
                summary.replayed += len(sent)
    finally:
        if producer is not None:
            producer.close()
    return summary
