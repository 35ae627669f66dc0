"""What one replica knows about its partitions and their jobs (state only, no I/O).

`Tracked` is a live ledger entry plus scheduling state; `PartitionState` one owned request
partition; `Partitions` all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from connector.core.offsets import RangeIndex
from connector.core.records import EntryState, LedgerEntry, PendingRequest
from connector.core.watermark import Watermark


@dataclass(slots=True)
class Tracked:
    """A live ledger entry plus this process's scheduling state for it."""

    entry: LedgerEntry
    due: float = 0.0
    """Monotonic time of the next submit attempt (INTENT) or poll (SUBMITTED)."""
    polls: int = 0
    """Status polls since the job was submitted: spaces the polls out (backoff by polls)."""
    failures: int = 0
    """Consecutive failed calls for this job: spaces the retries out (backoff by failures)."""
    lookup: bool = True
    """The job may already exist remotely (recovered, or after an unclear create failure)."""
    payload: tuple[PendingRequest, ...] | None = None
    """Requests still in memory from sealing, saving a re-read on first submit; dropped
    (re-read by offset instead) past CONNECTOR_MAX_PAYLOAD_BYTES, see `core.memory`."""
    errors: int = 0
    """Unexpected exceptions while processing this job; quarantined at QUARANTINE_AFTER."""
    size: int = 0
    """Request bytes of the job when known (sealed by this process), 0 otherwise; kept after
    the payload is dropped. Taken from the payload when not given."""
    fresh: bool = False
    """Written by this process, which never tried to create it: kept across a rebuild after
    a Kafka failure (where the entry comes back looked-up), so losing the partition still
    retracts it (`recovery.to_retract`)."""
    held: tuple[int, ...] = ()
    """A recovered INTENT's offsets that a SUBMITTED or DONE entry of the same load held:
    given up if its lookup finds nothing (`recovery.overlapped`), even once that entry has
    ended and left the ledger during the lookup delay."""

    def __post_init__(self) -> None:
        if not self.size and self.payload:
            self.size = sum(r.size for r in self.payload)


@dataclass(slots=True)
class PartitionState:
    """One owned request partition: its commit watermark and its live jobs."""

    watermark: Watermark | None = None
    jobs: dict[str, Tracked] = field(default_factory=dict)
    covered: RangeIndex = field(default_factory=RangeIndex)
    """Offsets owned by live entries (DONE ones included): never batched again. Runs of
    offsets, not a set of ints: `offset in covered` is O(log runs) at ~16 bytes per run."""
    committed: int = -1
    pruned: int = -1
    """The committed offset at the last prune of DONE entries (prune again once it moves)."""
    epoch: int = 0
    """This replica's take-over epoch of the partition (at-least-once), which its sealed
    INTENTs carry (`stages.epochs`); 0 before the take-over's transaction, or exactly-once."""

    def add(self, t: Tracked) -> None:
        self.jobs[t.entry.job_id] = t
        self.covered.update(t.entry.offsets)

    def remove(self, job_id: str) -> None:
        """Forget a job; its offsets stay covered where another live entry holds them.

        Two live entries share offsets when a stale replica's INTENT re-read records a
        created job holds (`recovery.overlapped`); retracting that INTENT must not uncover
        them, or the rewound consumer batches them again (short chaos run on 7009945: four
        requests answered by two jobs). Only jobs whose span meets the removed one's are
        looked at, and their runs added back: covered stays the union of live offsets.
        """
        t = self.jobs.pop(job_id, None)
        if t is None:
            return
        gone = t.entry.offsets
        self.covered.difference_update(gone)
        if not gone:
            return
        lo, hi = gone[0], gone.max()
        for other in self.jobs.values():
            offs = other.entry.offsets
            if offs and offs[0] <= hi and offs.max() >= lo:
                self.covered.add_ranges(
                    (max(s, lo), min(e, hi)) for s, e in offs.ranges() if s <= hi and e >= lo
                )


class Partitions(dict[int, PartitionState]):
    """The partitions this replica owns, with views over all their jobs."""

    def tracked(self) -> Iterator[Tracked]:
        for st in self.values():
            yield from st.jobs.values()

    def live(self) -> Iterator[LedgerEntry]:
        for t in self.tracked():
            yield t.entry

    def due(self, state: EntryState, now: float) -> list[Tracked]:
        return [t for t in self.tracked() if t.entry.state is state and t.due <= now]

    def count(self, state: EntryState) -> int:
        return sum(t.entry.state is state for t in self.tracked())

    def remove_job(self, entry: LedgerEntry) -> None:
        st = self.get(entry.key.partition)
        if st is not None:
            st.remove(entry.job_id)


@dataclass(slots=True)
class Stats:
    """Counters for the periodic status line and for tests."""

    consumed: int = 0
    dead_lettered: int = 0
    results_ok: int = 0
    results_error: int = 0
    jobs_created: int = 0
    jobs_adopted: int = 0
    jobs_finished: int = 0
    jobs_resubmitted: int = 0
    jobs_split: int = 0
    """INTENTs split in halves because they were over the model's enqueued-token cap."""
    ledger_foreign_entries: int = 0
    """Ledger entries of another request topic skipped on load (a shared ledger)."""
    fenced: int = 0
    """Transactions the group refused: partitions this replica had lost (KIP-447)."""
    provider_auth_failing: bool = False
    """Gemini refuses our API key (401, 403, API_KEY_INVALID): jobs wait; report unhealthy."""
    results_too_large: int = 0
    """Results replaced by a 413 error result because they did not fit the results topic."""
    dead_letters_truncated: int = 0
    deadline_exceeded: int = 0
    """Requests answered 504 because their deadline passed (at intake, seal, submit or delivery)."""
    jobs_quarantined: int = 0
    records_lost: int = 0
    """Request offsets skipped because retention deleted them before they were read."""
    commands_applied: int = 0
    """Operator commands (`connector cancel`) carried out and retired by this replica."""
    requests_cancelled: int = 0
    """Requests answered 499 CANCELLED by an operator's cancel."""
    intents_retracted: int = 0
    """INTENTs of lost partitions taken back (never committed, never created)."""
    kafka_failures: int = 0
    """Passes that failed on Kafka (outage, unacked send) and were redone after a backoff."""
    spool_waits: int = 0
    """Times a file job's input or a results download waited for free spool space."""
