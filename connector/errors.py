"""The sidecar's exception tree; library errors are mapped into it at their shell.

ConnectorError
├── ConfigError          bad or missing settings; the process refuses to start
│   └── AccessDenied     Kafka refused the credentials or an ACL: fatal, never retried
├── DecodeError          a record's bytes are not a request event we can read
├── InvalidRequest       a decoded request breaks the contract (shape, size, kind)
├── RegistryUnavailable  the schema registry did not answer: the record waits, it is not bad
├── LedgerError          the ledger topic is missing, mismatched or unreadable
├── KafkaError           a Kafka call failed (mapped from kafka-python in adapters.kafka)
│   ├── BrokerUnavailable  no broker answered (outage, restart): wait and try again
│   ├── CommitFailed       an offset commit was refused (rebalance in progress)
│   │   └── Fenced         a transaction was refused: the group moved on without us
│   └── ProduceFailed      a record was not acked; nothing after it may be committed
│       └── RecordTooLarge   this one record is over the topic's or producer's size limit
└── ProviderError        a Gemini call failed
    ├── ProviderRetryable  429, 5xx, timeouts: back off and try again
    └── ProviderRejected   4xx other than 429: trying again will not help
        ├── ProviderAuthFailed      401, 403, API_KEY_INVALID: the key, not the request (an outage)
        ├── ProviderRequestTooLarge 400 "payload size exceeds the limit" on an inline create
        └── ProviderFileGone        403/404 on a file: expired (48 h) or deleted

TransactionInDoubt (a BaseException, like SystemExit) a transaction call outlived its
                     watchdog: its outcome is unknown, so the process exits
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root of every error the sidecar raises on purpose."""


class ConfigError(ConnectorError):
    """Raised when settings are missing or contradictory; the sidecar does not start."""


class AccessDenied(ConfigError):
    """Raised when Kafka refuses authentication or an operation (a missing ACL).

    Waiting does not fix a wrong password or a missing ACL, so it is fatal like a bad
    setting; the message names the principal and what it was refused.
    """


class DecodeError(ConnectorError):
    """Raised when a record's bytes cannot be decoded as a request event."""


class InvalidRequest(ConnectorError):
    """Raised when a decoded request breaks the contract; carries a user-facing reason."""

    def __init__(self, reason: str, status: str = "INVALID_ARGUMENT", code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


class RegistryUnavailable(ConnectorError):
    """Raised when the schema registry cannot be reached; transient, never a dead letter."""


class LedgerError(ConnectorError):
    """Raised when the ledger topic cannot be used safely."""


class KafkaError(ConnectorError):
    """Raised when a Kafka call fails; kafka-python's own types never leave the adapter."""


class BrokerUnavailable(KafkaError):
    """Raised when no broker answered in time; an outage, not a configuration problem."""


class OpenTransaction(BrokerUnavailable):
    """A read_committed read of a partition waited in vain for an open transaction to end
    (it holds the partition's last stable offset); a hanging one needs an abort
    (`adapters.hanging`)."""

    def __init__(self, topic: str, partition: int, detail: str = "") -> None:
        super().__init__(f"an open transaction holds {topic}[{partition}]{detail}")
        self.topic = topic
        self.partition = partition


class CommitFailed(KafkaError):
    """Raised when the group refused an offset commit (typically a rebalance in progress)."""


class Fenced(CommitFailed):
    """Raised when the group coordinator refuses a transaction's offsets (KIP-447).

    The consumer's generation is stale: the group dropped this replica (a pass that
    outlived max.poll.interval.ms, a freeze) and its partitions may have a new owner. The
    transaction was aborted; the replica must forget those partitions and create nothing.
    """


class ProduceFailed(KafkaError):
    """Raised when a produced record was not acked (after the producer's own retries)."""


class RecordTooLarge(ProduceFailed):
    """Raised (or reported by a send handle) when one record exceeds a size limit.

    Only that record failed; the sink answers it another way (an error result, a truncated
    dead letter) instead of stopping the partition.
    """


class ProviderError(ConnectorError):
    """Raised when a call to Gemini fails."""

    def __init__(self, message: str, code: int = 0, status: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class ProviderRetryable(ProviderError):
    """Raised for failures worth retrying with backoff (429, 5xx, timeouts, resets)."""


class ProviderRejected(ProviderError):
    """Raised when the provider refuses a call for good (4xx other than 429)."""


class ProviderAuthFailed(ProviderRejected):
    """Raised for 401, 403 PERMISSION_DENIED (not about a file) and 400 API_KEY_INVALID.

    The key was rotated or lost its permission: an outage to wait out, never the fault of
    the requests of a job.
    """


class ProviderRequestTooLarge(ProviderRejected):
    """Raised when a create is refused because its body is over the size limit (400)."""


class ProviderFileGone(ProviderRejected):
    """Raised when a file no longer exists (403/404): past its 48 h TTL, or deleted."""


class ClaimExpired(ConnectorError):
    """Raised in place of a create whose claim is no longer fresh when its request is about
    to go out (the process stalled between the claim and the send): nothing was sent, so
    no job can exist; the job is claimed again, which a replica the group dropped meanwhile
    cannot do."""


class TransactionInDoubt(BaseException):
    """Raised when a transaction's commit or abort outlived its watchdog (kafka-python waits
    on the broker without a timeout of its own): whether it committed is unknown, and the
    producer cannot begin another. The process exits; the ledger and the broker's
    transaction timeout make that safe.

    A BaseException, like SystemExit: no per-job or per-command `except Exception` may
    swallow it and carry on as if the transaction had committed.
    """
