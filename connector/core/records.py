"""Plain data the whole sidecar speaks: requests, batches, ledger entries, results.

Leaf module: imports nothing from the rest of the package but the leaf `offsets`, so the
pure core and the I/O shells share one vocabulary without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connector.core.offsets import Offsets

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record, stripped of the client library's types."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


class Kind(StrEnum):
    """What the provider is asked to do with a request."""

    GENERATE = "generate"
    EMBED = "embed"


@dataclass(frozen=True, slots=True)
class BatchKey:
    """Requests share a job only when every field matches.

    The partition is part of the key so a job never spans request partitions:
    whoever owns partition p owns all of p's jobs (see docs/design.md).
    """

    partition: int
    model: str
    kind: Kind
    priority: int = 0
    group: str = ""


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """A decoded request event, as published by an upstream service."""

    request_id: str
    model: str
    kind: Kind
    body: str
    """The GenerateContentRequest or EmbedContentRequest as JSON text."""
    group: str = ""
    priority: int = 0
    deadline_ms: int | None = None
    """Epoch milliseconds after which an answer is useless; None means no deadline."""
    metadata: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A validated request at its position in the request topic."""

    partition: int
    offset: int
    event: RequestEvent
    size: int
    """Bytes the request adds to a job (its body plus envelope)."""
    est_tokens: int
    """A cheap estimate of input tokens, for the per-model enqueued-token budget."""
    kafka_key: bytes | None = None
    """The record's Kafka key: a result for this request goes under the same key."""

    @property
    def key(self) -> BatchKey:
        e = self.event
        return BatchKey(self.partition, e.model, e.kind, e.priority, e.group)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A batch the batcher closed: ready to become a ledger INTENT and then a job."""

    key: BatchKey
    requests: tuple[PendingRequest, ...]
    size: int
    use_file: bool
    """True when the job must go through an uploaded JSONL file instead of inline requests."""

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(r.offset for r in self.requests)

    @property
    def est_tokens(self) -> int:
        return sum(r.est_tokens for r in self.requests)


class EntryState(StrEnum):
    """Where a job stands in the ledger (a tombstone ends it).

    DONE: its results are out; the entry only covers its offsets (never submitted nor
    polled) until the partition's committed offset passes them, then it is tombstoned.
    Without it, a rewind below a finished job would batch its requests again.
    """

    INTENT = "INTENT"
    SUBMITTED = "SUBMITTED"
    DONE = "DONE"


@dataclass(frozen=True, slots=True)
class DeliveryCursor:
    """How far a finished job's results are produced and acked (ledger v3), so a restart
    resumes there: the duplicate window of a crash mid-delivery is one chunk, not the job.

    Results go out in the order of the job's offsets, so what was answered is a prefix of
    them, known from the entry alone (`core.lifecycle.delivered`)."""

    items: int
    """Unused since results go out in offset order (0); kept for the ledger schema."""
    scanned: int = 0
    """The job's offsets (ascending) answered so far, every one acked: a prefix."""
    last_key: str = ""
    """The key of the last request answered (for the logs and `connector status`)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One job in the ledger: references to requests, never payloads."""

    job_id: str
    """Unique per job; derived jobs append /a, /b or /r<attempt>."""
    key: BatchKey
    offsets: Offsets
    """Request offsets in partition key.partition, ascending, as compact runs (a tuple or any
    iterable of ints given here is converted; an `Offsets` equals the tuple it was built from)."""
    attempt: int
    display_name: str
    state: EntryState
    use_file: bool
    est_tokens: int
    created_ms: int
    updated_ms: int
    provider_job: str | None = None
    """The provider's `batches/ID` once created."""
    input_file: str | None = None
    """The uploaded `files/ID`, for cleanup."""
    request_topic: str = ""
    """The request topic the offsets belong to; "" in entries written before ledger v2."""
    delivered: DeliveryCursor | None = None
    """Set while a SUCCEEDED job's results go out chunk by chunk (ledger v3)."""
    epoch: int = field(default=0, compare=False)
    """The take-over epoch of the replica that wrote this record (a ledger header, not the
    Avro value; 0: written before epochs, or not loaded from the ledger). Not compared: an
    entry in memory equals the record written from it (`core.epochs`)."""

    def __post_init__(self) -> None:
        if type(self.offsets) is not Offsets:
            object.__setattr__(self, "offsets", Offsets(self.offsets))


class JobState(StrEnum):
    """The provider's view of a job, independent of the SDK's enum."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A clear error for one request: google.rpc-style code and status plus a message."""

    code: int
    status: str
    message: str


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one response. The per-modality counts (from usageMetadata's
    promptTokensDetails and candidatesTokensDetails) price audio input, image and audio
    output at their own rates; they are not part of the result event's schema."""

    prompt_tokens: int = 0
    candidates_tokens: int = 0
    total_tokens: int = 0
    prompt_audio_tokens: int = 0
    output_image_tokens: int = 0
    output_audio_tokens: int = 0


class ResultStatus(StrEnum):
    OK = "OK"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class ResultEvent:
    """Exactly one per request (duplicates only in the documented window)."""

    request_id: str
    status: ResultStatus
    model: str
    kind: Kind
    response_json: str | None = None
    error: ErrorInfo | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    batch_job: str | None = None
    attempt: int = 0
    usage: TokenUsage | None = None
    request_created_ms: int = 0
    completed_ms: int = 0
    source_partition: int = -1
    source_offset: int = -1
    cost_usd: float | None = None
    """Estimated cost at the Batch API price (USD); None when usage or price is unknown."""


@dataclass(frozen=True, slots=True)
class OutputItem:
    """One request's outcome inside a finished job, correlated by its key (never position)."""

    key: str
    response: dict[str, object] | None
    error: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class JobProgress:
    """The provider's `batchStats` for a job: how many of its requests are done."""

    total: int
    succeeded: int
    failed: int
    pending: int

    @property
    def fraction(self) -> float:
        return (self.succeeded + self.failed) / self.total if self.total > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RemoteJob:
    """What the provider says about a job."""

    name: str
    state: JobState
    display_name: str | None
    inline: tuple[OutputItem, ...] | None
    responses_file: str | None
    progress: JobProgress | None = None


@dataclass(frozen=True, slots=True)
class JobInput:
    """A request to place in a job: its correlation key and REST body."""

    key: str
    body: dict[str, Any]
    metadata: dict[str, str]
