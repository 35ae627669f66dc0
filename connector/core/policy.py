"""Job identity and what the tracker does when a job ends.

Pure: callers pass `now_ms` and any randomness. Derived job ids are a function of the
parent entry only, so a repeat after a crash writes the same ledger keys and display
names, and recovery adopts (never re-creates) a half that was already submitted.

Job ids: `p{partition}-{first_offset}-{nonce}` for a fresh batch; a derived job appends
`/a` or `/b` (the halves of an expired job) or `/r{attempt}` (a whole retry, where
`attempt` is the new entry's attempt number), e.g. `p3-1200-8f2a1c/a/r2`.

Attempts count from 0, as the ledger and result schemas say: a fresh job is attempt 0 and
every split or retry adds one, so an entry's attempt equals the number of `/` derivation
steps in its job id (`Codec.decode_ledger` relies on that to read entries written by
sidecar 0.1.0, which started at 1).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from connector import defaults as D
from connector.core.offsets import Offsets
from connector.core.records import (
    EntryState,
    ErrorInfo,
    JobState,
    Kind,
    LedgerEntry,
    SealedBatch,
)
from connector.errors import ClaimExpired, ConfigError

__all__ = [
    "ANSWERED_MARK",
    "CLAIM_FRESH_S",
    "MAX_DISPLAY_NAME",
    "ClaimWindow",
    "Deliver",
    "GiveUp",
    "Outcome",
    "Resubmit",
    "RetryPolicy",
    "answered_part",
    "backoff_with_jitter",
    "derive",
    "display_name",
    "done",
    "failure_delay",
    "halves",
    "needs_file",
    "new_intent",
    "new_job_id",
    "next_poll_delay",
    "on_terminal",
    "poll_delay",
    "prunable",
    "recovered_lookup_delay",
    "server_timeout_s",
    "split_offsets",
    "submitted",
    "unclear_create_delay",
    "uses_file",
]

MAX_DISPLAY_NAME = 128
"""Longest display name we send; longer ones are shortened deterministically."""

_HASH_CHARS = 16  # 64 bits of sha256: collisions are out of reach for one consumer group


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often failed or expired jobs are tried again, and how jobs are polled."""

    max_failed_retries: int = D.MAX_FAILED_RETRIES
    """A FAILED job is retried while its attempt number (0-based) is below this."""
    max_attempts: int = D.MAX_ATTEMPTS
    """Total attempts including expired splits (attempts 0 .. max_attempts - 1)."""
    poll_initial_s: float = D.POLL_INITIAL_S
    poll_max_s: float = D.POLL_MAX_S
    poll_factor: float = D.POLL_FACTOR

    def __post_init__(self) -> None:
        if self.max_failed_retries < 0:
            raise ConfigError(f"max_failed_retries must be >= 0, got {self.max_failed_retries}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.poll_initial_s <= self.poll_max_s:
            raise ConfigError(
                f"need 0 < poll_initial_s <= poll_max_s, got {self.poll_initial_s}, "
                f"{self.poll_max_s}"
            )
        if not self.poll_factor >= 1:  # also rejects NaN
            raise ConfigError(f"poll_factor must be >= 1, got {self.poll_factor}")


# -- identity ----------------------------------------------------------------------------


def new_job_id(partition: int, first_offset: int, nonce: str) -> str:
    """A fresh job id, e.g. `p3-1200-8f2a1c`; the nonce keeps ids unique across restarts."""
    if not nonce or "/" in nonce or ":" in nonce:
        raise ValueError(f"nonce must be non-empty without '/' or ':', got {nonce!r}")
    return f"p{partition}-{first_offset}-{nonce}"


def display_name(prefix: str, job_id: str) -> str:
    """The provider-side name recovery looks jobs up by: `{prefix}:{job_id}`.

    The prefix should name the consumer group, so names are unique per group. Names
    over MAX_DISPLAY_NAME characters keep their head and end in a hash of the full name.
    """
    return _fit(f"{prefix}:{job_id}")


def _fit(name: str) -> str:
    if len(name) <= MAX_DISPLAY_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[: MAX_DISPLAY_NAME - _HASH_CHARS - 1]}~{digest}"


def _derived_display(parent: LedgerEntry, suffix: str) -> str:
    # parent.display_name is `{prefix}:{job_id}` (or its shortened form), so appending the
    # suffix equals display_name(prefix, job_id + suffix) without needing the prefix here.
    return _fit(parent.display_name + suffix)


def new_intent(
    batch: SealedBatch, job_id: str, prefix: str, now_ms: int, request_topic: str = ""
) -> LedgerEntry:
    """The INTENT entry for a freshly sealed batch (attempt 0) of `request_topic`."""
    return LedgerEntry(
        job_id=job_id,
        key=batch.key,
        offsets=Offsets(batch.offsets),
        attempt=0,
        display_name=display_name(prefix, job_id),
        state=EntryState.INTENT,
        use_file=batch.use_file,
        est_tokens=batch.est_tokens,
        created_ms=now_ms,
        updated_ms=now_ms,
        request_topic=request_topic,
    )


def done(entry: LedgerEntry, now_ms: int) -> LedgerEntry:
    """The DONE entry once a job's results are acked: it covers its offsets, nothing more."""
    return replace(entry, state=EntryState.DONE, updated_ms=now_ms)


def prunable(entry: LedgerEntry, committed: int) -> bool:
    """A DONE entry may be tombstoned once the committed offset is past its last offset.

    From then on no rewind (restart, rebalance) reads its requests again.
    """
    return entry.state is EntryState.DONE and (not entry.offsets or committed > entry.offsets.max())


def submitted(
    entry: LedgerEntry, provider_job: str, input_file: str | None, now_ms: int
) -> LedgerEntry:
    """The SUBMITTED entry once the job exists (created now, or adopted on recovery)."""
    return replace(
        entry,
        state=EntryState.SUBMITTED,
        provider_job=provider_job,
        input_file=input_file,
        updated_ms=now_ms,
    )


FILE_KINDS = frozenset({Kind.EMBED})
"""Kinds that always go through a file: the SDK's inline embedding batches carry no
per-request key, and results are matched by key, never by position."""


def needs_file(kind: Kind, size: int, inline_max_bytes: int) -> bool:
    """The inline-or-file rule, in one place: too big for an inline create, or a file kind."""
    return kind in FILE_KINDS or size > inline_max_bytes


def uses_file(entry: LedgerEntry) -> bool:
    """Whether a ledger entry's job goes through a file (entries of any age)."""
    return entry.use_file or entry.key.kind in FILE_KINDS


def split_offsets(offsets: Offsets) -> tuple[Offsets, Offsets]:
    """Two halves by count, order kept; the first half takes the odd one out."""
    offsets = Offsets(offsets)  # a tuple too (cheap for an Offsets: it shares the runs)
    mid = (len(offsets) + 1) // 2
    return offsets[:mid], offsets[mid:]


# -- terminal decisions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """The job SUCCEEDED: produce one result per request from its output."""


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Write these INTENTs (derived ids), then tombstone the parent entry."""

    entries: tuple[LedgerEntry, ...]


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Produce an error result with `error` for every request of the job, then tombstone."""

    error: ErrorInfo


Outcome = Deliver | Resubmit | GiveUp


def on_terminal(entry: LedgerEntry, state: JobState, policy: RetryPolicy, now_ms: int) -> Outcome:
    """Decide what follows a job's terminal state.

    - SUCCEEDED: Deliver.
    - FAILED: retry whole as `j/r{attempt+1}` while `attempt < max_failed_retries` and
      `attempt + 1 < max_attempts`; else GiveUp 500 INTERNAL. Attempts count from 0 and
      count every attempt, so expiries before a failure use up failed retries too.
    - EXPIRED: while `attempt + 1 < max_attempts`, split into `j/a` and `j/b` (a
      single-request job is retried whole as `j/r{attempt+1}`); else GiveUp 504
      DEADLINE_EXCEEDED.
    - CANCELLED: GiveUp 499 CANCELLED (someone cancelled it on purpose; no retry).
    Raises ValueError for a non-terminal state.
    """
    attempt = entry.attempt
    tried = attempt + 1  # attempts made so far, this one included
    n = len(entry.offsets)
    if state is JobState.SUCCEEDED:
        return Deliver()
    if state is JobState.FAILED:
        if attempt < policy.max_failed_retries and tried < policy.max_attempts:
            return Resubmit((_retry(entry, now_ms),))
        return GiveUp(
            ErrorInfo(
                500,
                "INTERNAL",
                f"batch job {entry.job_id} failed after {tried} attempt(s); "
                f"retry budget spent ({policy.max_failed_retries} failed retries, "
                f"{policy.max_attempts} attempts)",
            )
        )
    if state is JobState.EXPIRED:
        if tried < policy.max_attempts:
            if n <= 1:
                return Resubmit((_retry(entry, now_ms),))
            return Resubmit(halves(entry, now_ms))
        return GiveUp(
            ErrorInfo(
                504,
                "DEADLINE_EXCEEDED",
                f"batch job {entry.job_id} expired on attempt {tried} of "
                f"{policy.max_attempts}: the provider did not finish it within its window, "
                f"even after splitting",
            )
        )
    if state is JobState.CANCELLED:
        return GiveUp(ErrorInfo(499, "CANCELLED", f"batch job {entry.job_id} was cancelled"))
    raise ValueError(f"on_terminal needs a terminal state, got {state}")


def halves(entry: LedgerEntry, now_ms: int) -> tuple[LedgerEntry, LedgerEntry]:
    """`j/a` and `j/b`, the two halves of a job of two or more requests (an expired one, or
    one over the enqueued-token cap). Tokens split in proportion to request count; the
    halves sum to the parent."""
    first, second = split_offsets(entry.offsets)
    first_tokens = entry.est_tokens * len(first) // len(entry.offsets)
    return (
        derive(entry, "/a", first, first_tokens, now_ms),
        derive(entry, "/b", second, entry.est_tokens - first_tokens, now_ms),
    )


ANSWERED_MARK = "~answered-"
"""Joins a job id and the first offset of a part of it answered early (`answered_part`).
Not a `/`: such an entry is no successor, and its parent is not superseded by it."""


def answered_part(
    entry: LedgerEntry, offsets: Iterable[int], now_ms: int
) -> tuple[LedgerEntry, LedgerEntry]:
    """`entry`'s `offsets` were answered before the job ended (deadlines passed before its
    create; a chunk of error results of a job that gave up): a DONE entry that keeps them
    covered until the committed offset passes them (a rewind must not batch them again),
    and `entry` without them. Written together with the answers (one transaction in
    exactly-once mode), so a crash can neither answer them again nor lose them.
    """
    gone = set(offsets)
    keep = tuple(o for o in entry.offsets if o not in gone)
    answered = tuple(o for o in entry.offsets if o in gone)
    if not answered or not keep:
        raise ValueError("answered_part needs a proper, non-empty part of the entry's offsets")
    n = len(entry.offsets)
    tokens = entry.est_tokens * len(keep) // n
    job_id = f"{entry.job_id}{ANSWERED_MARK}{answered[0]}"
    done_part = replace(
        entry,
        job_id=job_id,
        display_name=_fit(f"{entry.display_name}{ANSWERED_MARK}{answered[0]}"),
        offsets=Offsets(answered),
        state=EntryState.DONE,
        provider_job=None,
        input_file=None,
        est_tokens=entry.est_tokens - tokens,
        delivered=None,
        updated_ms=now_ms,
    )
    rest = replace(entry, offsets=Offsets(keep), est_tokens=tokens, updated_ms=now_ms)
    return done_part, rest


def _retry(entry: LedgerEntry, now_ms: int) -> LedgerEntry:
    return derive(entry, f"/r{entry.attempt + 1}", entry.offsets, entry.est_tokens, now_ms)


def derive(
    parent: LedgerEntry, suffix: str, offsets: Offsets, est_tokens: int, now_ms: int
) -> LedgerEntry:
    """A successor INTENT of `parent` (`parent.job_id + suffix`, attempt + 1) for `offsets`."""
    # use_file is kept: a half of a file job could fit inline, but the shell re-reads the
    # payloads anyway and may choose inline then; keeping it is always valid.
    return LedgerEntry(
        job_id=parent.job_id + suffix,
        key=parent.key,
        offsets=offsets,
        attempt=parent.attempt + 1,
        display_name=_derived_display(parent, suffix),
        state=EntryState.INTENT,
        use_file=parent.use_file,
        est_tokens=est_tokens,
        created_ms=now_ms,
        updated_ms=now_ms,
        request_topic=parent.request_topic,
    )


DELIVERY_CHUNK_TARGET_S = 0.25
"""What one chunk of results may take in a pass: chunks shrink when producing is slow."""

DELIVERY_CHUNK_MIN = 100


def next_chunk_size(done: int, took_s: float, cap: int) -> int:
    """Results in the next chunk of a delivery, from how long the last `done` took: about
    DELIVERY_CHUNK_TARGET_S of work, never over `cap` (CONNECTOR_DELIVERY_CHUNK_REQUESTS)
    nor under DELIVERY_CHUNK_MIN. A busy machine or slow broker shortens the chunks, so the
    pass stays short and the loop keeps polling; a fast one uses the cap."""
    if done <= 0 or took_s <= 0:
        return cap
    fit = done * DELIVERY_CHUNK_TARGET_S / took_s  # a float: may be huge for a tiny took_s
    return max(min(DELIVERY_CHUNK_MIN, cap), int(min(float(cap), fit)))


SPOOL_SLICE_S = 0.25
"""Work per pass writing a file job's input JSONL (re-reading 1M requests takes seconds)."""

FETCH_CHECK_S = 0.1
"""How often the loop looks whether a transfer in the background (a results file coming in,
a file job's input going up) has ended."""

MAX_UPLOADS = 2
"""Input files uploading in the background at once; further file jobs wait (INTENT) to be
spooled. Bounds the temporary files on disk (one per upload, up to 2 GB each); more would
only queue for the background threads (two)."""

QUARANTINE_AFTER = 3
"""Unexpected exceptions processing one job (submit, track, deliver) before it is quarantined:
its requests get 500 INTERNAL error results saying so, and it leaves the ledger."""


# -- timing ------------------------------------------------------------------------------
# Every delay the loop schedules comes from here, so backoff has one set of constants.

FAILURE_FLOOR_S = 0.5
"""Least wait after a failed provider call (a refused lookup, create, poll or download)."""
FAILURE_BASE_S = 1.0
FAILURE_CAP_S = 60.0
CLEANUP_MAX_ATTEMPTS = 8
"""Deletes of a finished job's files and job are tried this often (5xx, 429, timeouts, a
rejected key), with `failure_delay` between tries; Gemini deletes files after 48 h anyway."""
CLEANUP_MAX_PENDING = 10_000
"""At most this many deletes wait for a retry; more are left to Gemini's own expiry."""
POLL_JITTER = 0.2
"""Job polls are spread by +-20 % so jobs created together do not poll in lockstep."""


def failure_delay(failures: int, rand: float) -> float:
    """Seconds before retrying after the `failures`-th consecutive failure of one job's call.

    Counts failures only: quiet polls of a healthy job must not push its next retry to the cap.
    """
    return FAILURE_FLOOR_S + backoff_with_jitter(failures, FAILURE_BASE_S, FAILURE_CAP_S, rand)


CLAIM_FRESH_S = 1.0
"""A create starts at most this long after its claim began (the submitter claims again
otherwise). The claim proves membership when the group coordinator checked it; the group can
only have handed the partition on after that."""


@dataclass(frozen=True, slots=True)
class ClaimWindow:
    """Until when a claimed job's create may still start: `CLAIM_FRESH_S` after its claim
    began, on the sidecar's clock.

    Checked as late as possible, right before the create's request is written to the wire
    (`adapters.gemini`): a process that stalls anywhere between its claim and that moment
    (GC, SIGSTOP, a frozen container) past the new owner's lookup delay would otherwise
    create the job a second time after the group moved on (sim seeds 249, 1880).
    """

    start_by: float
    clock: Callable[[], float]

    def check(self) -> None:
        """Raise `ClaimExpired` once the window has passed."""
        late = self.clock() - self.start_by
        if late > 0:
            raise ClaimExpired(
                f"its claim is {late + CLAIM_FRESH_S:.1f} s old "
                f"(a create must start within {CLAIM_FRESH_S} s of its claim)"
            )


def server_timeout_s(http_timeout_s: float) -> float:
    """How long the server may still work on a call: the SDK sends `X-Server-Timeout` as
    the HTTP timeout rounded up to whole seconds (30.5 s goes out as 31)."""
    return float(math.ceil(http_timeout_s))


def recovered_lookup_delay(http_timeout_s: float) -> float:
    """Seconds from taking a partition over until its INTENTs may be looked up.

    The previous owner's create may start up to `CLAIM_FRESH_S` after a claim the group
    accepted before the hand-over, and may land up to the server timeout after it starts: a
    lookup any earlier could miss a job that lands a moment later and create it twice.
    """
    return server_timeout_s(http_timeout_s) + CLAIM_FRESH_S


def unclear_create_delay(failures: int, rand: float, http_timeout_s: float) -> float:
    """Seconds before looking up a job whose create failed unclearly (5xx, timeout, reset).

    At least one HTTP timeout, rounded up as the SDK rounds `X-Server-Timeout`: by then that
    create has landed or died, so a lookup cannot miss a job that lands a moment later.
    """
    return max(failure_delay(failures, rand), server_timeout_s(http_timeout_s))


def poll_delay(polls_so_far: int, policy: RetryPolicy, rand: float) -> float:
    """Seconds until the next status poll of a running job, with jitter."""
    if not 0 <= rand < 1:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    return next_poll_delay(polls_so_far, policy) * (1 - POLL_JITTER + 2 * POLL_JITTER * rand)


def next_poll_delay(polls_so_far: int, policy: RetryPolicy) -> float:
    """Seconds until the next poll: poll_initial_s * poll_factor**n, capped at poll_max_s."""
    return _capped_exp(policy.poll_initial_s, policy.poll_factor, polls_so_far, policy.poll_max_s)


def backoff_with_jitter(attempt: int, base: float, cap: float, rand: float) -> float:
    """Full jitter: `rand * min(cap, base * 2**attempt)`, with `rand` in [0, 1) from the shell.

    Spreads retries of many replicas hitting one 429 across the whole window.
    """
    if not 0 <= rand < 1:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    return rand * _capped_exp(base, 2.0, attempt, cap)


def _capped_exp(base: float, factor: float, n: int, cap: float) -> float:
    n = max(n, 0)
    try:
        value = base * factor**n
    except OverflowError:  # huge n: the cap applies long before
        return cap
    return cap if math.isinf(value) else min(cap, value)
