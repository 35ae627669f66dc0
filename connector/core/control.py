"""Operator commands (`connector cancel`) and what they decide, on plain data.

A command is one record of the compacted control topic, keyed by its target
(`job:<job id>` or `request:<request id>`) with a small JSON value (`encode`). Every replica
reads the topic; only the replica owning the target acts, and it retires the command with a
tombstone under the same key once done, so a restart never acts on it twice. A command
nobody owns yet stays in the topic until an owner sees it.

What a cancel does to one live ledger entry (`step_for`):

- INTENT whose job may exist remotely (recovered, or after an unclear create): WAIT until
  the submitter's lookup settled it (adopted: SUBMITTED; not found: a plain INTENT);
- INTENT never created, or SUBMITTED: CANCEL: 499 CANCELLED results (for every request of a
  job command; for one request of a request command, whose other requests go on as the
  derived INTENT `successor`, `j/c{attempt+1}`), the entry recorded DONE (kept, naming its
  provider job) and only then the provider's cancel;
- DONE: FINISH: the provider cancel of a cancel that crashed after its ledger write (or of a
  job already answered: the cancel came too late), then the entry's tombstone if the
  commit is past it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from connector.core import policy
from connector.core.offsets import Offsets
from connector.core.records import EntryState, ErrorInfo, LedgerEntry

__all__ = [
    "COMMAND_TTL_MS",
    "Command",
    "Step",
    "Target",
    "cancel_error",
    "decode",
    "encode",
    "expired",
    "job_partition",
    "job_targets",
    "remnant",
    "step_for",
    "successor",
]

VERSION = 1
MAX_ID_CHARS = 1000
MAX_REASON_CHARS = 1000
COMMAND_TTL_MS = 7 * 24 * 3_600_000
"""A command no replica could act on for this long (a request id no live job holds: already
answered, or never published) is retired by whichever replica sees it."""

_JOB_ID = re.compile(r"^p(\d+)-")


class Target(StrEnum):
    JOB = "job"
    REQUEST = "request"


@dataclass(frozen=True, slots=True)
class Command:
    """Cancel one job (and its derived jobs) or one request."""

    target: Target
    id: str
    reason: str = ""
    at_ms: int = 0
    """When the operator issued it (epoch ms)."""
    by: str = ""
    """Who issued it (user@host), for the logs."""

    @property
    def key(self) -> str:
        return f"{self.target.value}:{self.id}"


def encode(cmd: Command) -> bytes:
    """The control record's value: `{"v", "action", "target", "id", "reason", "at_ms", "by"}`."""
    check(cmd)
    return json.dumps(
        {
            "v": VERSION,
            "action": "cancel",
            "target": cmd.target.value,
            "id": cmd.id,
            "reason": cmd.reason,
            "at_ms": cmd.at_ms,
            "by": cmd.by,
        },
        separators=(",", ":"),
    ).encode()


def decode(key: bytes | None, value: bytes) -> Command:
    """A control record as a command; ValueError if it is not one we understand."""
    try:
        d = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"control record is not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise ValueError("control record is not a JSON object")
    if d.get("action") != "cancel":
        raise ValueError(f"unknown control action {d.get('action')!r}")
    try:
        target = Target(str(d.get("target")))
    except ValueError as exc:
        raise ValueError(f"unknown control target {d.get('target')!r}") from exc
    at_ms, reason, by, ident = d.get("at_ms", 0), d.get("reason", ""), d.get("by", ""), d.get("id")
    if not isinstance(ident, str) or not isinstance(reason, str) or not isinstance(by, str):
        raise ValueError("control record fields id, reason and by must be strings")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool):
        raise ValueError("control record field at_ms must be an integer")
    cmd = Command(target, ident, reason, at_ms, by)
    check(cmd)
    if key is not None and key.decode(errors="replace") != cmd.key:
        raise ValueError(f"control record key {key!r} does not name its target {cmd.key!r}")
    return cmd


def check(cmd: Command) -> None:
    """ValueError unless the command is well formed (the CLI checks before it writes)."""
    if not cmd.id or len(cmd.id) > MAX_ID_CHARS or not cmd.id.isprintable():
        raise ValueError(f"{cmd.target.value} id must be 1..{MAX_ID_CHARS} printable characters")
    if len(cmd.reason) > MAX_REASON_CHARS:
        raise ValueError(f"reason must be at most {MAX_REASON_CHARS} characters")
    if cmd.target is Target.JOB and job_partition(cmd.id) is None:
        raise ValueError(f"not a job id (p<partition>-<offset>-<nonce>[/...]): {cmd.id!r}")


def job_partition(job_id: str) -> int | None:
    """The request partition a job id names (`p3-1200-8f2a1c/a` → 3), None if it names none."""
    m = _JOB_ID.match(job_id)
    return int(m.group(1)) if m else None


def job_targets(job_id: str, live: Iterable[LedgerEntry]) -> list[LedgerEntry]:
    """The live entries a job cancel applies to: the job and every job derived from it (a
    split or retry of it carries its requests on)."""
    prefix = job_id + "/"
    return [e for e in live if e.job_id == job_id or e.job_id.startswith(prefix)]


def expired(cmd: Command, now_ms: int) -> bool:
    return cmd.at_ms > 0 and now_ms - cmd.at_ms > COMMAND_TTL_MS


def cancel_error(cmd: Command) -> ErrorInfo:
    """The error result of a cancelled request: 499 CANCELLED naming what was cancelled.

    The operator's reason and name stay out: a job cancel answers every request of the job,
    which may belong to many services, and a reason written about one of them ("tenant X's
    runaway prompt") must not reach the others. Both are logged where the command is acted on.
    """
    return ErrorInfo(499, "CANCELLED", f"cancelled by an operator [{cmd.target.value} {cmd.id}]")


class Step(StrEnum):
    WAIT = "wait"
    CANCEL = "cancel"
    FINISH = "finish"


def step_for(entry: LedgerEntry, lookup_pending: bool) -> Step:
    """What a cancel does to `entry` now (see the module docstring)."""
    if entry.state is EntryState.DONE:
        return Step.FINISH
    if entry.state is EntryState.INTENT and lookup_pending:
        return Step.WAIT
    return Step.CANCEL


def successor(parent: LedgerEntry, cancelled: Iterable[int], now_ms: int) -> LedgerEntry | None:
    """The derived INTENT `j/c{attempt+1}` for the requests of `parent` not cancelled, or None
    when none is left. Written before the provider cancel: on recovery the superseded-parent
    rule then retires the parent, and the successor is looked up or created once."""
    gone = set(cancelled)
    rest = Offsets(o for o in parent.offsets if o not in gone)
    if not rest:
        return None
    n = len(parent.offsets)
    tokens = parent.est_tokens * len(rest) // n if n else 0
    return policy.derive(parent, f"/c{parent.attempt + 1}", rest, tokens, now_ms)


def remnant(parent: LedgerEntry, cancelled: Iterable[int], now_ms: int) -> LedgerEntry:
    """`parent` as DONE covering only the cancelled requests (answered 499): it keeps their
    offsets covered until the commit passes them and names the provider job to cancel."""
    return policy.done(replace(parent, offsets=Offsets(sorted(set(cancelled)))), now_ms)
