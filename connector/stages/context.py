"""What the submitter and the tracker share: the shells, the owned partitions, the clocks."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog

from connector.config import Settings
from connector.core import policy
from connector.core.codec import Codec
from connector.core.observe import Observer
from connector.core.partitions import Partitions, Stats, Tracked
from connector.core.ports import (
    ConsumerPort,
    GeminiPort,
    LedgerPort,
    ProducerPort,
    RequestReaderPort,
    SendHandle,
    TransactionalProducerPort,
)
from connector.core.results import Original
from connector.errors import Fenced, ProviderAuthFailed
from connector.stages.sidelog import SideLog
from connector.stages.sink import Sink
from connector.stages.spool import SpoolGate

log = structlog.get_logger("connector")


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
    txn: TransactionalProducerPort | None = None
    """Claims before each create; in exactly-once mode also `producer` itself."""
    consumer: ConsumerPort | None = None
    """The group member whose generation fences every transaction (KIP-447)."""
    background: Executor | None = None
    """Runs long provider transfers (results downloads, input uploads) off the loop thread;
    None: inline."""
    reads: Executor | None = None
    """Reads jobs (`gemini.get`) off the loop thread, apart from `background` so a poll never
    waits behind a 2 GB transfer; None: inline (the fast tests, the simulator)."""
    spool: SpoolGate = field(default_factory=SpoolGate)
    """Where input and results files are spooled, each after a free-space check."""
    sidelog: SideLog | None = None
    """What results need of each request taken in, so delivery need not re-read it; None:
    delivery always re-reads."""

    def originals(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        """The requests at `offsets` for their results: from the side log, else re-read."""
        offsets = list(offsets)
        if self.sidelog is not None:
            got = self.sidelog.read(partition, offsets)
            if got is not None:
                return got
        return self.reader.read(partition, offsets)

    def fence_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        """The partitions' committed offsets, committed again inside a transaction so that
        the group coordinator checks this replica still owns them (a stale member fails)."""
        return {
            p: st.committed
            for p in set(partitions)
            if (st := self.owned.get(p)) is not None and st.committed >= 0
        }

    def prove_ownership(
        self, partitions: Iterable[int], sends: Sequence[SendHandle] = (), results: bool = False
    ) -> None:
        """Commit `sends` in one transaction with the partitions' committed offsets: the group
        coordinator accepts it only from the current generation (KIP-447), else `Fenced`.

        What every create and every delete at the provider is preceded by. A partition whose
        committed offset is not known cannot be proven owned: `Fenced` too, never a
        transaction without offsets (which the coordinator would not check at all).
        `results`: `sends` hold results, committed with the sink's fallback for a record
        refused as too large (`Sink.commit_transaction`).
        """
        assert self.txn is not None
        assert self.consumer is not None
        wanted = set(partitions)
        offsets = self.fence_offsets(wanted)
        if missing := wanted - set(offsets):
            raise Fenced(f"ownership of partitions {sorted(missing)} unproven: no committed offset")
        if results:
            self.sink.commit_transaction(self.txn, sends, offsets, self.consumer)
        else:
            self.txn.commit_transaction(sends, offsets, self.consumer)

    def commit(self, sends: Sequence[SendHandle], partitions: Iterable[int]) -> None:
        """Make `sends` durable: acked (at-least-once), or one transaction fenced by the
        group generation of `partitions` (exactly-once; raises `Fenced` when stale). Either
        way through the sink: a record refused as too large is answered another way."""
        if self.settings.exactly_once and self.txn is not None:
            assert self.consumer is not None
            offsets = self.fence_offsets(partitions)
            self.sink.commit_transaction(self.txn, sends, offsets, self.consumer)
        else:
            self.sink.flush_and_check(sends)

    @contextmanager
    def unit(self) -> Iterator[None]:
        """One unit of work (a job's step, an operator command): in exactly-once mode it
        begins a transaction, and any failure inside aborts whatever it sent, so no later,
        unrelated commit can carry those sends. The unit commits its own sends."""
        if self.settings.exactly_once and self.txn is not None:
            self.txn.begin_transaction()
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Abort the open transaction (exactly-once): a unit or a pass failed."""
        if self.settings.exactly_once and self.txn is not None:
            self.txn.abort_transaction()

    def provider_answered(self, exc: Exception | None = None) -> None:
        """Track whether Gemini accepts our API key: `exc` is the call's error, None if it worked.

        A rejected key is an outage (rotated or revoked key), never the requests' fault: jobs
        wait with capped backoff while `stats.provider_auth_failing` reports it.
        """
        failing = isinstance(exc, ProviderAuthFailed)
        if failing and not self.stats.provider_auth_failing:
            log.error("Gemini refuses the API key; jobs wait until it is accepted", error=str(exc))
        elif not failing and exc is None and self.stats.provider_auth_failing:
            log.warning("Gemini accepts the API key again")
        if failing or exc is None:
            self.stats.provider_auth_failing = failing

    def reschedule(self, t: Tracked, now: float) -> None:
        """Back off after a failed call for this job (see `policy.failure_delay`)."""
        t.failures += 1
        due = now + policy.failure_delay(t.failures, self.rand.random())
        # A job due for a lookup keeps its date: an earlier lookup could miss a late create.
        t.due = max(t.due, due) if t.lookup else due
