"""What to do with a partition's live ledger entries when this replica takes it over (pure).

The shell loads the entries, asks `plan_recovery` and carries the plan out: tombstone the
superseded parents (acked before anything else), then track the rest. DONE entries only
cover their offsets (never submitted, polled or decided again); entries of another request
topic (a second deployment sharing the ledger) are left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from connector.core.offsets import Offsets
from connector.core.partitions import Tracked
from connector.core.records import EntryState, LedgerEntry

__all__ = [
    "EpochPlan",
    "RecoveryPlan",
    "Resume",
    "landed_late",
    "next_epoch",
    "overlapped",
    "passed_by",
    "plan_epoch",
    "plan_recovery",
    "superseded",
    "to_retract",
]


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
    """INTENT and SUBMITTED entries to track, and DONE entries that only cover offsets."""
    foreign: tuple[LedgerEntry, ...] = ()
    """Entries of another request topic: skipped, never tracked, tombstoned or counted."""

    @property
    def intents(self) -> int:
        return sum(r.entry.state is EntryState.INTENT for r in self.resume)

    @property
    def submitted(self) -> int:
        return sum(r.entry.state is EntryState.SUBMITTED for r in self.resume)

    @property
    def done(self) -> int:
        return sum(r.entry.state is EntryState.DONE for r in self.resume)


def to_retract(jobs: Iterable[Tracked], committed: int) -> list[LedgerEntry]:
    """INTENTs to take back when a partition is lost (revoked, or fenced as a zombie).

    An INTENT this replica wrote whose offsets it never committed, and for which it never
    tried a create, is still its own private claim on those requests: the new owner reads
    them again from the committed offset and batches them itself. Left in the ledger, it
    would be found by whoever next recovers the partition and created a second time (seen
    in the long chaos run: a replica frozen past the poll interval wrote INTENTs for records
    it had fetched before it noticed, then recovered and created them). An INTENT whose
    offsets were committed must stay (its requests exist nowhere else), and one with a create
    attempt behind it may have a job. One rebuilt after a Kafka failure comes back to be
    looked up, but this process knows it wrote it and never tried it (`Tracked.fresh`).
    """
    return [
        t.entry
        for t in jobs
        if t.entry.state is EntryState.INTENT
        and (not t.lookup or t.fresh)
        and t.failures == 0
        and t.entry.offsets
        and min(t.entry.offsets) >= committed
    ]


def passed_by(jobs: Collection[Tracked], committed: int) -> list[LedgerEntry]:
    """Fresh INTENTs of a partition rebuilt after a Kafka failure that another owner batched
    itself: to retract at once.

    `fresh`: this process wrote it, never committed its offsets (checked against its own
    committed offset when the partition was forgotten) and never tried a create, and the
    ledger holds it as written. If the committed offset the rebuild rewinds to is past its
    first offset anyway, and another live entry holds some of its offsets, another owner
    read those records and batched them itself (this write, plain in at-least-once mode,
    landed after that owner loaded the ledger). Kept, it would stay off `to_retract` (its
    offsets now "committed") and be created by whoever next owns the partition: each
    request answered by two jobs (sim seeds 876 and 1931: OK, then 499 from a cancel that
    reached the late job). Without such an entry it stays: an owner that loaded it may have
    committed past it, and it is then the only record of those requests.
    """
    out = []
    for t in jobs:
        e = t.entry
        if not (
            e.state is EntryState.INTENT
            and t.fresh
            and t.failures == 0
            and e.offsets
            and min(e.offsets) < committed
        ):
            continue
        mine = set(e.offsets)
        if any(o.entry.job_id != e.job_id and mine & set(o.entry.offsets) for o in jobs):
            out.append(e)
    return out


def overlapped(
    entry: LedgerEntry, live: Iterable[LedgerEntry], found: Collection[str] = ()
) -> Offsets:
    """The offsets of `entry`, a recovered INTENT its lookup did not find at the provider,
    that another live entry of its partition holds first: a SUBMITTED or DONE entry, an
    INTENT whose job the same lookup `found` (display names: it is adopted), or an INTENT
    older than it (`created_ms`, then job id).

    Two live entries share an offset only when a replica the group had dropped wrote one of
    them (at-least-once: its INTENTs are plain writes) and was killed before it could retract
    it: it re-read records the new owner batched too. Its claim, after the group moved on,
    was refused, so it created nothing; created as well, those requests would be answered by
    two jobs (or OK and 499, next to a cancel's DONE). The entry gives those offsets up: a
    successor takes the rest (`Submitter`), or a tombstone retires it when nothing is left.
    """
    rank = (entry.created_ms, entry.job_id)
    mine = set(entry.offsets)
    taken: set[int] = set()
    for other in live:
        if other.job_id == entry.job_id:
            continue
        if (
            other.state is EntryState.INTENT
            and other.display_name not in found
            and (other.created_ms, other.job_id) >= rank
        ):
            continue
        taken |= mine & set(other.offsets)
    return Offsets(sorted(taken))


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
    live: Mapping[str, LedgerEntry], now: float, lookup_delay_s: float, request_topic: str = ""
) -> RecoveryPlan:
    """Decide, for each live entry of a partition taken over at `now`, what happens next.

    - entries naming another request topic than `request_topic` are foreign: set apart
      before anything else, so they neither count as successors nor get tracked (entries
      older than ledger v2 name no topic and are ours);
    - a DONE entry only covers its offsets until the commit passes them: it is never
      decided again, even as a parent (its children count as live for the rule below);
    - superseded parents are tombstoned;
    - an INTENT may have a create in flight from the previous owner: it is looked up by
      display name, but only `lookup_delay_s` (`policy.recovered_lookup_delay`) from now,
      when that create has landed or died; a lookup any earlier could miss it and create
      the job twice;
    - a SUBMITTED job is polled at once.
    """
    tombstones: list[LedgerEntry] = []
    resume: list[Resume] = []
    foreign = [
        e for e in live.values() if request_topic and e.request_topic not in ("", request_topic)
    ]
    if foreign:
        live = {j: e for j, e in live.items() if e.request_topic in ("", request_topic)}
    parents = _ancestors(live)
    for job_id, entry in live.items():
        if entry.state is EntryState.DONE:
            resume.append(Resume(entry, float("inf"), lookup=False))
        elif job_id in parents:
            tombstones.append(entry)
        elif entry.state is EntryState.INTENT:
            resume.append(Resume(entry, now + lookup_delay_s, lookup=True))
        else:
            resume.append(Resume(entry, now, lookup=False))
    return RecoveryPlan(tuple(tombstones), tuple(resume), tuple(foreign))


# -- take-over epochs (at-least-once) ---------------------------------------------------


def next_epoch(top: int, now_ms: int) -> int:
    """The epoch of a take-over that saw `top` (the highest epoch in the partition's ledger:
    its take-over markers and its live entries), at wall-clock `now_ms`.

    Strictly above `top`: the previous owner published its epoch in the ledger (a marker in
    its fenced take-over transaction) before it wrote any INTENT, and a take-over reads the
    ledger after the group gave it the partition, so each owner's epoch is above every
    earlier owner's, whatever the hosts' clocks say (no generation needed: librdkafka does
    not expose it). The wall clock only matters once the markers are compacted away
    (tombstones, after delete.retention.ms) and no live entry carries an epoch: the counter
    then restarts near the clock, not at 1. Skew there only weakens `landed_late` (a zombie
    of more than a day ago whose epoch is above the restart is created as before); it never
    retracts an INTENT an owner knew, since every owner re-stamps what it loads.
    """
    return max(top + 1, now_ms)


def landed_late(live: Iterable[LedgerEntry], committed: int, top: int) -> list[LedgerEntry]:
    """INTENTs that reached the ledger after the latest owner loaded it, and whose offsets
    the group committed past: a stale replica's late write, already batched by an owner.

    At-least-once an INTENT is a plain write: a replica frozen with it unsent (or cut off
    from the group coordinator) lands it after the group moved on; the new owner, which
    loaded the ledger before, batched the same records into its own job, committed past them,
    delivered and tombstoned (sim seed 876). Created now, each request would be answered by
    two jobs. From the ledger and the committed offset alone it looks like the legitimate
    case (an owner loaded the INTENT, committed past it, lost the partition before creating
    it; the INTENT is then the only record of its requests): the epoch tells them apart.
    Every take-over re-stamps each INTENT it loaded with its own epoch (`plan_epoch`,
    fenced), so an INTENT stamped below `top` was loaded by no owner since the one at `top`,
    and its writer, then stale, could not commit past it (its commit follows the write's ack,
    and a stale member's commit is refused). Unstamped (epoch 0: older versions) or not
    wholly below `committed`: kept, as before.
    """
    return [
        e
        for e in live
        if e.state is EntryState.INTENT
        and 0 < e.epoch < top
        and e.offsets
        and e.offsets.max() < committed
    ]


@dataclass(frozen=True, slots=True)
class EpochPlan:
    """What a take-over writes, in one transaction fenced with the committed offset."""

    epoch: int
    retract: tuple[LedgerEntry, ...]
    """Late INTENTs (`landed_late`), and those whose every offset a created entry holds
    (`without_held`): tombstoned, never created."""
    restamp: tuple[LedgerEntry, ...]
    """Every other INTENT, trimmed of what created entries hold (`without_held`) and written
    again at `epoch` (`updated_ms` moved on, so the copy its
    writer remembers is no longer "as written": `Sidecar._retract_lost` leaves it alone)."""


def plan_epoch(
    live: Collection[LedgerEntry], committed: int, marked: int, now_ms: int
) -> EpochPlan:
    """Decide a take-over's epoch and writes from the partition's loaded entries, its
    committed offset and the highest take-over marker of its ledger (`marked`).

    Must run before this owner commits any offset (the rule of `landed_late` assumes every
    committer re-stamped what it loaded); the late INTENTs are decided before the re-stamp,
    which would otherwise make them look known.
    """
    top = max(marked, max((e.epoch for e in live), default=0))
    epoch = next_epoch(top, now_ms)
    late = landed_late(live, committed, top)
    gone = {e.job_id for e in late}
    created = [e for e in live if e.state is not EntryState.INTENT]
    restamp: list[LedgerEntry] = []
    for e in live:
        if e.state is not EntryState.INTENT or e.job_id in gone:
            continue
        kept = without_held(e, created)
        if kept is None:
            late.append(e)
        else:
            restamp.append(replace(kept, epoch=epoch, updated_ms=max(now_ms, e.updated_ms + 1)))
    return EpochPlan(epoch, tuple(late), tuple(restamp))


def without_held(entry: LedgerEntry, created: Iterable[LedgerEntry]) -> LedgerEntry | None:
    """An INTENT trimmed of the offsets a created (SUBMITTED or DONE) entry of the same load
    holds; None when nothing is left (it is retracted).

    Such an overlap is a dropped replica's plain INTENT that re-read records a live job
    already holds. The lookup of a recovered INTENT gives those offsets up (`overlapped`,
    `Tracked.held`), but only if this owner keeps the partition until then: the created job
    may end and be tombstoned, and the partition move on, before it, and the next owner
    would load the INTENT alone and create it whole (sim seed 79038: two jobs). Trimmed in
    the take-over's re-stamp, the ledger itself no longer holds the overlap. The display
    name stays (a lookup still finds a job created under it); an uploaded input file, which
    holds the trimmed requests too, is dropped from the entry (the Files API expires it).
    """
    taken = set(overlapped(entry, created))
    if not taken:
        return entry
    rest = Offsets(o for o in entry.offsets if o not in taken)
    if not rest:
        return None
    tokens = entry.est_tokens * len(rest) // max(1, len(entry.offsets))
    return replace(entry, offsets=rest, est_tokens=tokens, input_file=None)
