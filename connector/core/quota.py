"""Admission of jobs against the project's Gemini quota, shared across replicas.

Gemini limits are per project (100 concurrent batch jobs, an enqueued-token cap per
model). Each replica takes the share of the budget that matches its share of request
partitions, counts its own SUBMITTED entries against it, and holds back `create` (the
INTENT is already written, so offsets still commit) until there is room. 429 with
backoff stays the safety net, since other clients may share the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from connector.core.records import EntryState, LedgerEntry

__all__ = ["Budget", "admit", "over_cap_alone", "share", "should_pause", "too_big"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Concurrent jobs and per-model enqueued tokens one replica may use."""

    max_jobs: int = 100
    """Gemini: 100 concurrent batch jobs per project."""
    tokens_per_model: Mapping[str, int] = field(default_factory=dict)
    """Enqueued-token cap per model name; models not listed get `default_tokens`."""
    default_tokens: int = 3_000_000

    def __post_init__(self) -> None:
        # A read-only copy: a frozen Budget must not change when the caller's dict does.
        object.__setattr__(self, "tokens_per_model", MappingProxyType(dict(self.tokens_per_model)))

    def token_cap(self, model: str) -> int:
        """The enqueued-token cap for `model`."""
        return self.tokens_per_model.get(model, self.default_tokens)


def share(budget: Budget, assigned: int, total: int) -> Budget:
    """This replica's share: floor(x * assigned / total) of each limit.

    A replica with any partition gets at least one job, or its partitions would never
    progress; with more replicas than jobs the shares may then overrun the project
    budget slightly, which the provider's 429s absorb. Token caps are not raised to
    1: `admit` lets an oversized entry through when nothing of its model is live.
    """
    if total <= 0 or not 0 <= assigned <= total:
        raise ValueError(f"need 0 <= assigned <= total and total > 0, got {assigned}/{total}")
    jobs = budget.max_jobs * assigned // total
    if assigned > 0:
        jobs = max(jobs, 1)
    return Budget(
        max_jobs=jobs,
        tokens_per_model={m: t * assigned // total for m, t in budget.tokens_per_model.items()},
        default_tokens=budget.default_tokens * assigned // total,
    )


def admit(entry: LedgerEntry, live: Iterable[LedgerEntry], budget: Budget) -> bool:
    """May `entry` be created now, given this replica's live entries?

    Only SUBMITTED entries in `live` count (an INTENT holds no provider quota), and an
    entry with `entry`'s own job id is not counted against it. Admit when fewer than
    `max_jobs` are live and the model's live est_tokens plus `entry.est_tokens` fit its
    cap; an entry bigger than this replica's share of the cap is admitted when nothing of
    its model is live, else it would wait forever (one bigger than the whole cap is split
    before it gets here, see `too_big`).
    """
    model = entry.key.model
    jobs = 0
    model_jobs = 0
    model_tokens = 0
    for e in live:
        if e.state is not EntryState.SUBMITTED or e.job_id == entry.job_id:
            continue
        jobs += 1
        if e.key.model == model:
            model_jobs += 1
            model_tokens += e.est_tokens
    if jobs >= budget.max_jobs:
        return False
    return model_jobs == 0 or model_tokens + entry.est_tokens <= budget.token_cap(model)


def should_pause(
    waiting_intents: int, max_waiting: int, waiting_bytes: int = 0, max_waiting_bytes: int = 0
) -> bool:
    """Pause consuming once `max_waiting` INTENTs wait for quota, or once they hold
    `max_waiting_bytes` of requests (0: no byte bound), so nothing grows unbounded.

    The byte bound matters for big requests: 200 INTENTs of 100 MB each are 20 GB of
    requests to re-read and submit, although far fewer than `max_waiting` jobs.
    """
    if waiting_intents >= max_waiting:
        return True
    return max_waiting_bytes > 0 and waiting_bytes >= max_waiting_bytes


def too_big(entry: LedgerEntry, cap: int) -> bool:
    """Is `entry` over the model's whole enqueued-token `cap`, and can it be split? Gemini
    refuses such a job with 429 however long it waits (an entry sealed before batches were
    sealed under the cap, or a single request's estimate grew)."""
    return cap > 0 and entry.est_tokens > cap and len(entry.offsets) > 1


_REFUSED = re.compile(
    r"limit of ([\d.]+)\s*([KMB]?)\b.*?\(\s*([\d.]+)\s*([KMB]?) queued,\s*([\d.]+)\s*([KMB]?) "
    r"requested\)",
    re.IGNORECASE | re.DOTALL,
)
_SCALE = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}


def over_cap_alone(message: str) -> bool:
    """Does a 429 say the job alone is over the enqueued-token cap ("Enqueued token limit of
    3000000 ... exceeded (0 queued, 3270000 requested)")? Then waiting cannot help: nothing
    of the model is queued, or the job asks more than the whole cap. Only splitting it does.
    """
    m = _REFUSED.search(message)
    if m is None:
        return False
    cap, queued, requested = (float(m.group(i)) * _SCALE[m.group(i + 1).upper()] for i in (1, 3, 5))
    return queued == 0 or requested > cap
