"""What the loop needs from Kafka and from Gemini, as small structural `Protocol`s.

The stages and the runner's loop are written against these, never against kafka-python or
google-genai, so the same code runs over the real adapters (`connector.adapters`) and over
the in-memory doubles of `connector.testing` in unit tests at second scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

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

    def pause(self, partitions: Iterable[int]) -> None: ...

    def resume_all(self) -> None: ...

    def close(self) -> None: ...


class LedgerPort(Protocol):
    """The compacted job ledger, partition p holding the jobs of request partition p."""

    def load(self, partition: int) -> dict[str, LedgerEntry]: ...

    def write(self, entry: LedgerEntry) -> SendHandle: ...

    def tombstone(self, entry: LedgerEntry) -> SendHandle: ...


class RequestReaderPort(Protocol):
    """Re-reads requests by offset (the ledger holds offsets, never payloads)."""

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        """Originals of the wanted offsets; offsets no longer retained are absent."""
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
    ) -> str: ...

    def get(self, name: str) -> RemoteJob: ...

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]: ...

    def upload_jsonl(self, lines: Iterator[bytes], display_name: str) -> str: ...

    def download(self, file_name: str) -> bytes: ...

    def delete_file(self, file_name: str) -> None: ...

    def cancel(self, name: str) -> None: ...

    def delete_job(self, name: str) -> None: ...
