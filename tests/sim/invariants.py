"""What must hold after every simulated run, as pure functions over what the run left."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from connector.core.records import ResultEvent

LOST = "lost"
TWO_JOBS = "two-jobs"
CREATED_TWICE = "created-twice"
EOS_DUPLICATE = "eos-duplicate"
CONFLICT = "ok-and-error"
UNCOVERED = "uncovered"
"""An internal one, checked after every pass: a live entry's offset intake would batch again."""


def violations(
    requested: Iterable[str],
    results: Iterable[ResultEvent],
    dead_lettered: Iterable[str],
    created_by_display_name: Mapping[str, int],
    exactly_once: bool,
) -> list[tuple[str, str]]:
    """(invariant, detail) for each broken promise; empty when the run was clean.

    - every request answered (a result, or a dead letter): nothing lost;
    - no request answered by two different jobs;
    - no display name created twice at the provider (each is one paid job);
    - exactly-once: one committed result per request for a read_committed reader;
    - no request answered both OK and with an error (e.g. OK, then 499 after a cancel): a
      repeat in the at-least-once window repeats the same answer, never a different one.
    """
    out: list[tuple[str, str]] = []
    by_id: dict[str, list[ResultEvent]] = defaultdict(list)
    for r in results:
        by_id[r.request_id].append(r)
    answered = set(by_id) | set(dead_lettered)
    lost = sorted(set(requested) - answered)
    if lost:
        out.append((LOST, f"{len(lost)} never answered: {', '.join(lost[:8])}"))
    for rid, rs in sorted(by_id.items()):
        jobs = sorted({r.batch_job for r in rs if r.batch_job})
        if len(jobs) > 1:
            out.append((TWO_JOBS, f"{rid} answered by {jobs}"))
        statuses = {r.error.code if r.error else 200 for r in rs}
        if 200 in statuses and len(statuses) > 1:
            out.append((CONFLICT, f"{rid} answered OK and with errors {sorted(statuses - {200})}"))
        if exactly_once and len(rs) > 1:
            codes = [r.error.code if r.error else 200 for r in rs]
            out.append((EOS_DUPLICATE, f"{rid} has {len(rs)} committed results {codes}"))
    for name, n in sorted(created_by_display_name.items()):
        if n > 1:
            out.append((CREATED_TWICE, f"{name} created {n} times"))
    return out
