"""Which dead letters to replay and what the replayed record carries (pure).

A dead letter is the original request record, byte for byte, plus Kafka Connect's
`__connect.errors.*` provenance headers. Replaying it after a fix re-publishes the original
key and value to the request topic, drops the error headers (the record is no longer an
error) and records where it came from, so a replayed request can always be traced back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from connector.core.records import Headers, Record

__all__ = ["ERROR_PREFIX", "DlqFilter", "parse_time_ms", "provenance", "replay_headers"]

ERROR_PREFIX = "__connect.errors."
REPLAYED_FROM = "connector.replay.dlq"
"""`<dlq topic>/<partition>@<offset>` of the dead letter that was replayed."""
ORIGINAL = "connector.replay.original"
"""`<topic>/<partition>@<offset>` of the request record that was dead-lettered."""
REASON = "connector.replay.reason"
"""The stage and message it was dead-lettered with, for the record's history."""


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """All given conditions must hold; None means "any"."""

    stages: frozenset[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    keys: frozenset[bytes] | None = None

    def matches(self, rec: Record) -> bool:
        if self.since_ms is not None and rec.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and rec.timestamp_ms >= self.until_ms:
            return False
        if self.keys is not None and rec.key not in self.keys:
            return False
        if self.stages is not None:
            stage = _header(rec.headers, ERROR_PREFIX + "stage")
            if stage is None or stage.decode(errors="replace") not in self.stages:
                return False
        return True


def _header(headers: Headers, name: str) -> bytes | None:
    for k, v in reversed(headers):
        if k == name:
            return v
    return None


def provenance(rec: Record) -> str:
    """`topic/partition@offset` of the original request record (from the error headers)."""
    parts = [
        (_header(rec.headers, ERROR_PREFIX + f) or b"?").decode(errors="replace")
        for f in ("topic", "partition", "offset")
    ]
    return f"{parts[0]}/{parts[1]}@{parts[2]}"


def replay_headers(rec: Record) -> Headers:
    """The original headers without the error ones, plus where the replay came from."""
    kept = [(k, v) for k, v in rec.headers if not k.startswith(ERROR_PREFIX)]
    stage = (_header(rec.headers, ERROR_PREFIX + "stage") or b"").decode(errors="replace")
    message = (_header(rec.headers, ERROR_PREFIX + "exception.message") or b"").decode(
        errors="replace"
    )
    return [
        *kept,
        (REPLAYED_FROM, f"{rec.topic}/{rec.partition}@{rec.offset}".encode()),
        (ORIGINAL, provenance(rec).encode()),
        (REASON, f"{stage}: {message}"[:1000].encode()),
    ]


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC unless it names a zone)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not epoch milliseconds or an ISO 8601 time: {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
