"""What the submitter and the tracker share: the shells, the owned partitions, the clocks."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.config import Settings
from connector.core import policy
from connector.core.codec import Codec
from connector.core.observe import Observer
from connector.core.partitions import Partitions, Stats, Tracked
from connector.core.ports import GeminiPort, LedgerPort, ProducerPort, RequestReaderPort
from connector.core.records import LedgerEntry
from connector.core.results import Original
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
    obs: Observer = field(default_factory=Observer)

    def originals(self, entry: LedgerEntry) -> dict[int, Original]:
        """The job's requests, re-read from the request topic by offset."""
        return self.reader.read(entry.key.partition, entry.offsets)

    def reschedule(self, t: Tracked, now: float) -> None:
        """Back off after a failed call for this job (see `policy.failure_delay`)."""
        t.failures += 1
        t.due = now + policy.failure_delay(t.failures, self.rand.random())
