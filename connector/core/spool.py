"""Whether the spool has room for a file before it is written: a pure decision.

File jobs' input JSONL (up to CONNECTOR_BATCH_MAX_BYTES) and results files (up to 2 GB) are
spooled to disk. Writing one into a nearly full volume would fill it: the pod is evicted (an
emptyDir past its sizeLimit) or every write on it fails. So the sidecar asks first, with the
volume's free bytes as data: go, or wait and look again later, warning at most once a
`WARN_EVERY_S`. Nothing is lost by waiting: the job stays in the ledger as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_S = 30.0
"""How long a file waits before free space is looked at again."""

WARN_EVERY_S = 300.0
"""At most one warning per this long while files wait for space (per kind of file)."""

JSONL_LINE_BYTES = 256
"""Bytes a request's JSONL line adds to its payload (key, wrapper, metadata): a margin."""


@dataclass(frozen=True, slots=True)
class SpoolDecision:
    """Go ahead, or wait until `retry_at`; `warn`: log a warning now."""

    go: bool
    retry_at: float
    warn: bool


def input_file_bytes(max_batch_bytes: int, requests: int) -> int:
    """Disk a file job's input JSONL may take: its payloads' cap plus each line's margin."""
    return max(0, max_batch_bytes) + max(0, requests) * JSONL_LINE_BYTES


def decide(
    free_bytes: int,
    need_bytes: int,
    reserve_bytes: int,
    now: float,
    last_warned: float | None,
    pending_bytes: int = 0,
) -> SpoolDecision:
    """Whether a file of up to `need_bytes` may be written where `free_bytes` are free,
    keeping `reserve_bytes` free after it and after `pending_bytes`, what the files already
    open may still write (so two files started in one pass cannot both take the same room)."""
    if free_bytes - max(0, pending_bytes) - need_bytes >= reserve_bytes:
        return SpoolDecision(True, now, False)
    warn = last_warned is None or now - last_warned >= WARN_EVERY_S
    return SpoolDecision(False, now + RETRY_S, warn)
