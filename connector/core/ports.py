"""What the loop needs from Kafka and from Gemini, as small structural `Protocol`s.

The stages and the runner's loop are written against these, never against kafka-python or
google-genai, so the same code runs over the real adapters (`connector.adapters`) and over
the in-memory doubles of `connector.testing` in unit tests at second scale.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import IO, Any, Protocol

from connector.core.policy import ClaimWindow
from connector.core.records import Headers, JobInput, Kind, LedgerEntry, Record, RemoteJob
from connector.core.results import Original

RebalanceEvent = tuple[str, set[int]]
"""("assigned" | "revoked", partitions), in the order the group protocol reported them."""


class SendHandle(Protocol):
    """A pending produce; after a flush, `ok()` says whether the broker acked it."""

    def ok(self) -> bool: ...

    def error(self) -> BaseException | None: ...


class FlushPort(Protocol):
    """What a checkpoint needs: block until every handle is acked, or raise."""

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None: ...


class ProducerPort(Protocol):
    """Sends records; `flush_and_check` blocks until every handle is acked or raises."""

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> SendHandle: ...

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None: ...

    def close(self, timeout_s: float = 10.0) -> None: ...


class ConsumerPort(Protocol):
    """The consumer-group member that reads request records; one owning thread."""

    def poll(self, timeout_s: float) -> list[Record]: ...

    def rebalance_events(self) -> list[RebalanceEvent]: ...

    def commit(self, offsets: Mapping[int, int]) -> None: ...

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        """Seek each partition to its committed offset (or its beginning); return those."""
        ...

    def assignment(self) -> set[int]: ...

    def transaction_offsets(self, offsets: Mapping[int, int]) -> tuple[object, object]:
        """`offsets` in the client's own form, and the group membership they are fenced by.

        The two arguments of `send_offsets_to_transaction`: the group coordinator refuses
        them once the membership (generation) is stale (KIP-447).
        """
        ...

    def pause(self, partitions: Iterable[int]) -> None: ...

    def resume_all(self) -> None: ...

    def resume(self, partitions: Iterable[int]) -> None: ...

    def seek(self, partition: int, offset: int) -> None:
        """Read `partition` again from `offset` at the next poll."""
        ...

    def close(self) -> None: ...


class TransactionalProducerPort(ProducerPort, Protocol):
    """A producer with a transactional.id. A unit of work begins a transaction, sends,
    commits it, and aborts it on any failure; a send outside one begins it implicitly."""

    @property
    def transactional_id(self) -> str: ...

    def commit_transaction(
        self, sent: Sequence[SendHandle], offsets: Mapping[int, int], consumer: ConsumerPort
    ) -> None:
        """Flush and check `sent`, add `offsets` (fenced by the consumer's group generation),
        commit. Raises `Fenced` (the transaction aborted: the partitions are no longer ours)
        or another `KafkaError` (aborted too); blocks no longer than the producer's timeout.
        """
        ...

    def begin_transaction(self) -> None:
        """Start a unit of work; sends a failed unit left open are aborted first."""
        ...

    def resend(self, handle: SendHandle) -> SendHandle:
        """Send `handle`'s record again, in the open (or a new) transaction: its own
        transaction was aborted."""
        ...

    def abort_transaction(self) -> None:
        """Drop the open transaction's sends (nothing of it becomes visible); no-op if none."""
        ...


class LedgerPort(Protocol):
    """The compacted job ledger, partition p holding the jobs of request partition p."""

    def load(self, partition: int) -> dict[str, LedgerEntry]: ...

    def write(self, entry: LedgerEntry, producer: ProducerPort | None = None) -> SendHandle:
        """The entry, through `producer` when given (a transactional one: the write is
        then part of its open transaction), else the ledger's own producer."""
        ...

    def tombstone(self, entry: LedgerEntry, producer: ProducerPort | None = None) -> SendHandle:
        """The entry's tombstone, through `producer` when given (see `write`)."""
        ...

    def claim(self, entry: LedgerEntry, producer: ProducerPort, by: str) -> SendHandle:
        """The INTENT written again through `producer`, marked as claimed `by` (a header)."""
        ...

    def marked(self, partition: int, request_topic: str) -> int:
        """The highest take-over epoch of `request_topic` the last `load` of p saw (0: none)."""
        ...

    def write_stamped(
        self, entry: LedgerEntry, epoch: int, producer: ProducerPort | None = None
    ) -> SendHandle:
        """`write`, headed with a take-over `epoch` (none when 0): a sealed or re-stamped
        INTENT, the only writes `core.recovery.landed_late` judges."""
        ...

    def mark(
        self, partition: int, request_topic: str, epoch: int, producer: ProducerPort
    ) -> SendHandle:
        """The take-over marker of p at `epoch`, through `producer` (in its transaction)."""
        ...


class RequestReaderPort(Protocol):
    """Re-reads requests by offset (the ledger holds offsets, never payloads)."""

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        """Originals of the wanted offsets; offsets no longer retained are absent.

        Only the offsets' contiguous ranges are read (gaps between them are skipped), and
        everything asked for is held at once: callers pass bounded chunks
        (`core.spans.CHUNK_REQUESTS`), never a whole big job.
        """
        ...

    def retain(self, partitions: Collection[int]) -> None:
        """Close what is kept open for partitions not in `partitions` (revoked) or idle."""
        ...


class GeminiPort(Protocol):
    """Batch jobs and files at the provider; errors are `ProviderError`s, never SDK types."""

    def create(
        self,
        model: str,
        kind: Kind,
        display_name: str,
        priority: int,
        inline: Sequence[JobInput] | None = None,
        file_name: str | None = None,
        claim: ClaimWindow | None = None,
    ) -> str:
        """Create one job; `claim`: past it, raise `ClaimExpired` and send nothing."""
        ...

    def get(self, name: str) -> RemoteJob: ...

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]: ...

    def upload_jsonl(self, lines: Iterator[bytes], display_name: str) -> str: ...

    def upload_file(self, f: IO[bytes], display_name: str) -> str:
        """Upload an open JSONL input file (read from its current position); `files/ID`."""
        ...

    def download(self, file_name: str) -> bytes: ...

    def download_to(self, file_name: str, out: IO[bytes]) -> None:
        """Stream a results file into `out` (e.g. a temporary file), in chunks."""
        ...

    def delete_file(self, file_name: str) -> None: ...

    def cancel(self, name: str) -> None: ...

    def delete_job(self, name: str) -> None: ...


class ControlPort(Protocol):
    """The compacted control topic of operator commands (`connector cancel`), read by every
    replica without a consumer group."""

    def poll(self) -> list[Record]:
        """Records written since the last poll; the first poll reads from the beginning to
        the current end. Never blocks for long after that."""
        ...

    def retire(self, key: str) -> SendHandle:
        """A tombstone retiring the command under `key` (the caller commits it)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Ports:
    """What the loop talks to: the real adapters in `Sidecar.run()` (`connector.startup`),
    doubles in unit tests and the simulator."""

    consumer: ConsumerPort
    producer: ProducerPort
    ledger: LedgerPort
    reader: RequestReaderPort
    total_partitions: int = 1
    schema_by_id: Callable[[int], Any] | None = None
    """Confluent writer schemas by id (the schema registry), if one is configured."""
    result_schema_id: int | None = None
    """The registry id of the result schema, for CONNECTOR_RESULT_FORMAT=confluent."""
    ledger_max_message_bytes: int = 1_048_576
    """The ledger topic's max.message.bytes (or the producer's max_request_size if smaller):
    batches seal before their ledger entry could outgrow it."""
    grow_ledger: Callable[[], None] | None = None
    """Grow the ledger to the request topic's partitions (called when one appears)."""
    txn: TransactionalProducerPort | None = None
    """Transactional producer: claims before each create; in exactly-once mode, `producer`."""
    control: ControlPort | None = None
    """The control topic of operator commands (`connector cancel`); None: no commands."""
    background: Executor | None = None
    """Threads for long provider transfers (results downloads, input uploads); None: on the
    loop thread."""
    reads: Executor | None = None
    """Threads for job reads (`GeminiPort.get`: a finished inline job is one JSON body of
    all its responses, seconds to fetch and parse); None: on the loop thread."""
