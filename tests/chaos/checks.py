"""Judging a run from what anyone outside the sidecar can see: the topics and the emulator.

The guarantees (docs/durability.md) become counts:

- **lost**: a request the broker acknowledged that has no result (and no dead letter);
- **paid twice**: a display name the emulator saw created more than once, or one request id
  answered by two different provider jobs (`batch_job` differs: the request was batched
  again into a new job, e.g. after a rewind, which the display-name count cannot see);
- **conflicting outcomes**: one request answered OK and ERROR;
- **duplicate records**: result records beyond the first per request id (allowed in the named
  windows in at-least-once mode, none allowed in exactly-once mode with read_committed);
- **wrong status**: a terminal result that does not match what the request asked for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from connector.core.codec import Codec
from connector.core.records import ResultEvent, ResultStatus

from .infra import Raw

Expect = Callable[[ResultEvent], str | None]
"""Returns why a terminal result is wrong for its request, or None when it is right."""


def expect_ok(r: ResultEvent) -> str | None:
    if r.status is ResultStatus.OK:
        return None
    e = r.error
    return f"expected OK, got ERROR {e.code if e else '?'} {e.message[:120] if e else ''}"


@dataclass
class PhaseResult:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figures": self.figures,
            "violations": self.violations,
            "notes": self.notes,
        }


def decode_results(raws: Iterable[Raw]) -> tuple[list[tuple[Raw, ResultEvent]], list[Raw]]:
    codec = Codec()
    good: list[tuple[Raw, ResultEvent]] = []
    bad: list[Raw] = []
    from connector.client import ResultReader

    reader = ResultReader.__new__(ResultReader)
    reader._codec = codec
    reader._registry = None
    for raw in raws:
        try:
            assert raw.value is not None
            good.append((raw, reader.decode(raw.value)))
        except Exception:
            bad.append(raw)
    return good, bad


def _sample(items: Iterable[Any], n: int = 5) -> list[Any]:
    return sorted(items)[:n]


def judge(
    result: PhaseResult,
    expected: dict[str, Expect],
    raws: list[Raw],
    created_by_display_name: dict[str, int],
    guarantee: str,
) -> dict[str, list[ResultEvent]]:
    """Fill `result` with the outcome figures and violations; return results by request id."""
    decoded, undecodable = decode_results(raws)
    by_id: dict[str, list[ResultEvent]] = defaultdict(list)
    for _, r in decoded:
        by_id[r.request_id].append(r)
    exp = set(expected)
    answered = exp & set(by_id)
    lost = exp - answered
    unknown = {rid: len(v) for rid, v in by_id.items() if rid not in exp}
    dup_records = sum(len(by_id[rid]) - 1 for rid in answered)
    dup_ids = sum(1 for rid in answered if len(by_id[rid]) > 1)
    twice_jobs = {
        rid: sorted({r.batch_job for r in by_id[rid] if r.batch_job})
        for rid in answered
        if len({r.batch_job for r in by_id[rid] if r.batch_job}) > 1
    }
    conflicting = {
        rid: sorted({r.status.value for r in by_id[rid]})
        for rid in answered
        if len({r.status for r in by_id[rid]}) > 1
    }
    wrong: dict[str, str] = {}
    for rid in answered:
        reason = expected[rid](by_id[rid][0])
        if reason:
            wrong[rid] = reason
    created_twice = {n: c for n, c in created_by_display_name.items() if c > 1}
    statuses = Counter(by_id[rid][0].status.value for rid in answered)
    error_codes = Counter(
        f"{by_id[rid][0].error.code} {by_id[rid][0].error.status}"
        for rid in answered
        if by_id[rid][0].error is not None
    )
    result.figures.update(
        {
            "requests": len(exp),
            "answered": len(answered),
            "lost": len(lost),
            "result_records": len(decoded),
            "duplicate_records": dup_records,
            "requests_with_duplicates": dup_ids,
            "paid_twice_display_names": len(created_twice),
            "paid_twice_requests": len(twice_jobs),
            "conflicting_outcomes": len(conflicting),
            "wrong_status": len(wrong),
            "unexpected_results": sum(unknown.values()),
            "undecodable_results": len(undecodable),
            "jobs_created": sum(created_by_display_name.values()),
            "statuses": dict(statuses),
            "error_codes": dict(error_codes.most_common(12)),
            "guarantee": guarantee,
        }
    )
    v = result.violations
    if lost:
        v.append(
            f"lost: {len(lost)} of {len(exp)} requests have no terminal result "
            f"(e.g. {_sample(lost)})"
        )
    if created_twice:
        v.append(
            f"paid twice: {len(created_twice)} display names created more than once "
            f"(e.g. {dict(list(created_twice.items())[:5])})"
        )
    if twice_jobs:
        v.append(
            f"paid twice: {len(twice_jobs)} requests answered by two different jobs "
            f"(e.g. {dict(list(sorted(twice_jobs.items()))[:3])})"
        )
    if conflicting:
        v.append(
            f"conflicting outcomes: {len(conflicting)} requests answered both OK and "
            f"ERROR (e.g. {_sample(conflicting)})"
        )
    if wrong:
        v.append(
            f"wrong status: {len(wrong)} requests (e.g. {dict(list(sorted(wrong.items()))[:3])})"
        )
    if unknown:
        v.append(
            f"unexpected results: {sum(unknown.values())} records for request ids not "
            f"sent (e.g. {dict(list(unknown.items())[:5])}; '' is a DATA_LOSS result)"
        )
    if undecodable:
        v.append(f"undecodable results: {len(undecodable)} result records could not be read")
    if guarantee == "exactly_once" and dup_records:
        v.append(
            f"duplicates in exactly-once mode: {dup_records} duplicate result records "
            "seen by a read_committed reader"
        )
    return by_id
