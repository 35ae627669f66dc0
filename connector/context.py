"""What the submitter and the tracker share: the shells, the owned partitions, the clocks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connector import policy
from connector.codec import Codec
from connector.config import Settings
from connector.gemini import Gemini
from connector.jobs import Partitions, Stats, Tracked
from connector.kafka_io import Producer
from connector.ledger import Ledger
from connector.outcomes import Original
from connector.records import LedgerEntry
from connector.replay import reread
from connector.sink import Sink


@dataclass(slots=True)
class Context:
    """One replica's wiring, built by the runner once Kafka is reachable."""

    settings: Settings
    gemini: Gemini
    codec: Codec
    producer: Producer
    ledger: Ledger
    sink: Sink
    retry: policy.RetryPolicy
    stats: Stats
    clock: Callable[[], float]
    wall_ms: Callable[[], int]
    owned: Partitions = field(default_factory=Partitions)
    rand: random.Random = field(default_factory=random.Random)

    @property
    def kafka_extra(self) -> dict[str, Any]:
        return dict(self.settings.kafka_extra)

    def originals(self, entry: LedgerEntry) -> dict[int, Original]:
        """The job's requests, re-read from the request topic by offset."""
        s = self.settings
        return reread(
            s.request_topic,
            entry.key.partition,
            entry.offsets,
            self.codec,
            s.bootstrap_servers,
            self.kafka_extra,
        )

    def reschedule(self, t: Tracked, now: float) -> None:
        """Back off after a failed call: exponential with full jitter, capped at a minute."""
        t.tries += 1
        t.due = now + 0.5 + policy.backoff_with_jitter(t.tries, 1.0, 60.0, self.rand.random())
