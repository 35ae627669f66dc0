"""What the submitter and the tracker share: the shells, the owned partitions, the clocks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.config import Settings
from connector.core import policy
from connector.core.codec import Codec
from connector.core.partitions import Partitions, Stats, Tracked
from connector.core.ports import GeminiPort, LedgerPort, ProducerPort, RequestReaderPort
from connector.stages.sink import Sink


@dataclass(slots=True)
class Context:
    """One replica's wiring, built by the runner once Kafka is reachable."""

    settings: Settings
    gemini: GeminiPort
    codec: Codec
    producer: ProducerPort
    ledger: LedgerPort
    reader: RequestReaderPort
    sink: Sink
    retry: policy.RetryPolicy
    stats: Stats
    clock: Callable[[], float]
    wall_ms: Callable[[], int]
    owned: Partitions = field(default_factory=Partitions)
    rand: random.Random = field(default_factory=random.Random)

    def reschedule(self, t: Tracked, now: float) -> None:
        """Back off after a failed call for this job (see `policy.failure_delay`)."""
        t.failures += 1
        t.due = now + policy.failure_delay(t.failures, self.rand.random())
