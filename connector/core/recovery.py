"""What to do with a partition's live ledger entries when this replica takes it over (pure).

The shell loads the entries, asks `plan_recovery` and carries the plan out: tombstone the
superseded parents (acked before anything else), then track the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from connector.core.records import EntryState, LedgerEntry

__all__ = ["RecoveryPlan", "Resume", "plan_recovery", "superseded"]


@dataclass(frozen=True, slots=True)
class Resume:
    """A live entry to track again: first due at `due`, looked up by display name or not."""

    entry: LedgerEntry
    due: float
    lookup: bool


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    tombstones: tuple[LedgerEntry, ...]
    """Parents whose successors are live: they were resubmitted, only the tombstone is missing."""
    resume: tuple[Resume, ...]

    @property
    def intents(self) -> int:
        return sum(r.entry.state is EntryState.INTENT for r in self.resume)

    @property
    def submitted(self) -> int:
        return sum(r.entry.state is EntryState.SUBMITTED for r in self.resume)


def superseded(job_id: str, live: Mapping[str, LedgerEntry]) -> bool:
    """True when a derived entry (`job_id/...`) is live: the parent was already resubmitted.

    Re-deciding such a parent would write its successors again; had one of them finished and
    been tombstoned meanwhile, it would be created (and paid for) a second time.
    """
    return job_id in _ancestors(live)


def _ancestors(live: Mapping[str, LedgerEntry]) -> set[str]:
    """Every proper prefix `a` of a live id `a/...` (linear in the ids, not quadratic)."""
    out: set[str] = set()
    for job_id in live:
        parts = job_id.split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return out


def plan_recovery(
    live: Mapping[str, LedgerEntry], now: float, lookup_delay_s: float
) -> RecoveryPlan:
    """Decide, for each live entry of a partition taken over at `now`, what happens next.

    - superseded parents are tombstoned;
    - an INTENT may have a create in flight from the previous owner: it is looked up by
      display name, but only `lookup_delay_s` (one HTTP timeout) from now, when that create
      has landed or died; a lookup any earlier could miss it and create the job twice;
    - a SUBMITTED job is polled at once.
    """
    tombstones: list[LedgerEntry] = []
    resume: list[Resume] = []
    parents = _ancestors(live)
    for job_id, entry in live.items():
        if job_id in parents:
            tombstones.append(entry)
        elif entry.state is EntryState.INTENT:
            resume.append(Resume(entry, now + lookup_delay_s, lookup=True))
        else:
            resume.append(Resume(entry, now, lookup=False))
    return RecoveryPlan(tuple(tombstones), tuple(resume))
